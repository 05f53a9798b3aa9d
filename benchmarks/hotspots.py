"""Micro-benchmarks of the intercepted path's parts, found by profiling (py-spy, cProfile):
µs per call of each piece, and of the cheaper alternative where one is suggested.

    python benchmarks/hotspots.py [--quick]

This file reaches into portkey_mw's internals (pipeline, headers, plan, providers) on
purpose: it is a profiling aid for whoever works on the request path, not a public API
test. A piece whose internals moved is reported as skipped, the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import msgspec
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent))

Row = tuple[str, float, str]


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def per_call_us(fn: Callable[[], Any], n: int, repeats: int = 5) -> float:
    """Best of ``repeats`` runs of ``n`` calls, µs per call."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - started) / n)
    return best * 1e6


def per_await_us(
    loop: asyncio.AbstractEventLoop, make: Callable[[], Awaitable[Any]], n: int, repeats: int = 5
) -> float:
    """Best of ``repeats`` runs of ``n`` sequential awaits inside one task, µs per await."""

    async def batch() -> float:
        started = time.perf_counter()
        for _ in range(n):
            await make()
        return time.perf_counter() - started

    return min(loop.run_until_complete(batch()) for _ in range(repeats)) / n * 1e6


# --- pass-through dispatch -------------------------------------------------------------------


class _AsyncHop:
    """The least an ``async def __call__`` middleware can do."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class _SyncHop:
    """A plain ``__call__`` that returns the host's awaitable (one coroutine frame less)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        return self.app(scope, receive, send)


def _function_hop(app: Any) -> Any:
    """The same hop as a plain function, the form ``PortkeyMiddleware(...)`` hands out."""

    def hop(scope: Any, receive: Any, send: Any) -> Any:
        return app(scope, receive, send)

    return hop


def passthrough_dispatch(n: int) -> list[Row]:
    from inprocess import _host, _per_call_ns, _scope

    from portkey_mw import PortkeyMiddleware

    scope = _scope("GET", "/health", [(b"host", b"x")])
    apps: dict[str, Any] = {
        "bare": _host,
        "mw": PortkeyMiddleware(_host),
        "async": _AsyncHop(_host),
        "sync": _SyncHop(_host),
        "function": _function_hop(_host),
    }
    best = dict.fromkeys(apps, float("inf"))
    for _ in range(7):  # interleaved: the machine's noise hits every variant alike
        for name, app in apps.items():
            best[name] = min(best[name], _per_call_ns(app, scope, n))
    base = best["bare"]
    return [
        ("host app alone", base / 1000, ""),
        ("PortkeyMiddleware, GET /health: added", (best["mw"] - base) / 1000, ""),
        ("an 'async def __call__' hop, no check: added", (best["async"] - base) / 1000, ""),
        (
            "a sync __call__ returning the host's awaitable, no check: added",
            (best["sync"] - base) / 1000,
            "",
        ),
        (
            "a function returning the host's awaitable, no check: added",
            (best["function"] - base) / 1000,
            "the floor",
        ),
    ]


# --- the disconnect watcher -----------------------------------------------------------------


async def _work() -> int:
    await asyncio.sleep(0)  # a real request suspends at least once
    return 200


def _receive_forever(loop: asyncio.AbstractEventLoop) -> Callable[[], Awaitable[Any]]:
    async def receive() -> Any:
        await loop.create_future()

    return receive


async def _one_task_watch(work: Coroutine[Any, Any, int], receive: Any) -> int:
    """The alternative: run ``work`` in the current task; one watcher task cancels it."""
    current = asyncio.current_task()
    assert current is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        current.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if disconnected:
            raise ConnectionResetError from None
        raise
    finally:
        watcher.cancel()


def disconnect_watcher(loop: asyncio.AbstractEventLoop, n: int) -> list[Row]:
    from portkey_mw.disconnect import DisconnectWatch

    receive = _receive_forever(loop)
    watch = DisconnectWatch()

    async def _discard(message: Any) -> None:
        return None

    async def _work_with(send: Any) -> int:
        await _work()
        return 200

    base = per_await_us(loop, _work, n)
    current = per_await_us(loop, lambda: watch.run(_work_with, receive, _discard), n)
    eager = per_await_us(loop, lambda: _one_task_watch(_work(), receive), n)
    return [
        ("await work() alone (baseline)", base, ""),
        ("DisconnectWatch.run, a request inside its grace", current, f"+{current - base:.1f} us"),
        ("a watcher task per request (the earlier design)", eager, f"+{eager - base:.1f} us"),
    ]


# --- the completion log event ---------------------------------------------------------------

