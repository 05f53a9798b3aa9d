"""The simple cache: MISS then HIT with one upstream call, REFRESH, only successes stored,
streams replayed, keys isolated; memory backend bounds; Redis shared by two gateway
processes; a Redis that dies degrades to misses."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_client
from structlog.testing import capture_logs

from portkey_mw.cache import MemoryCache, RedisCache
from tests.fakes import COMPLETION, ScriptedProvider
from tests.helpers import free_port, gateway, serve, sse_events
from tests.redis_server import redis_server

CONFIG = {"provider": "openai", "api_key": "sk-cache", "cache": {"mode": "simple", "max_age": 60}}
BODY = {"model": "m", "prompt": "cache me"}


def _headers(config: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
    return {"x-portkey-config": json.dumps(config or CONFIG), **extra}


async def test_miss_then_hit_with_one_upstream_call() -> None:
    client, upstream = gateway(lambda r: httpx.Response(200, json=COMPLETION))
    first = await client.post("/v1/completions", json=BODY, headers=_headers())
    await asyncio.sleep(0)  # the store runs right after the answer
    second = await client.post("/v1/completions", json=BODY, headers=_headers())
    assert first.headers["x-portkey-cache-status"] == "MISS"
    assert second.headers["x-portkey-cache-status"] == "HIT"
    assert second.json() == first.json()
    assert len(upstream.requests) == 1
    other = await client.post(
        "/v1/completions", json={**BODY, "prompt": "other"}, headers=_headers()
    )
    assert other.headers["x-portkey-cache-status"] == "MISS"


@pytest.mark.parametrize("value", ["true", "1", "YES", "True"])
async def test_force_refresh_skips_the_lookup_and_stores_the_fresh_answer(value: str) -> None:
    client, upstream = gateway(lambda r: httpx.Response(200, json=COMPLETION))
    await client.post("/v1/completions", json=BODY, headers=_headers())
    refreshed = await client.post(
        "/v1/completions", json=BODY, headers=_headers(**{"x-portkey-cache-force-refresh": value})
    )
    assert refreshed.headers["x-portkey-cache-status"] == "REFRESH"
    assert len(upstream.requests) == 2
    again = await client.post("/v1/completions", json=BODY, headers=_headers())
    assert again.headers["x-portkey-cache-status"] == "HIT"


@pytest.mark.parametrize("status", [429, 500])
async def test_errors_are_never_served_from_cache(status: int) -> None:
    answers = [
        httpx.Response(status, json={"error": {"message": "x"}}),
        httpx.Response(200, json=COMPLETION),
    ]
    client, upstream = gateway(lambda r: answers.pop(0))
    failed = await client.post("/v1/completions", json=BODY, headers=_headers())
    assert failed.status_code == status
    await asyncio.sleep(0.01)
    ok = await client.post("/v1/completions", json=BODY, headers=_headers())
    assert ok.status_code == 200
    assert ok.headers["x-portkey-cache-status"] == "MISS"
    assert len(upstream.requests) == 2


async def test_no_cache_config_is_disabled() -> None:
    client, upstream = gateway(lambda r: httpx.Response(200, json=COMPLETION))
    for _ in range(2):
        response = await client.post(
            "/v1/completions",
            json=BODY,
            headers={"x-portkey-provider": "openai", "authorization": "Bearer k"},
        )
        assert response.headers["x-portkey-cache-status"] == "DISABLED"
    assert len(upstream.requests) == 2


async def test_streams_are_stored_whole_and_replayed() -> None:
    frames = (
        b"".join(
            b"data: "
            + json.dumps(
                {
                    **COMPLETION,
                    "choices": [{"text": t, "index": 0, "logprobs": None, "finish_reason": f}],
                }
            ).encode()
            + b"\n\n"
            for t, f in ((" a", None), (" b", "stop"))
        )
        + b"data: [DONE]\n\n"
    )
    client, upstream = gateway(
        lambda r: httpx.Response(200, content=frames, headers={"content-type": "text/event-stream"})
    )
    body = {**BODY, "stream": True}
    first = await client.post("/v1/completions", json=body, headers=_headers())
    await asyncio.sleep(0.01)
    second = await client.post("/v1/completions", json=body, headers=_headers())
    assert second.headers["x-portkey-cache-status"] == "HIT"
    assert sse_events(second.text) == sse_events(first.text)
    assert sse_events(second.text)[-1] == "[DONE]"
    assert len(upstream.requests) == 1
    assert (await client.post("/v1/completions", json=BODY, headers=_headers())).headers[
        "x-portkey-cache-status"
    ] == "MISS"  # stream and non-stream are different requests


async def test_a_stream_cut_midway_is_not_stored() -> None:
    async def cut() -> Any:
        yield b'data: {"id":"c","object":"text_completion","created":1,"model":"m","choices":[]}\n\n'
        raise httpx.ReadError("cut")

    client, upstream = gateway(
        lambda r: httpx.Response(200, content=cut(), headers={"content-type": "text/event-stream"})
    )
    body = {**BODY, "stream": True}
    await client.post("/v1/completions", json=body, headers=_headers())
    await asyncio.sleep(0.01)
    second = await client.post("/v1/completions", json=body, headers=_headers())
    assert second.headers["x-portkey-cache-status"] == "MISS"
    assert len(upstream.requests) == 2


async def test_keys_separate_providers_keys_and_namespaces() -> None:
    client, upstream = gateway(lambda r: httpx.Response(200, json=COMPLETION))
    await client.post("/v1/completions", json=BODY, headers=_headers())
    other_key = {**CONFIG, "api_key": "sk-other-tenant"}
    assert (await client.post("/v1/completions", json=BODY, headers=_headers(other_key))).headers[
        "x-portkey-cache-status"
    ] == "MISS"
    namespaced = _headers(**{"x-portkey-cache-namespace": "team-a"})
    assert (await client.post("/v1/completions", json=BODY, headers=namespaced)).headers[
        "x-portkey-cache-status"
    ] == "MISS"
    metadata = _headers(**{"x-portkey-metadata": '{"_user": "u2"}'})
    assert (await client.post("/v1/completions", json=BODY, headers=metadata)).headers[
        "x-portkey-cache-status"
    ] == "MISS"
    assert len(upstream.requests) == 4


async def test_cache_hit_is_in_the_log_event_and_semantic_is_refused() -> None:
    client, _ = gateway(lambda r: httpx.Response(200, json=COMPLETION))
    with capture_logs() as logs:
        await client.post("/v1/completions", json=BODY, headers=_headers())
        await asyncio.sleep(0)
        await client.post("/v1/completions", json=BODY, headers=_headers())
    statuses = [e["cache_status"] for e in logs if e["event"] == "completion"]
    assert statuses == ["MISS", "HIT"]
    semantic = {**CONFIG, "cache": {"mode": "semantic"}}
    response = await client.post("/v1/completions", json=BODY, headers=_headers(semantic))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-portkey-config.cache.mode"


async def test_memory_cache_is_bounded_and_expires() -> None:
    cache = MemoryCache(max_entries=2, max_bytes=10)
    await cache.set("a", b"1234", 60)
    await cache.set("b", b"1234", 60)
    assert await cache.get("a") == b"1234"  # a is now the most recent
    await cache.set("c", b"1234", 60)
    assert await cache.get("b") is None  # least recently used went first
    await cache.set("d", b"12345678", 60)  # bytes bound: 4 + 8 > 10
    assert len(cache) == 1
    await cache.set("big", b"x" * 11, 60)  # larger than the whole cache: not stored
    assert await cache.get("big") is None
    await cache.set("short", b"1", 0)
    assert await cache.get("short") is None


async def test_redis_backend_roundtrip_and_expiry() -> None:
    with redis_server() as server:
        cache = RedisCache(server.url)
        await cache.set("k", b"v", 1)
        assert await cache.get("k") == b"v"
        await asyncio.sleep(1.2)
        assert await cache.get("k") is None
        await cache.aclose()


async def test_redis_down_is_a_quick_miss_with_a_warning() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client, upstream = gateway(lambda r: httpx.Response(200, json=COMPLETION), cache_url=dead)
    with capture_logs() as logs:
        started = time.monotonic()
        for _ in range(3):
            response = await client.post("/v1/completions", json=BODY, headers=_headers())
            assert response.status_code == 200
            assert response.headers["x-portkey-cache-status"] == "MISS"
        assert time.monotonic() - started < 2
    assert len(upstream.requests) == 3
    warnings = [e for e in logs if e["event"] == "cache_unavailable"]
    assert len(warnings) == 1  # rate-limited, not one per request
    assert warnings[0]["log_level"] == "warning"


def _serve_gateway(config_path: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portkey_mw",
            "serve",
            "--config",
            str(config_path),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url + "/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("gateway did not start")
        time.sleep(0.1)


def test_two_gateway_processes_share_answers_through_redis(tmp_path: Path) -> None:
    fake = ScriptedProvider({"status": 200})
    with redis_server() as redis, serve(fake) as provider_url:
        config = tmp_path / "gateway.toml"
        config.write_text(f'cache_url = "{redis.url}"\nallowed_custom_hosts = ["127.0.0.1"]\n')
        ports = [free_port(), free_port()]
        processes = [_serve_gateway(config, port) for port in ports]
        try:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url in urls:
                _wait_healthy(url)
            cached = {**CONFIG, "custom_host": provider_url + "/v1"}
            first = httpx.post(urls[0] + "/v1/completions", json=BODY, headers=_headers(cached))
            assert first.headers["x-portkey-cache-status"] == "MISS"
            store = redis_client.Redis(port=redis.port)
            deadline = time.monotonic() + 5
            while not store.keys("portkey_mw:*") and time.monotonic() < deadline:
                time.sleep(0.02)  # the first process stores right after answering
            store.close()
            second = httpx.post(urls[1] + "/v1/completions", json=BODY, headers=_headers(cached))
            assert second.headers["x-portkey-cache-status"] == "HIT"
            assert second.json() == first.json()
            assert len(fake.seen) == 1  # one upstream call in total across the fleet
            redis.stop()  # Redis dies mid-run: requests still succeed
            third = httpx.post(
                urls[1] + "/v1/completions", json=BODY, headers=_headers(cached), timeout=10
            )
            assert third.status_code == 200
            assert third.headers["x-portkey-cache-status"] == "MISS"
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=20)
