"""Trace context: W3C ``traceparent`` in, a child span's ``traceparent`` out, and, when the
host has OpenTelemetry set up (extra ``portkey_mw[otel]``), one span per request and per
upstream attempt with the GenAI semantic-convention attributes.

Without OpenTelemetry installed, none of it is imported and the cost is two random span ids.
Propagation upstream (``propagate_trace_context``): ``"auto"`` sends ``traceparent`` when the
client sent one or OpenTelemetry is active, ``"always"`` also starts a trace from the request's
own trace id, ``"never"`` sends nothing.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

import msgspec

try:  # optional: portkey_mw[otel]
    from opentelemetry import trace as _otel_trace
    from opentelemetry.propagate import extract as _otel_extract
    from opentelemetry.propagate import inject as _otel_inject
    from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider
except ImportError:  # pragma: no cover - exercised where the extra is absent
    _otel_trace = None  # type: ignore[assignment]

_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def new_span_id() -> str:
    # Trace and span ids must be unique, not secret: OpenTelemetry's SDK draws them from
    # ``random`` too. ``secrets`` would cost a getrandom() syscall per id.
    return f"{_getrandbits(64) or 1:016x}"


def new_trace_id() -> str:
    """A random UUID (version 4) as text, without the syscall ``uuid.uuid4`` makes."""
    bits = (_getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# The module-level functions of ``random`` are re-seeded in a forked child, so two worker
# processes never draw the same ids.
_getrandbits = random.getrandbits
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def _w3c_trace_id(trace_id: str) -> str | None:
    """A W3C trace id for our trace id when it is one (32 hex, or a UUID)."""
    candidate = trace_id.replace("-", "").lower()
    return candidate if _HEX32.match(candidate) and set(candidate) != {"0"} else None


class RequestTrace(msgspec.Struct, gc=False):
    trace_id: str
    span_id: str
    parent_span_id: str | None
    propagate: bool
    tracestate: str | None = None
    otel_span: Any = None
    otel_trace_id: str | None = None

    def upstream_headers(self, otel_attempt: Any = None) -> dict[str, str]:
        """Headers that make the upstream call a child span of this request."""
        if otel_attempt is not None and _otel_trace is not None:
            carrier: dict[str, str] = {}
            with _otel_trace.use_span(otel_attempt, end_on_exit=False):
                _otel_inject(carrier)
            return carrier
        w3c = _w3c_trace_id(self.trace_id) if self.propagate else None
        if w3c is None:
            return {}
        headers = {"traceparent": f"00-{w3c}-{new_span_id()}-01"}
        if self.tracestate:
            headers["tracestate"] = self.tracestate
        return headers


class Tracer:
    """Built once per middleware."""

    def __init__(self, mode: str, tracer_provider: Any = None) -> None:
        self.mode = mode
        self._provider = tracer_provider
        self._tracer: Any = None
        self._resolved = False

    @property
    def otel(self) -> Any:
        """The OpenTelemetry tracer when a real SDK provider is set up, else ``None``.

        Resolved once, on the first request (the host sets its provider up at start-up), so
        a gateway without an SDK pays nothing per request."""
        if self._resolved:
            return self._tracer
        self._resolved = True
        if _otel_trace is None or self.mode == "never":
            return None
        provider = self._provider or _otel_trace.get_tracer_provider()
        if not isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
            self._tracer = provider.get_tracer("portkey_mw")
        return self._tracer

    def start(
        self,
        trace_id: str,
        parent_span_id: str | None,
        headers: Mapping[str, str],
        span_id: str | None = None,
    ) -> RequestTrace:
        tracestate = headers.get("tracestate") or None
        if tracestate is not None and not (
            tracestate.isascii() and tracestate.replace("\t", " ").isprintable()
        ):
            # W3C: a tracestate that cannot be parsed is dropped, not sent on (tabs and spaces
            # around its commas are allowed).
            tracestate = None
        propagate = self.mode == "always" or (self.mode == "auto" and parent_span_id is not None)
        trace = RequestTrace(
            trace_id, span_id or new_span_id(), parent_span_id, propagate, tracestate
        )
        tracer = self.otel
        if tracer is not None:
            context = _otel_extract(dict(headers))
            span = tracer.start_span(
                "portkey_mw completion", context=context, kind=_otel_trace.SpanKind.SERVER
            )
            if span.is_recording():
                trace.otel_span = span
                span_context = span.get_span_context()
                trace.span_id = format(span_context.span_id, "016x")
                trace.otel_trace_id = format(span_context.trace_id, "032x")
            else:
                span.end()
        return trace

    def start_attempt(self, trace: RequestTrace, provider: str, model: str | None) -> Any:
        """A CLIENT span per upstream attempt, or ``None`` without OpenTelemetry; the caller
        ends it (:func:`attempt_done`)."""
        tracer = self.otel
        if trace.otel_span is None or tracer is None:
            return None
        context = _otel_trace.set_span_in_context(trace.otel_span)
        return tracer.start_span(
            f"text_completion {model or ''}".strip(),
            context=context,
            kind=_otel_trace.SpanKind.CLIENT,
            attributes={
                "gen_ai.system": provider,
                "gen_ai.operation.name": "text_completion",
                **({"gen_ai.request.model": model} if model else {}),
            },
        )

    def finish(self, trace: RequestTrace, status: int, fields: Mapping[str, Any]) -> None:
        span = trace.otel_span
        if span is None:
            return
        attributes: dict[str, Any] = {"http.response.status_code": status}
        if fields.get("provider"):
            attributes["gen_ai.system"] = fields["provider"]
        if fields.get("model"):
            attributes["gen_ai.request.model"] = fields["model"]
        usage = fields.get("usage")
        if isinstance(usage, Mapping):
            attributes["gen_ai.usage.input_tokens"] = usage.get("prompt_tokens", 0)
            attributes["gen_ai.usage.output_tokens"] = usage.get("completion_tokens", 0)
        span.set_attributes(attributes)
        if status >= 500:
            span.set_status(_otel_trace.Status(_otel_trace.StatusCode.ERROR))
        span.end()


def attempt_done(span: Any, status: int, model: str | None, usage: Any) -> None:
    """Record an attempt's outcome on its span and end it."""
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if model:
        span.set_attribute("gen_ai.response.model", model)
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
    span.end()
