"""In-process measurements (no server, no load generator): what the middleware itself costs.

- :func:`passthrough_ns`: ns per request of a bare ASGI app vs the same app wrapped by
  ``PortkeyMiddleware``, for requests the middleware does not intercept. The coroutines never
  suspend, so they are driven by hand (``coro.send(None)``): no event loop in the number.
- :func:`intercepted_us`: µs per intercepted ``POST /v1/completions`` with an
  ``httpx.MockTransport`` upstream (instant JSON or a 50-chunk stream), ``concurrency``
  requests in flight: the middleware's own cost plus httpx's client, no sockets.
- :func:`client_variants_us`: CPU µs per request against the real fake provider on loopback,
  for the upstream clients alone and for the whole middleware with each injectable client
  (see ``clients.py``): how much of the request path is the httpx layer.
- :func:`profile_intercepted`: the intercepted path under cProfile, top functions.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx

from portkey_mw import PortkeyMiddleware

Message = dict[str, Any]
App = Callable[[Message, Any, Any], Coroutine[Any, Any, None]]

BODY_JSON = b'{"model":"gpt-3.5-turbo-instruct","prompt":"Say hello","max_tokens":16}'
BODY_STREAM = (
    b'{"model":"gpt-3.5-turbo-instruct","prompt":"Say hello","max_tokens":16,"stream":true}'
)


def gateway_headers(custom_host: str) -> list[tuple[bytes, bytes]]:
    """The request headers every benchmark client sends (ASGI form)."""
    return [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer sk-bench"),
        (b"x-portkey-provider", b"openai"),
        (b"x-portkey-custom-host", custom_host.encode()),
    ]


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Message:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


# --- pass-through ------------------------------------------------------------------------

_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
_BODY = {"type": "http.response.body", "body": b"ok"}


async def _host(scope: Message, receive: Any, send: Any) -> None:
    await send(_START)
    await send(_BODY)


async def _nothing_received() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Message) -> None:
    return None


def _per_call_ns(app: App, scope: Message, iterations: int) -> float:
    receive, send = _nothing_received, _discard
    clock = time.perf_counter_ns
    started = clock()
    for _ in range(iterations):
        coro = app(scope, receive, send)
        try:
            coro.send(None)
        except StopIteration:
            pass
        else:  # pragma: no cover - the apps above never suspend
            coro.close()
            raise RuntimeError("the pass-through app suspended")
    return (clock() - started) / iterations


def passthrough_ns(iterations: int = 200_000, repeats: int = 7) -> list[dict[str, Any]]:
    """Best-of-``repeats`` ns per call, bare vs wrapped, alternating to share the noise."""
    wrapped = PortkeyMiddleware(_host)
    cases = [
        ("GET /health", _scope("GET", "/health", [(b"host", b"x")])),
        ("POST /api/v1/completions", _scope("POST", "/api/v1/completions", [(b"host", b"x")])),
    ]
    rows: list[dict[str, Any]] = []
    for label, scope in cases:
        bare: list[float] = []
        mw: list[float] = []
        _per_call_ns(_host, scope, min(iterations, 10_000))  # warm up
        _per_call_ns(wrapped, scope, min(iterations, 10_000))
        for _ in range(repeats):
            bare.append(_per_call_ns(_host, scope, iterations))
            mw.append(_per_call_ns(wrapped, scope, iterations))
        rows.append(
            {
                "path": label,
                "bare_ns": min(bare),
                "middleware_ns": min(mw),
                "added_ns": min(mw) - min(bare),
            }
        )
    return rows


# --- intercepted, MockTransport upstream ---------------------------------------------------


def _mock_upstream(stream_body: bytes, json_body: bytes) -> httpx.MockTransport:
    json_headers = {"content-type": "application/json", "x-request-id": "req-bench"}
    sse_headers = {"content-type": "text/event-stream", "x-request-id": "req-bench"}

    def handler(request: httpx.Request) -> httpx.Response:
        if b'"stream":true' in request.content:
            return httpx.Response(200, headers=sse_headers, content=stream_body)
        return httpx.Response(200, headers=json_headers, content=json_body)

    return httpx.MockTransport(handler)


async def _one_request(app: App, scope: Message, body: bytes) -> tuple[int, bytes]:
    """One ASGI request; the second ``receive()`` (the disconnect watcher) waits forever."""
    loop = asyncio.get_running_loop()
    delivered = False
    status = 0
    last = b""

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await loop.create_future()  # cancelled by the middleware once it answered
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status, last
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message.get("body"):
            last = message["body"]

    await app(scope, receive, send)
    return status, last


async def _drive(app: App, scope: Message, body: bytes, total: int, concurrency: int) -> int:
    """``total`` requests, ``concurrency`` in flight; returns how many were not 200."""
    failures = 0
    stream = b'"stream":true' in body

    async def worker(count: int) -> None:
        nonlocal failures
        for _ in range(count):
            status, last = await _one_request(app, scope, body)
            if status != 200 or (stream and b"[DONE]" not in last):
                failures += 1

    per_worker, extra = divmod(total, concurrency)
    await asyncio.gather(*(worker(per_worker + (i < extra)) for i in range(concurrency)))
    return failures


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


Batch = Callable[[int], Coroutine[Any, Any, int]]
Close = Callable[[], Awaitable[None]]


def _interleaved(
    cases: list[tuple[str, Callable[[], tuple[Batch, Close]]]],
    total: int,
    rounds: int,
    warm: int,
) -> list[dict[str, Any]]:
    """Run every case ``total`` times in ``rounds`` interleaved slices, each case on its own
    event loop; CPU µs per request is the best slice (the machine's noise hits every case
    alike and the minimum is the cost). ``batch(n)`` returns how many requests failed."""
    runners: list[tuple[str, asyncio.AbstractEventLoop, Batch, Close]] = []
    try:
        for label, make in cases:
            loop = _new_loop()
            batch, close = make()
            runners.append((label, loop, batch, close))
            loop.run_until_complete(batch(warm))
        per_round = max(total // rounds, 1)
        best = {label: float("inf") for label, *_ in runners}
        wall = dict(best)
        failures = dict.fromkeys(best, 0)
        for _ in range(rounds):
            for label, loop, batch, _close in runners:
                cpu0, wall0 = time.process_time(), time.perf_counter()
                failures[label] += loop.run_until_complete(batch(per_round))
                cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - wall0
                best[label] = min(best[label], cpu / per_round * 1e6)
                wall[label] = min(wall[label], elapsed / per_round * 1e6)
    finally:
        for _label, loop, _batch, close in runners:
            loop.run_until_complete(close())
            loop.close()
    return [
        {
            "what": label,
            "requests": per_round * rounds,
            "failures": failures[label],
            "cpu_us": best[label],
            "wall_us": wall[label],
        }
        for label, *_ in runners
    ]


def _app_case(
    make_app: Callable[[], tuple[App, Close]], scope: Message, body: bytes, concurrency: int
) -> Callable[[], tuple[Batch, Close]]:
    def make() -> tuple[Batch, Close]:
        app, close = make_app()

        def batch(count: int) -> Coroutine[Any, Any, int]:
            return _drive(app, scope, body, count, concurrency)

        return batch, close

    return make


def intercepted_us(
    stream_body: bytes,
    json_body: bytes,
    total: int = 5000,
    concurrencies: tuple[int, ...] = (1, 64),
    rounds: int = 5,
) -> list[dict[str, Any]]:
    """µs per intercepted request with a MockTransport upstream."""
    scope = _scope("POST", "/v1/completions", gateway_headers("http://127.0.0.1:9/instant/v1"))

    def make_app() -> tuple[App, Close]:
        client = httpx.AsyncClient(transport=_mock_upstream(stream_body, json_body))
        app = PortkeyMiddleware(_host, http_client=client, allowed_custom_hosts=["127.0.0.1:9"])
        return app, client.aclose

    # The same requests with the simple cache on: after the warm-up every request is a HIT,
    # answered without an upstream call (the cache-hit path of the cache issue).
    cached = _scope(
        "POST",
        "/v1/completions",
        [
            *gateway_headers("http://127.0.0.1:9/instant/v1"),
            (b"x-portkey-config", b'{"cache": {"mode": "simple", "max_age": 3600}}'),
        ],
    )
    cases = [
        (f"{scenario} {concurrency}", _app_case(make_app, case_scope, body, concurrency))
        for scenario, case_scope, body in (
            ("instant", scope, BODY_JSON),
            ("stream", scope, BODY_STREAM),
            ("cache-hit-instant", cached, BODY_JSON),
            ("cache-hit-stream", cached, BODY_STREAM),
        )
        for concurrency in concurrencies
    ]
    rows = _interleaved(cases, total, rounds, warm=max(concurrencies))
    for row in rows:
        row["scenario"], concurrency = row["what"].rsplit(maxsplit=1)
        row["concurrency"] = int(concurrency)
    return rows


# --- real loopback upstream: clients alone and the middleware with each client -------------


def _client_case(kind: str, url: str, concurrency: int) -> Callable[[], tuple[Batch, Close]]:
    """``batch(n)``: n POSTs by the bare client ``kind``, ``concurrency`` in flight."""
    import aiohttp
    from clients import make_client

    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}

    def make() -> tuple[Batch, Close]:
        one: Callable[[], Coroutine[Any, Any, bool]]
        if kind == "aiohttp":
            sessions: list[aiohttp.ClientSession] = []

            async def one_aiohttp() -> bool:
                if not sessions:  # made inside the loop, on first use
                    sessions.append(
                        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
                    )
                async with sessions[0].post(url, data=BODY_JSON, headers=headers) as response:
                    await response.read()
                    return response.status == 200

            async def close_aiohttp() -> None:
                if sessions:
                    await sessions.pop().close()

            one, close = one_aiohttp, close_aiohttp
        elif kind in ("default", "own-aiohttp"):
            own = _own_client("aiohttp" if kind == "own-aiohttp" else "http1")

            async def one_default() -> bool:
                response = await own.post(url, dict(headers), BODY_JSON)
                try:
                    async for _chunk in response.chunks():
                        pass
                finally:
                    await response.aclose()
                return response.status == 200

            one, close = one_default, own.aclose
        else:
            client = make_client(kind)
            assert client is not None

            async def one_httpx() -> bool:
                request = client.build_request("POST", url, headers=headers, content=BODY_JSON)
                response = await client.send(request, stream=True)
                try:
                    async for _chunk in response.aiter_bytes():
                        pass
                finally:
                    await response.aclose()
                return response.status_code == 200

            one, close = one_httpx, client.aclose

        async def batch(count: int) -> int:
            failures = 0

            async def worker(n: int) -> None:
                nonlocal failures
                for _ in range(n):
                    if not await one():
                        failures += 1

            per_worker, extra = divmod(count, concurrency)
            await asyncio.gather(*(worker(per_worker + (i < extra)) for i in range(concurrency)))
            return failures

        return batch, close

    return make


def _own_client(upstream_client: str) -> Any:
    """An upstream client the middleware builds for itself (``http1`` or aiohttp's pool)."""
    from portkey_mw.settings import build_settings
    from portkey_mw.upstream import make_client as middleware_client

    return middleware_client(build_settings({"upstream_client": upstream_client}), None)


def client_variants_us(
    fake_base: str, total: int = 5000, concurrency: int = 64, rounds: int = 5
) -> list[dict[str, Any]]:
    """CPU µs per request (this process only; the fake runs elsewhere) for the upstream
    clients alone, and for the whole middleware with each injectable client."""
    from clients import make_client

    url = fake_base + "/instant/v1/completions"
    host = fake_base.removeprefix("http://")
    scope = _scope("POST", "/v1/completions", gateway_headers(fake_base + "/instant/v1"))
    cases: list[tuple[str, Callable[[], tuple[Batch, Close]]]] = [
        ("aiohttp.ClientSession", _client_case("aiohttp", url, concurrency)),
        *((f"client only: {k}", _client_case(k, url, concurrency)) for k in CLIENTS),
    ]
    for kind in CLIENTS:

        def make_app(kind: str = kind) -> tuple[App, Close]:
            client = None if kind == "own-aiohttp" else make_client(kind)
            settings: dict[str, Any] = {"allowed_custom_hosts": [host]}
            if kind == "own-aiohttp":
                settings["upstream_client"] = "aiohttp"
            if client is not None:
                settings["http_client"] = client
            app = PortkeyMiddleware(_host, **settings)
            return app, (client.aclose if client is not None else app.aclose)

        cases.append(
            (f"middleware + {kind} client", _app_case(make_app, scope, BODY_JSON, concurrency))
        )
    return _interleaved(cases, total, rounds, warm=max(concurrency, total // 10))


# default: portkey_mw.http1; own-aiohttp: upstream_client="aiohttp"; lean: httpx over aiohttp
CLIENTS = ("default", "own-aiohttp", "lean")


def _measure(
    make_app: Callable[[], tuple[App, Close]],
    scope: Message,
    body: bytes,
    total: int,
    concurrency: int,
    profiler: cProfile.Profile | None = None,
) -> dict[str, Any]:
    loop = _new_loop()
    try:
        app, close = make_app()
        warm = max(concurrency, total // 10)
        loop.run_until_complete(_drive(app, scope, body, warm, concurrency))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        failures = loop.run_until_complete(_drive(app, scope, body, total, concurrency))
        if profiler is not None:
            profiler.disable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        loop.run_until_complete(close())
    finally:
        loop.close()
    return {
        "requests": total,
        "failures": failures,
        "wall_us": wall / total * 1e6,
        "cpu_us": cpu / total * 1e6,
    }


def profile_intercepted(
    fake_base: str | None,
    stream_body: bytes,
    json_body: bytes,
    total: int = 5000,
    concurrency: int = 64,
    top: int = 30,
) -> str:
    """The intercepted instant path under cProfile (loopback fake if given, else the mock)."""
    if fake_base is not None:
        host = fake_base.removeprefix("http://")
        custom = fake_base + "/instant/v1"

        def make_app() -> tuple[App, Callable[[], Awaitable[None]]]:
            app = PortkeyMiddleware(_host, allowed_custom_hosts=[host])
            return app, app.aclose

    else:
        custom = "http://127.0.0.1:9/instant/v1"

        def make_app() -> tuple[App, Callable[[], Awaitable[None]]]:
            client = httpx.AsyncClient(transport=_mock_upstream(stream_body, json_body))
            app = PortkeyMiddleware(_host, http_client=client, allowed_custom_hosts=["127.0.0.1:9"])
            return app, client.aclose

    scope = _scope("POST", "/v1/completions", gateway_headers(custom))
    profiler = cProfile.Profile()
    result = _measure(make_app, scope, BODY_JSON, total, concurrency, profiler)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    where = "loopback fake" if fake_base else "MockTransport"
    head = (
        f"cProfile of {total} intercepted instant requests ({where}, {concurrency} in flight):"
        f" {result['cpu_us']:.0f} µs CPU/request under the profiler\n"
    )
    return head + out.getvalue()
