"""The fault catalogue: one test per way a provider (or a client, or Redis) can misbehave,
each against a loopback fake that misbehaves on cue (``tests/faults_fakes.py``), each
asserting what the client gets (status, or the SSE error event and ``data: [DONE]``) and the
``completion`` log event.

The middleware uses its own upstream client here (aiohttp over real sockets), so every fault
goes through the same code as in production. In-process tests talk to it through
``httpx.ASGITransport``; the slow-client and disconnect tests serve it with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from portkey_mw import PortkeyMiddleware, __version__
from tests.faults_fakes import (
    COMPLETION,
    Connection,
    FaultServer,
    Logs,
    answer,
    answer_chunked,
    assert_error_shape,
    completion,
    garbage,
    reset_before_headers,
    reset_mid_body,
    sse_stream,
    stall,
)
from tests.helpers import free_port, gateway, not_found_app, serve, sse_events
from tests.redis_server import redis_server

BODY = {"model": "m", "prompt": "p"}
STREAM = {**BODY, "stream": True}
ROUTE = {"x-portkey-virtual-key": "fake"}


# Every fault runs against both of the middleware's own clients (aiohttp's stays a setting).
_CLIENT = ["http1"]


@pytest.fixture(autouse=True, params=["http1", "aiohttp"])
def upstream_client(request: pytest.FixtureRequest) -> Iterator[str]:
    _CLIENT[0] = request.param
    yield request.param
    _CLIENT[0] = "http1"


def fake_key(url: str) -> dict[str, Any]:
    return {"fake": {"provider": "openai", "api_key": "sk-fault", "custom_host": url}}


@contextlib.asynccontextmanager
async def gateway_to(url: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client for a middleware whose own upstream client calls ``url``."""
    settings.setdefault("retry_backoff_ms", 1)
    settings.setdefault("upstream_client", _CLIENT[0])
    settings.setdefault("connect_timeout", 2.0)
    settings.setdefault("read_timeout", 5.0)
    app = PortkeyMiddleware(not_found_app, virtual_keys=fake_key(url), **settings)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=20
    )
    try:
        yield client
    finally:
        await client.aclose()
        await app.aclose()


async def post(
    client: httpx.AsyncClient, body: dict[str, Any] = BODY, /, **headers: str
) -> httpx.Response:
    return await client.post("/v1/completions", json=body, headers={**ROUTE, **headers})


def completion_event(logs: Logs) -> MutableMapping[str, Any]:
    events = [e for e in logs if e.get("event") == "completion"]
    assert len(events) == 1, logs
    assert not [e for e in logs if e.get("event") == "internal_error"], logs
    return events[0]


def expect_error(
    response: httpx.Response, logs: Logs, status: int, code: str | None = None
) -> MutableMapping[str, Any]:
    assert response.status_code == status, response.text
    payload = response.json()
    assert_error_shape(status, payload)
    if code is not None:
        assert payload["error"]["code"] == code, payload
    assert "127.0.0.1" not in response.text  # no internal address
    event = completion_event(logs)
    assert event["status"] == status
    assert event.get("error_type"), event
    return event


def expect_stream_error(response: httpx.Response, logs: Logs) -> list[Any]:
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    assert "error" in events[-2], events
    assert_error_shape(200, events[-2])
    event = completion_event(logs)
    assert event["status"] == 200
    assert event["error_type"] == "stream_error"
    return events


# --- connection-level faults -----------------------------------------------------------------


async def test_connection_refused_is_a_502() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with gateway_to(url) as client:
        with capture_logs() as logs:
            response = await post(client)
    event = expect_error(response, logs, 502, "upstream_unreachable")
    assert event["attempts"][0]["status"] == 502


async def test_connection_refused_is_retried_then_a_502() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with gateway_to(url) as client:
        with capture_logs() as logs:
            response = await post(client, **{"x-portkey-config": '{"retry": {"attempts": 2}}'})
    event = expect_error(response, logs, 502, "upstream_unreachable")
    assert len(event["attempts"]) == 3
    assert response.headers["x-portkey-retry-attempt-count"] == "-1"


