"""One intercepted ``POST``: read, validate, route, respond, log.

The pipeline answers eagerly and never calls the host app. Every exit path sends exactly one
response (unless the client left) and emits exactly one ``completion`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import httpx
import msgspec
from structlog.contextvars import bind_contextvars, reset_contextvars

from portkey_mw.asgi import ClientDisconnected, read_body, send_bytes, send_error
from portkey_mw.cache import make_cache
from portkey_mw.clients import UpstreamClient
from portkey_mw.disconnect import DisconnectWatch
from portkey_mw.errors import ErrorBody, ErrorDetail, GatewayError, UnsupportedMediaType
from portkey_mw.events import LOGGER, emit_completion
from portkey_mw.headers import decode_headers, parse_headers
from portkey_mw.observe import (
    capture_completion_text,
    capture_stream_text,
    describe_outcome,
    describe_params,
    describe_request,
    to_microsecond,
)
from portkey_mw.plan import Node, Planner
from portkey_mw.providers import REGISTRY
from portkey_mw.providers.base import StreamFailure
from portkey_mw.response_cache import ResponseCache
from portkey_mw.routing import Outcome, RequestState, Router
from portkey_mw.schema import decode_body
from portkey_mw.settings import Settings
from portkey_mw.streaming import completion_frames
from portkey_mw.tracing import RequestTrace, Tracer, new_span_id, new_trace_id
from portkey_mw.upstream import make_client

_DONE = b"data: [DONE]\n\n"
_INTERNAL = GatewayError("The gateway failed to handle this request.", code="internal_error")
_SSE_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")
_JSON_TYPE = (b"content-type", b"application/json")
_ENCODER = msgspec.json.Encoder()


def _structlog_var(key: str) -> ContextVar[Any]:
    """structlog's own context variable for ``key`` (the one ``bind_contextvars`` sets and
    ``merge_contextvars`` reads), found once through the public token: setting it directly
    costs a tenth of a ``bind_contextvars`` + ``reset_contextvars`` pair per request."""
    tokens = bind_contextvars(**{key: None})
    reset_contextvars(**tokens)
    return tokens[key].var


_TRACE_ID = _structlog_var("trace_id")


class _Request(msgspec.Struct, gc=False):
    """Per-request bookkeeping: start time, the log event being built, the trace and the
    response header that names it."""

    started: float
    log: dict[str, Any]
    trace_header: list[tuple[bytes, bytes]]
    trace: RequestTrace | None = None


class Pipeline:
    """Owns everything built once: planner, router, upstream client."""

    def __init__(
        self,
        settings: Settings,
        http_client: httpx.AsyncClient | None,
        tracer_provider: Any = None,
    ) -> None:
        self.settings = settings
        self.planner = Planner(settings, REGISTRY)
        self.gateway_keys = tuple(k.encode("latin-1") for k in settings.api_keys)
        self._injected = http_client
        self._client: UpstreamClient | None = None
        self._router: Router | None = None
        self.tracer = Tracer(settings.propagate_trace_context, tracer_provider)
        self.watch = DisconnectWatch()
        self.cache = ResponseCache(
            make_cache(
                settings.cache_url,
                settings.cache_max_entries,
                settings.cache_max_bytes,
                settings.cache_timeout_ms,
            ),
            settings.cache_max_entry_bytes,
        )

    @property
    def router(self) -> Router:
        if self._router is None:
            # Created on first use, inside the server's event loop.
            self._client = self._client or make_client(self.settings, self._injected)
            self._router = Router(self._client, self.settings, self.cache, self.tracer)
        return self._router

    async def aclose(self) -> None:
        await self.cache.aclose()
        if self._client is not None:
            await self._client.aclose()  # an injected httpx client stays open: it is yours
            self._client = None
            self._router = None

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # One coroutine from here to the router (reading, validating, watching the client):
        # every frame between the server and the upstream call is paid on each resumption.
        raw = decode_headers(scope["headers"])
        trace_id = raw.get("x-portkey-trace-id") or new_trace_id()
        request = _Request(
            time.perf_counter(),
            {"trace_id": trace_id, "span_id": new_span_id()},
            [(b"x-portkey-trace-id", trace_id.encode("latin-1", "replace"))],
        )
        status = 500
        # Your own log lines carry the trace id while the request runs (reset afterwards).
        token = _TRACE_ID.set(trace_id)
        try:
            try:
                body = await read_body(receive, self.settings.max_body_bytes, _json_length(raw))
                plan, state = self._prepare(raw, body, request, scope)
            except GatewayError as error:
                status = await _refuse(send, error, request)
                return
            guard = self.watch.enter(receive, send)
            try:
                status = await self._route_and_respond(plan, state, guard.send, request)
            except asyncio.CancelledError:
                if not guard.left_early():
                    raise
                raise ClientDisconnected from None
            finally:
                self.watch.leave(guard)
        except ClientDisconnected:
            status = 499
            request.log["error_type"] = "client_disconnected"
        except Exception as exc:  # noqa: BLE001 - a bug of ours: a bare 500, traceback only logged
            _log_internal_error(exc, request.log)
            with contextlib.suppress(Exception):
                await send_error(send, _INTERNAL, [])
        finally:
            _TRACE_ID.reset(token)
            log = request.log
            log["latency_ms"] = to_microsecond((time.perf_counter() - request.started) * 1000)
            if request.trace is not None:
                self.tracer.finish(request.trace, status, log)
            emit_completion(status, log)

    def _prepare(
        self, raw: dict[str, str], body: bytes, request: _Request, scope: dict[str, Any]
    ) -> tuple[Node, RequestState]:
        """Headers, trace, body and plan of a request, validated (or a ``GatewayError``)."""
        log = request.log
        headers = parse_headers(raw, self.gateway_keys, log["trace_id"])
        request.trace = trace = self.tracer.start(
            headers.trace_id, headers.parent_span_id, raw, log["span_id"]
        )
        if trace.otel_trace_id and "x-portkey-trace-id" not in raw:
            headers.trace_id = trace.otel_trace_id  # one trace id everywhere
        if headers.trace_id != log["trace_id"]:  # from traceparent or OpenTelemetry
            log["trace_id"] = headers.trace_id
            request.trace_header = [(b"x-portkey-trace-id", headers.trace_id.encode("latin-1"))]
            _TRACE_ID.set(headers.trace_id)
        describe_request(log, headers, trace)
        params = decode_body(body)
        describe_params(log, params, headers, self.settings)
        plan = self.planner.plan(headers)
        return plan, RequestState(params, headers, scope.get("path", ""), trace)

    async def _route_and_respond(
        self,
        plan: Node,
        state: RequestState,
        send: Any,
        request: _Request,
    ) -> int:
        log = request.log
        try:
            outcome = await self.router.run(plan, state)
        except GatewayError as error:  # routing itself refused (e.g. no conditional match)
            return await _refuse(send, error, request)
        answer = outcome.answer
        try:
            describe_outcome(log, outcome)
            overhead = _overhead_ms(request.started, outcome, state.waited_ms)
            log["overhead_ms"] = overhead
            headers = [*request.trace_header, *_portkey_headers(outcome), *answer.headers]
            if self.settings.overhead_header:
                headers.append((b"x-portkey-overhead-ms", f"{overhead:.3f}".encode()))
            capture = self.settings.log_prompts
            if answer.stream is not None:
                frames = (
                    capture_stream_text(answer.stream, log, self.settings)
                    if capture
                    else answer.stream
                )
                await self._relay(frames, headers, send, request)
                log["usage"] = answer.usage.as_dict() if answer.usage else None
                return answer.status
            if capture and answer.ok and answer.body is not None:
                capture_completion_text(answer.body, log, self.settings)
            if state.params.get("stream") is True and answer.ok and answer.body is not None:
                frames = _iterate(completion_frames(answer.body, state.params))
                await self._relay(frames, headers, send, request)
                return answer.status
            headers.append(_JSON_TYPE)
            await send_bytes(send, answer.status, headers, answer.body or b"")
            return answer.status
        finally:
            await answer.aclose()

    async def _relay(
        self,
        frames: AsyncIterator[bytes],
        headers: list[tuple[bytes, bytes]],
        send: Any,
        request: _Request,
    ) -> None:
        log = request.log
        headers.append(_SSE_TYPE)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        first = True
        try:
            async for frame in frames:
                if first:
                    log["ttft_ms"] = to_microsecond((time.perf_counter() - request.started) * 1000)
                    first = False
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        except StreamFailure as failure:
            log["error_type"] = "stream_error"
            await send(
                {"type": "http.response.body", "body": _error_frame(failure), "more_body": True}
            )
        except httpx.HTTPError:
            log["error_type"] = "stream_error"
            cut = StreamFailure("The provider's stream failed before it finished.")
            await send({"type": "http.response.body", "body": _error_frame(cut), "more_body": True})
        except Exception as exc:  # noqa: BLE001 - a bug of ours mid-stream: still end the stream
            _log_internal_error(exc, log)
            broken = StreamFailure("The gateway failed while relaying the stream.", "api_error")
            await send(
                {"type": "http.response.body", "body": _error_frame(broken), "more_body": True}
            )
        await send({"type": "http.response.body", "body": _DONE, "more_body": False})


async def _refuse(send: Any, error: GatewayError, request: _Request) -> int:
    """Answer a request the gateway refuses with the error in the OpenAI shape; noted in the
    log event."""
    log = request.log
    log["error_type"] = error.error_type
    log["error_param"] = error.param
    await send_error(send, error, request.trace_header)
    return error.status


async def _iterate(frames: list[bytes]) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


def _error_frame(failure: StreamFailure) -> bytes:
    body = ErrorBody(ErrorDetail(failure.message, failure.error_type))
    return b"data: " + _ENCODER.encode(body) + b"\n\n"


def _json_length(raw: dict[str, str]) -> str | None:
    """The declared length of a JSON body; any other declared media type is a 415."""
    content_type = raw.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise UnsupportedMediaType(
            f"Unsupported Content-Type '{content_type[:64]}': send application/json.",
            param="content-type",
        )
    return raw.get("content-length")


def _is_json(content_type: str) -> bool:
    if content_type == "application/json":  # what nearly every client sends
        return True
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _log_internal_error(exc: Exception, log: dict[str, Any]) -> None:
    """Log a bug with its traceback as plain text: never ``exc_info``, whose renderers may
    print local variables (request headers, keys)."""
    log["error_type"] = "internal_error"
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    LOGGER.error(
        "internal_error", trace_id=log["trace_id"], error=type(exc).__name__, traceback=trace
    )


def _overhead_ms(started: float, outcome: Outcome, waited_ms: float) -> float:
    """The gateway's own time so far: all of it but upstream waits and retry backoff."""
    elapsed = (time.perf_counter() - started) * 1000
    upstream = 0.0
    for attempt in outcome.attempts:  # a loop, not sum() over a generator: usually one
        upstream += attempt.upstream_ms or 0.0
    return to_microsecond(max(elapsed - upstream - waited_ms, 0.0))


def _portkey_headers(outcome: Outcome) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-portkey-retry-attempt-count", str(outcome.retry_count).encode()),
        (b"x-portkey-cache-status", outcome.answer.cache_status.encode()),
    ]
    if outcome.leaf is not None:
        headers.append((b"x-portkey-provider", outcome.leaf.target.provider.name.encode()))
        headers.append((b"x-portkey-last-used-option-index", outcome.leaf.path.encode()))
    return headers


__all__ = ["Pipeline"]