_FIELDS: dict[str, Any] = {
    "trace_id": "0b6d8b5e-8a4f-4c55-9a0e-6a1e54b0b4f1",
    "model": "gpt-3.5-turbo-instruct",
    "stream": False,
    "provider": "openai",
    "target": "config",
    "retry_count": 0,
    "attempts": [{"target": "config", "provider": "openai", "status": 200, "upstream_ms": 1.2}],
    "upstream_ms": 1.234,
    "cache_status": "DISABLED",
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    "latency_ms": 2.345,
}


def _msgspec_json(obj: Any, **_kw: Any) -> str:
    return msgspec.json.encode(obj).decode()


def _emit(logger: Any) -> None:
    """What ``emit_completion`` does for a 2xx, on a logger made after the configuration
    (the module's own proxy caches the first configuration it saw)."""
    logger.info("completion", status=200, **_FIELDS)


def log_event(n: int) -> list[Row]:
    from portkey_mw.logconfig import configure_logging

    rows: list[Row] = []
    devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        configure_logging(json=True, stream=devnull)
        logger = structlog.get_logger("portkey_mw")
        current = per_call_us(lambda: _emit(logger), n)
        rows.append(("completion event via configure_logging(json) to /dev/null", current, ""))
        with contextlib.suppress(ImportError):
            from portkey_mw.events import redact_secrets

            event = {"event": "completion", "status": 200, "level": "info", **_FIELDS}
            redact = per_call_us(lambda: redact_secrets(None, "info", dict(event)), n)
            rows.append(("  of which redact_secrets over the whole event", redact, ""))
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(serializer=_msgspec_json),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.WriteLoggerFactory(devnull),
            cache_logger_on_first_use=True,
        )
        logger = structlog.get_logger("portkey_mw")
        native = per_call_us(lambda: _emit(logger), n)
        rows.append(
            ("alternative: structlog-native chain, msgspec JSON, WriteLogger", native, "no stdlib")
        )
        configure_logging(json=True, level=logging.WARNING, stream=devnull)
        logger = structlog.get_logger("portkey_mw")
        dropped = per_call_us(lambda: _emit(logger), n)
        rows.append(("completion event dropped (level WARNING)", dropped, ""))

        def bind() -> None:
            with structlog.contextvars.bound_contextvars(trace_id="t"):
                pass

        rows.append(
            ("structlog bound_contextvars(trace_id=...) enter+exit", per_call_us(bind, n), "")
        )
    finally:
        structlog.reset_defaults()
        devnull.close()
    return rows


# --- ids, headers, body, plan, provider request ---------------------------------------------


def request_front(n: int) -> list[Row]:
    from inprocess import BODY_JSON, gateway_headers

    from portkey_mw import PortkeyMiddleware
    from portkey_mw.headers import decode_headers, parse_headers
    from portkey_mw.schema import decode_body
    from portkey_mw.tracing import new_trace_id

    raw_headers = gateway_headers("http://127.0.0.1:9/instant/v1")
    middleware = PortkeyMiddleware(None, allowed_custom_hosts=["127.0.0.1:9"])
    pipeline = middleware.pipeline
    decoded = decode_headers(raw_headers)
    parsed = parse_headers(decoded, pipeline.gateway_keys)
    params = decode_body(BODY_JSON)
    plan: Any = pipeline.planner.plan(parsed)
    provider = plan.target.provider
    return [
        ("str(uuid.uuid4()) (a getrandom syscall)", per_call_us(lambda: str(uuid.uuid4()), n), ""),
        ("tracing.new_trace_id (what a request uses)", per_call_us(new_trace_id, n), ""),
        (
            "decode_headers (ASGI headers -> dict)",
            per_call_us(lambda: decode_headers(raw_headers), n),
            "",
        ),
        ("parse_headers", per_call_us(lambda: parse_headers(decoded, ()), n), ""),
        ("decode_body (msgspec + validation)", per_call_us(lambda: decode_body(BODY_JSON), n), ""),
        (
            "Planner.plan (header provider + custom host)",
            per_call_us(lambda: pipeline.planner.plan(parsed), n),
            "",
        ),
        (
            "provider.build_request (openai)",
            per_call_us(lambda: provider.build_request(plan.target, params), n),
            "",
        ),
    ]


# --- the httpx layer --------------------------------------------------------------------------


class _InstantTransport(httpx.AsyncBaseTransport):
    """Answers at once from memory: what is left is httpx's own per-request work."""

    def __init__(self) -> None:
        from fake_upstream import COMPLETION_BODY

        self.body = COMPLETION_BODY
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
            (b"x-request-id", b"req-bench"),
        ]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers=self.headers, stream=httpx.ByteStream(self.body), request=request
        )