async def test_reset_before_headers_is_a_502() -> None:
    with FaultServer(reset_before_headers) as server:
        async with gateway_to(server.url) as client:
            with capture_logs() as logs:
                response = await post(client)
    expect_error(response, logs, 502, "upstream_connection_error")
    assert server.connections == 1


async def test_reset_mid_body_is_a_502() -> None:
    with FaultServer(reset_mid_body) as server:
        async with gateway_to(server.url) as client:
            with capture_logs() as logs:
                response = await post(client)
    expect_error(response, logs, 502, "upstream_connection_error")


async def test_reset_mid_stream_is_an_error_event_then_done() -> None:
    with FaultServer(sse_stream(3, end="reset")) as server:
        async with gateway_to(server.url) as client:
            with capture_logs() as logs:
                response = await post(client, STREAM)
    events = expect_stream_error(response, logs)
    texts = [e["choices"][0]["text"] for e in events[:-2]]
    assert texts[0] == " t0"  # what came before the cut was relayed


async def test_garbage_bytes_are_a_502() -> None:
    with FaultServer(garbage) as server:
        async with gateway_to(server.url) as client:
            with capture_logs() as logs:
                response = await post(client)
    expect_error(response, logs, 502, "upstream_connection_error")


# --- stalls and timeouts ---------------------------------------------------------------------


async def test_stall_before_headers_hits_the_request_timeout_408() -> None:
    with FaultServer(stall(10)) as server:
        async with gateway_to(server.url) as client:
            with capture_logs() as logs:
                started = time.perf_counter()
                response = await post(client, **{"x-portkey-request-timeout": "300"})
                took = time.perf_counter() - started
    event = expect_error(response, logs, 408)
    assert response.json()["error"]["type"] == "timeout_error"
    assert event["error_type"] == "timeout_error"
    assert 0.25 <= took < 3


async def test_stall_before_headers_hits_the_read_timeout_504() -> None:
    with FaultServer(stall(10)) as server:
        async with gateway_to(server.url, read_timeout=0.3) as client:
            with capture_logs() as logs:
                started = time.perf_counter()
                response = await post(client)
                took = time.perf_counter() - started
    expect_error(response, logs, 504, "upstream_timeout")
    assert took < 3


async def test_stall_mid_stream_hits_the_read_timeout_error_event_then_done() -> None:
    with FaultServer(sse_stream(2, end="stall", stall_s=10)) as server:
        async with gateway_to(server.url, read_timeout=0.4) as client:
            with capture_logs() as logs:
                started = time.perf_counter()
                response = await post(client, STREAM)
                took = time.perf_counter() - started
    events = expect_stream_error(response, logs)
    assert [e["choices"][0]["text"] for e in events[:-2]] == [" t0", " t1"]
    assert took < 3


async def test_request_timeout_does_not_cut_a_stream_that_already_started() -> None:
    """The deadline covers a stream up to its first frame only (documented)."""
    with FaultServer(sse_stream(4, interval=0.15)) as server:
        async with gateway_to(server.url) as client:
            with capture_logs() as logs:
                response = await post(client, STREAM, **{"x-portkey-request-timeout": "300"})
    events = sse_events(response.text)
    assert response.status_code == 200
    assert events[-1] == "[DONE]"
    assert not any("error" in e for e in events[:-1])
    assert completion_event(logs)["status"] == 200


# --- unreadable answers ----------------------------------------------------------------------


async def test_invalid_json_with_200_is_a_502() -> None:
    with FaultServer(answer(b'{"id": "cmpl-1", "choices": [')) as server:
        async with gateway_to(server.url) as client:
            with capture_logs() as logs:
                response = await post(client)
    expect_error(response, logs, 502, "upstream_unreadable")


async def test_oversized_answer_is_a_502() -> None:
    big = json.dumps({**COMPLETION, "pad": "x" * 65536}).encode()
    with FaultServer(answer(big)) as server:
        async with gateway_to(server.url, max_response_bytes=4096) as client:
            with capture_logs() as logs:
                response = await post(client)
    expect_error(response, logs, 502, "upstream_too_large")


