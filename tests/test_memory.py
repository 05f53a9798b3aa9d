"""Nothing a request leaves behind: after a warm-up, many more requests of each kind do not
grow the heap. The per-request records are msgspec structs the garbage collector does not
track (``gc=False``, cheaper to make and to collect); a reference cycle through one of them
would never be freed, and this is where it would show."""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgspec
import pytest
import structlog

from portkey_mw.logconfig import configure_logging
from tests.fakes import COMPLETION
from tests.helpers import Upstream, gateway

HEADERS = {"x-portkey-provider": "openai", "authorization": "Bearer sk-memory-test-key"}
STREAM = b"".join(
    b'data: {"id":"c","object":"text_completion","model":"m","choices":[{"text":"'
    + word
    + b'","index":0,"finish_reason":null}]}\n\n'
    for word in (b"a", b"b", b"c")
) + (
    b'data: {"id":"c","object":"text_completion","model":"m","choices":[{"text":"",'
    b'"index":0,"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)
FALLBACK = msgspec.json.encode(
    {
        "strategy": {"mode": "fallback"},
        "retry": {"attempts": 1, "on_status_codes": [500]},
        "targets": [
            {"provider": "openai", "api_key": "sk-first-target-key"},
            {"provider": "openai", "api_key": "sk-second-target-key"},
        ],
    }
).decode()


def _answer(request: httpx.Request) -> httpx.Response:
    body = msgspec.json.decode(request.content)
    if body.get("stream"):
        return httpx.Response(200, content=STREAM, headers={"content-type": "text/event-stream"})
    if request.headers.get("authorization") == "Bearer sk-first-target-key":
        return httpx.Response(500, json={"error": {"message": "down", "type": "server_error"}})
    return httpx.Response(200, json=COMPLETION, headers={"x-request-id": "req-1"})


class _Unrecorded(Upstream):
    """The scripted upstream without its record of requests (which would grow)."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return self.handler(request)


CASES: dict[str, tuple[dict[str, str], Any]] = {
    "json": (HEADERS, {"model": "m", "prompt": "p"}),
    "stream": (HEADERS, {"model": "m", "prompt": "p", "stream": True}),
    "stream, chunks rebuilt": (
        {**HEADERS, "x-portkey-provider": "together-ai"},
        {"model": "m", "prompt": "p", "stream": True},
    ),
    "retries and fallback": ({"x-portkey-config": FALLBACK}, {"model": "m", "prompt": "p"}),
    "invalid body": (HEADERS, {"model": "m", "prompt": "p", "max_tokens": "many"}),
    "cache hit": (
        {**HEADERS, "x-portkey-config": '{"cache": {"mode": "simple"}}'},
        {"model": "m", "prompt": "cached"},
    ),
}


@pytest.fixture
def _events_to_devnull() -> Iterator[None]:
    """Events rendered as in production, into /dev/null (pytest's capture would keep them)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with open(os.devnull, "w", encoding="utf-8") as sink:
        configure_logging(json=True, stream=sink)
        structlog.configure(cache_logger_on_first_use=False)  # LOGGER must not keep the sink
        try:
            yield
        finally:
            structlog.reset_defaults()
            for handler in root.handlers[:]:
                root.removeHandler(handler)
            for handler in handlers:
                root.addHandler(handler)
            root.setLevel(level)


def _blocks_after(run: Callable[[int], Any], count: int) -> int:
    run(count)
    gc.collect()
    return sys.getallocatedblocks()


@pytest.mark.usefixtures("_events_to_devnull")
@pytest.mark.parametrize("case", list(CASES))
def test_requests_leave_nothing_behind(case: str) -> None:
    import asyncio

    headers, body = CASES[case]
    client, _ = gateway(_Unrecorded(_answer))

    async def send(count: int) -> None:
        for _ in range(count):
            response = await client.post("/v1/completions", json=body, headers=headers)
            assert response.status_code in (200, 400), response.text

    loop = asyncio.new_event_loop()
    try:

        def run(count: int) -> None:
            loop.run_until_complete(send(count))

        before = _blocks_after(run, 200)  # warm-up: caches, pools, interned names
        after = _blocks_after(run, 600)
    finally:
        loop.close()
    # A leak of one object per request would be 600+ blocks; allow for allocator noise.
    assert after - before < 150, f"{case}: {after - before} blocks more after 600 requests"