def httpx_layer(loop: asyncio.AbstractEventLoop, n: int) -> list[Row]:
    transport = _InstantTransport()
    client = httpx.AsyncClient(transport=transport, trust_env=False)
    url = "http://127.0.0.1:9/instant/v1/completions"
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    body = b'{"model":"gpt-3.5-turbo-instruct","prompt":"Say hello","max_tokens":16}'

    async def via_client() -> None:
        request = client.build_request("POST", url, headers=headers, content=body)
        response = await client.send(request, stream=True)
        async for _ in response.aiter_bytes():
            pass
        await response.aclose()

    async def via_transport() -> None:
        request = httpx.Request("POST", url, headers=headers, content=body)
        response = await transport.handle_async_request(request)
        async for _ in response.aiter_bytes():
            pass
        await response.aclose()

    build = per_call_us(lambda: client.build_request("POST", url, headers=headers, content=body), n)
    full = per_await_us(loop, via_client, n)
    bare = per_await_us(loop, via_transport, n)
    response = httpx.Response(
        200, headers=transport.headers, request=client.build_request("POST", url)
    )
    cookies = per_call_us(lambda: client.cookies.extract_cookies(response), n)
    parse = per_call_us(lambda: httpx.URL(url), n)
    loop.run_until_complete(client.aclose())
    return [
        ("httpx: build_request + send + read + aclose", full, "in-memory transport"),
        ("  of which build_request", build, ""),
        ("  of which URL parsing (httpx.URL)", parse, ""),
        ("  of which cookie extraction per response", cookies, ""),
        ("same request through the transport alone", bare, f"client layer +{full - bare:.0f} us"),
    ]


# --- streams: per-event work ------------------------------------------------------------------


class _FinishView(msgspec.Struct):
    finish_reason: str | None = None


class _LeanView(msgspec.Struct):
    usage: dict[str, int] | None = None
    choices: list[_FinishView] | None = None


_LEAN = msgspec.json.Decoder(_LeanView)


def stream_events(n: int) -> list[Row]:
    from fake_upstream import sse_events

    from portkey_mw.framing import SSEDecoder
    from portkey_mw.providers import REGISTRY
    from portkey_mw.providers.base import ResponseContext

    events = sse_events(50)
    payload = b"".join(events)
    datas = [e.removeprefix(b"data: ").rstrip(b"\n") for e in events[:-1]]
    provider = REGISTRY["openai"]
    ctx = ResponseContext(provider="openai", params={"model": "m", "stream": True})

    def decode_all() -> None:
        SSEDecoder().feed(payload)

    def map_all() -> None:
        mapper = provider.stream_mapper(ctx)
        assert mapper is not None
        for data in datas:
            mapper.on_event(None, data)

    def lean_views() -> None:
        for data in datas:
            _LEAN.decode(data)

    per = len(datas)
    return [
        (
            f"SSEDecoder.feed, {per} events in one read (per event)",
            per_call_us(decode_all, n // per) / per,
            "",
        ),
        (
            "openai VerbatimStream.on_event (per event)",
            per_call_us(map_all, n // per) / per,
            "full _UsageView decode",
        ),
        (
            "alternative: Struct view with only finish_reason (per event)",
            per_call_us(lean_views, n // per) / per,
            "",
        ),
    ]


# --- small things ----------------------------------------------------------------------------


def small_things(loop: asyncio.AbstractEventLoop, n: int) -> list[Row]:
    async def timeout_none() -> None:
        async with asyncio.timeout(None):  # noqa: ASYNC100 - measuring the context itself
            pass

    async def nothing() -> None:
        return None

    base = per_await_us(loop, nothing, n)
    timeout = per_await_us(loop, timeout_none, n)
    return [("asyncio.timeout(None) enter+exit per attempt", timeout - base, "")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = 2000 if args.quick else 20000
    loop = _new_loop()
    sections: list[tuple[str, Callable[[], list[Row]]]] = [
        ("pass-through dispatch (per request, in us)", lambda: passthrough_dispatch(n * 5)),
        ("disconnect watcher (per request)", lambda: disconnect_watcher(loop, n)),
        ("completion log event (per request)", lambda: log_event(n)),
        ("request front (per request)", lambda: request_front(n)),
        ("httpx client layer (per upstream call)", lambda: httpx_layer(loop, n // 4)),
        ("streams (per SSE event)", lambda: stream_events(n * 5)),
        ("small things", lambda: small_things(loop, n)),
    ]
    try:
        for title, measure in sections:
            print(f"\n== {title} ==")
            try:
                rows = measure()
            except (ImportError, AttributeError, TypeError, KeyError) as exc:
                print(f"  skipped: internals moved ({type(exc).__name__}: {exc})")
                continue
            width = max(len(r[0]) for r in rows)
            for label, us, note in rows:
                print(f"  {label:<{width}}  {us:8.2f} us  {note}")
    finally:
        with contextlib.suppress(RuntimeError):
            loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