async def test_oversized_answer_without_a_length_is_a_502() -> None:
    big = json.dumps({**COMPLETION, "pad": "x" * 65536}).encode()
    with FaultServer(answer_chunked(big)) as server:
        async with gateway_to(server.url, max_response_bytes=4096) as client:
            with capture_logs() as logs:
                response = await post(client)
    expect_error(response, logs, 502, "upstream_too_large")


async def test_small_compressed_answer_that_inflates_past_the_cap_is_a_502() -> None:
    """The declared length of a gzip body is not its size: the cap applies to what the
    gateway inflates, so a small bomb cannot fill memory."""
    big = json.dumps({**COMPLETION, "pad": "x" * 65536}).encode()
    packed = gzip.compress(big)
    assert len(packed) < 4096 < len(big)
    with FaultServer(answer(packed, **{"content-encoding": "gzip"})) as server:
        async with gateway_to(server.url, max_response_bytes=4096) as client:
            with capture_logs() as logs:
                response = await post(client)
    expect_error(response, logs, 502, "upstream_too_large")


async def test_compressed_answer_within_the_cap_is_relayed_inflated() -> None:
    body = json.dumps(COMPLETION).encode()
    with FaultServer(answer(gzip.compress(body), **{"content-encoding": "gzip"})) as server:
        async with gateway_to(server.url) as client:
            response = await post(client)
    assert response.status_code == 200
    assert response.json() == COMPLETION


async def test_cookies_a_provider_sets_never_reach_later_requests() -> None:
    """The upstream client is shared by every user of the gateway: a cookie one answer set
    (a sticky session, an edge's bot token) must not ride along on anyone's next request."""
    body = json.dumps(COMPLETION).encode()
    cookie = {"set-cookie": "session=tenant-a; Path=/; Max-Age=3600"}
    with FaultServer(answer(body, **cookie)) as server:
        # a host name, not 127.0.0.1: cookie jars ignore cookies of bare IP addresses
        async with gateway_to(f"http://localhost:{server.port}") as client:
            for _ in range(3):
                response = await post(client)
                assert response.status_code == 200
                assert "set-cookie" not in response.headers
    assert len(server.requests) == 3
    assert not [r for r in server.requests if b"\r\ncookie:" in r.lower()]


async def test_upstream_requests_name_the_gateway_as_user_agent() -> None:
    """Some provider edges refuse requests without a User-Agent; aiohttp's own would name
    the HTTP library instead of the gateway."""
    body = json.dumps(COMPLETION).encode()
    with FaultServer(answer(body)) as server:
        async with gateway_to(server.url) as client:
            response = await post(client)
    assert response.status_code == 200
    [sent] = server.requests
    user_agents = [line for line in sent.lower().split(b"\r\n") if line.startswith(b"user-agent:")]
    assert user_agents == [f"user-agent: portkey_mw/{__version__}".encode()]


# --- a 5xx storm -------------------------------------------------------------------------------


async def test_5xx_storm_is_retried_then_falls_back() -> None:
    with FaultServer(completion(503)) as bad, FaultServer(completion(200)) as good:
        config = {
            "strategy": {"mode": "fallback"},
            "retry": {"attempts": 2},
            "targets": [
                {"provider": "openai", "api_key": "sk-a", "custom_host": bad.url},
                {"provider": "openai", "api_key": "sk-b", "custom_host": good.url},
            ],
        }
        headers = {"x-portkey-config": json.dumps(config)}
        async with gateway_to(bad.url, allowed_custom_hosts=[bad.netloc, good.netloc]) as client:
            with capture_logs() as logs:
                responses = await asyncio.gather(
                    *(client.post("/v1/completions", json=BODY, headers=headers) for _ in range(24))
                )
    assert [r.status_code for r in responses] == [200] * 24
    assert {r.headers["x-portkey-last-used-option-index"] for r in responses} == {
        "config.targets[1]"
    }
    assert len(bad.requests) == 24 * 3  # three attempts each
    assert len(good.requests) == 24
    events = [e for e in logs if e["event"] == "completion"]
    assert len(events) == 24
    for event in events:
        assert event["status"] == 200
        assert [a["status"] for a in event["attempts"]] == [503, 503, 503, 200]


