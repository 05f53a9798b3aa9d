"""Filling the ``completion`` event: what the request said, what routing did, and — only
when the operator opts in with ``log_prompts`` — the prompt and completion text, clipped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec

from portkey_mw.headers import RequestHeaders, metadata_user
from portkey_mw.settings import Settings
from portkey_mw.tracing import RequestTrace

if TYPE_CHECKING:
    from portkey_mw.routing import Outcome

_ANY = msgspec.json.Decoder()


def to_microsecond(milliseconds: float) -> float:
    """A duration in ms, kept to the microsecond for the log: ``round(x * 1000) / 1000``
    costs less than half of ``round(x, 3)`` (no trip through decimal digits)."""
    return round(milliseconds * 1000) / 1000


def describe_request(log: dict[str, Any], headers: RequestHeaders, trace: RequestTrace) -> None:
    log["span_id"] = trace.span_id
    if trace.parent_span_id is not None:
        log["parent_span_id"] = trace.parent_span_id
    if headers.metadata:
        log["metadata"] = headers.metadata


def describe_params(
    log: dict[str, Any], params: dict[str, Any], headers: RequestHeaders, settings: Settings
) -> None:
    log["model"] = params.get("model")
    log["stream"] = params.get("stream") is True
    user = metadata_user(headers.metadata, params)
    if user is not None:
        log["user"] = user
    if settings.log_prompts:
        prompt = params.get("prompt")
        text = prompt if isinstance(prompt, str) else msgspec.json.encode(prompt).decode()
        log["prompt"] = text[: settings.log_text_max_chars]


def describe_outcome(log: dict[str, Any], outcome: Outcome) -> None:
    answer = outcome.answer
    if outcome.leaf is not None:
        log["provider"] = outcome.leaf.target.provider.name
        log["target"] = outcome.leaf.path
    if answer.model:
        log["model"] = answer.model
    log["retry_count"] = outcome.retry_count
    log["attempts"] = [
        {
            "target": a.path,
            "provider": a.provider,
            "status": a.status,
            # to the microsecond, like every other duration of the event
            "upstream_ms": None if a.upstream_ms is None else to_microsecond(a.upstream_ms),
        }
        for a in outcome.attempts
    ]
    upstream_ms = answer.upstream_ms
    log["upstream_ms"] = to_microsecond(upstream_ms) if upstream_ms is not None else None
    log["cache_status"] = answer.cache_status
    if answer.dropped:
        log["dropped_params"] = answer.dropped
    if answer.error_type is not None and not answer.ok:
        log["error_type"] = answer.error_type
    if answer.usage is not None:
        log["usage"] = answer.usage.as_dict()


def capture_completion_text(body: bytes, log: dict[str, Any], settings: Settings) -> None:
    try:
        decoded = _ANY.decode(body)
    except msgspec.DecodeError:
        return
    choices = decoded.get("choices") if isinstance(decoded, dict) else None
    texts = [c.get("text", "") for c in choices or () if isinstance(c, dict)]
    log["completion"] = "".join(t for t in texts if isinstance(t, str))[
        : settings.log_text_max_chars
    ]


async def capture_stream_text(
    frames: AsyncIterator[bytes], log: dict[str, Any], settings: Settings
) -> AsyncIterator[bytes]:
    """Relay frames unchanged, keeping the first ``log_text_max_chars`` of completion text."""
    cap = settings.log_text_max_chars
    kept: list[str] = []
    size = 0
    log["completion"] = ""
    async for frame in frames:
        if size < cap and frame.startswith(b"data: {"):
            try:
                chunk = _ANY.decode(frame[6:])
            except msgspec.DecodeError:
                chunk = None
            for choice in (chunk or {}).get("choices") or ():
                text = choice.get("text") if isinstance(choice, dict) else None
                if isinstance(text, str) and text:
                    kept.append(text)
                    size += len(text)
            log["completion"] = "".join(kept)[:cap]
        yield frame