async def test_5xx_storm_everywhere_returns_the_last_provider_error() -> None:
    with FaultServer(completion(500)) as first, FaultServer(completion(502)) as second:
        config = {
            "strategy": {"mode": "fallback"},
            "retry": {"attempts": 1},
            "targets": [
                {"provider": "openai", "api_key": "sk-a", "custom_host": first.url},
                {"provider": "openai", "api_key": "sk-b", "custom_host": second.url},
            ],
        }
        async with gateway_to(
            first.url, allowed_custom_hosts=[first.netloc, second.netloc]
        ) as client:
            with capture_logs() as logs:
                response = await client.post(
                    "/v1/completions", json=BODY, headers={"x-portkey-config": json.dumps(config)}
                )
    assert response.status_code == 502  # the provider's own status, kept
    payload = response.json()
    assert_error_shape(502, payload)
    assert payload["provider"] == "openai"
    assert response.headers["x-portkey-retry-attempt-count"] == "-1"
    event = completion_event(logs)
    assert event["status"] == 502
    assert [a["status"] for a in event["attempts"]] == [500, 500, 502, 502]


# --- served: slow clients and disconnects ----------------------------------------------------


class LoopProbe:
    """Wraps the served app to learn its event loop, so a test can list its tasks."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)

    def tasks(self) -> list[str]:
        assert self.loop is not None

        async def names() -> list[str]:
            current = asyncio.current_task()
            return sorted(
                t.get_coro().__qualname__  # type: ignore[union-attr]
                for t in asyncio.all_tasks()
                if t is not current and not t.done()
            )

        return asyncio.run_coroutine_threadsafe(names(), self.loop).result(timeout=5)


@contextlib.contextmanager
def served_gateway(upstream_url: str, **settings: Any) -> Iterator[tuple[str, LoopProbe]]:
    settings.setdefault("read_timeout", 10.0)
    settings.setdefault("upstream_client", _CLIENT[0])
    probe = LoopProbe(
        PortkeyMiddleware(not_found_app, virtual_keys=fake_key(upstream_url), **settings)
    )
    with serve(probe) as url:
        yield url, probe


def raw_request(port: int, body: dict[str, Any], rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    data = json.dumps(body).encode()
    sock.sendall(
        b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        b"x-portkey-virtual-key: fake\r\nconnection: close\r\ncontent-length: "
        + str(len(data)).encode()
        + b"\r\n\r\n"
        + data
    )
    return sock


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_slow_client_reading_a_long_stream_keeps_memory_flat() -> None:
    events, padding = 12_000, 2_000  # ~25 MB of SSE, produced as fast as the fake can
    with (
        FaultServer(sse_stream(events, padding=padding)) as upstream,
        served_gateway(upstream.url) as (url, _),
        capture_logs() as logs,
    ):
        port = int(url.rsplit(":", 1)[1])
        sock = raw_request(port, STREAM, rcvbuf=16384)
        peak = start = rss_bytes()
        received = 0
        deadline = time.monotonic() + 30
        tail = b""
        with sock:
            while time.monotonic() < deadline:
                data = sock.recv(16384)
                if not data:
                    break
                received += len(data)
                tail = (tail + data)[-64:]
                if received % (1 << 20) < 16384:
                    peak = max(peak, rss_bytes())
                time.sleep(0.0005)  # a slow reader: the gateway must wait, not buffer
        peak = max(peak, rss_bytes())
        took = time.monotonic() - deadline + 30
    assert received > events * padding, received
    assert b"data: [DONE]" in tail
    print(
        f"\nslow client: {received / 1e6:.1f} MB in {took:.1f}s, RSS +{(peak - start) / 1e6:.1f} MB"
    )
    growth = peak - start
    assert growth < 16 * 1024 * 1024, f"RSS grew {growth / 1e6:.1f} MB for {received / 1e6:.1f} MB"
    assert completion_event(logs)["status"] == 200


def test_client_disconnect_mid_stream_closes_upstream_and_leaves_no_task() -> None:
    streamer, plain = sse_stream(200, interval=0.02), completion(200)

    def behaviour(conn: Connection) -> None:
        (streamer if conn.body.get("stream") else plain)(conn)

    with FaultServer(behaviour) as upstream, served_gateway(upstream.url) as (url, probe):
        port = int(url.rsplit(":", 1)[1])
        # Warm up (creates the pooled client), then note the tasks of an idle server.
        warm = httpx.post(f"{url}/v1/completions", json=BODY, headers=ROUTE, timeout=10)
        assert warm.status_code == 200
        idle = probe.tasks()
        with capture_logs() as logs:
            sock = raw_request(port, STREAM)
            seen = b""
            while seen.count(b"data: ") < 3:
                chunk = sock.recv(4096)
                assert chunk, seen
                seen += chunk
            streaming = probe.tasks()
            sock.close()
            left = time.monotonic()
            deadline = left + 3
            while time.monotonic() < deadline and (
                upstream.open_connections or probe.tasks() != idle
            ):
                time.sleep(0.02)
            closed_after = time.monotonic() - left
            final = probe.tasks()
        sent_before_close = len(upstream.requests)
    print(
        f"\ndisconnect: upstream closed and tasks back to idle {closed_after * 1000:.0f} ms later"
    )
    assert len(streaming) > len(idle)  # the stream really was in flight
    assert upstream.open_connections == 0, "the upstream connection was left open"
    assert upstream.peer_closes, "the fake never saw the gateway hang up"
    assert closed_after < 1.0, f"upstream closed {closed_after:.2f}s after the client left"
    assert final == idle, f"tasks left running: {sorted(set(final) - set(idle))}"
    assert sent_before_close == 2  # the warm-up and the stream; nothing was retried
    events = [e for e in logs if e.get("event") == "completion"]
    assert len(events) == 1
    assert events[0]["status"] == 499
    assert events[0]["error_type"] == "client_disconnected"


# --- Redis down ------------------------------------------------------------------------------


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=COMPLETION)


async def test_redis_down_mid_run_requests_still_succeed_quickly() -> None:
    config = json.dumps({"cache": {"mode": "simple", "max_age": 60}})
    headers = {
        "x-portkey-provider": "openai",
        "authorization": "Bearer sk-cache",
        "x-portkey-config": config,
    }
    with redis_server() as redis:
        client, upstream = gateway(ok, cache_url=redis.url, cache_timeout_ms=100)
        async with client:
            first = await client.post("/v1/completions", json=BODY, headers=headers)
            assert first.headers["x-portkey-cache-status"] == "MISS"
            hit = None
            for _ in range(50):  # the store is written in the background
                hit = await client.post("/v1/completions", json=BODY, headers=headers)
                if hit.headers["x-portkey-cache-status"] == "HIT":
                    break
                await asyncio.sleep(0.02)
            assert hit is not None
            assert hit.headers["x-portkey-cache-status"] == "HIT"
            calls = len(upstream.requests)
            redis.stop()  # killed mid-run
            with capture_logs() as logs:
                timings = []
                for index in range(6):
                    started = time.perf_counter()
                    response = await client.post(
                        "/v1/completions", json={**BODY, "user": f"u{index}"}, headers=headers
                    )
                    timings.append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
    assert len(upstream.requests) == calls + 6  # every one answered by the provider
    assert max(timings) < 1.0, timings
    warnings = [e for e in logs if e["event"] == "cache_unavailable"]
    assert warnings
    assert warnings[0]["log_level"] == "warning"
    completions = [e for e in logs if e["event"] == "completion"]
    assert [e["status"] for e in completions] == [200] * 6
