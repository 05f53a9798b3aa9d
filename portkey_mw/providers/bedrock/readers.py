"""Reading Bedrock answers: each model family's InvokeModel body and stream chunk, reduced to
the few things the OpenAI shape needs (texts, raw finish reasons, usage, an id).

Finish reasons stay raw here; the caller maps them to OpenAI's vocabulary. A chunk's reason
is ``None`` until the chunk that ends that choice.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from portkey_mw.providers.base import ResponseUnreadable, Usage


class Reading(NamedTuple):
    """A whole (non-stream) answer: ``(text, raw finish reason)`` per choice."""

    choices: list[tuple[str, Any]]
    usage: Usage | None = None
    id: str | None = None


Piece = tuple[int, str, Any]
"""One stream chunk's contribution to one choice: index, text, raw finish reason or None."""


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise ResponseUnreadable(f"the answer has no '{key}' list")
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def counted(prompt: Any, output: Any) -> Usage | None:
    """Usage from two token counts, if the answer gave at least one."""
    if not isinstance(prompt, int) and not isinstance(output, int):
        return None
    return Usage(_int(prompt), _int(output), _int(prompt) + _int(output))


def metrics_usage(chunk: dict[str, Any]) -> Usage | None:
    """Usage from ``amazon-bedrock-invocationMetrics`` (the last chunk of every stream)."""
    metrics = _dict(chunk.get("amazon-bedrock-invocationMetrics"))
    return counted(metrics.get("inputTokenCount"), metrics.get("outputTokenCount"))


# --- whole answers -----------------------------------------------------------------------


def claude_body(body: dict[str, Any]) -> Reading:
    if not isinstance(body.get("completion"), str):
        raise ResponseUnreadable("the answer has no 'completion' text")
    return Reading([(body["completion"], body.get("stop_reason"))])


def cohere_body(body: dict[str, Any]) -> Reading:
    gens = [_dict(g) for g in _list(body, "generations")]
    raw_id = body.get("id")
    return Reading(
        [(_str(g.get("text")), g.get("finish_reason")) for g in gens],
        id=raw_id if isinstance(raw_id, str) else None,
    )


def ai21_body(body: dict[str, Any]) -> Reading:
    items = [_dict(c) for c in _list(body, "completions")]
    choices = [
        (_str(_dict(c.get("data")).get("text")), _dict(c.get("finishReason")).get("reason"))
        for c in items
    ]
    prompt_tokens = _dict(body.get("prompt")).get("tokens")
    outputs = [_dict(c.get("data")).get("tokens") for c in items]
    usage = None
    if isinstance(prompt_tokens, list) and all(isinstance(t, list) for t in outputs):
        usage = counted(len(prompt_tokens), sum(len(t) for t in outputs if isinstance(t, list)))
    raw_id = body.get("id")
    return Reading(choices, usage, str(raw_id) if isinstance(raw_id, (int, str)) else None)


def titan_body(body: dict[str, Any]) -> Reading:
    results = [_dict(r) for r in _list(body, "results")]
    usage = counted(
        body.get("inputTextTokenCount"), sum(_int(r.get("tokenCount")) for r in results)
    )
    return Reading([(_str(r.get("outputText")), r.get("completionReason")) for r in results], usage)


def llama_body(body: dict[str, Any]) -> Reading:
    if not isinstance(body.get("generation"), str):
        raise ResponseUnreadable("the answer has no 'generation' text")
    usage = counted(body.get("prompt_token_count"), body.get("generation_token_count"))
    return Reading([(body["generation"], body.get("stop_reason"))], usage)


def mistral_body(body: dict[str, Any]) -> Reading:
    outputs = [_dict(o) for o in _list(body, "outputs")]
    return Reading([(_str(o.get("text")), o.get("stop_reason")) for o in outputs])


# --- stream chunks -----------------------------------------------------------------------


def claude_chunk(chunk: dict[str, Any]) -> list[Piece]:
    return [(0, _str(chunk.get("completion")), chunk.get("stop_reason") or None)]


def cohere_chunk(chunk: dict[str, Any]) -> list[Piece]:
    index = _int(chunk.get("index"))
    reason = (chunk.get("finish_reason") or "COMPLETE") if chunk.get("is_finished") else None
    # The final event repeats the whole answer under "response": only "text" is new text.
    return [(index, _str(chunk.get("text")), reason)]


def titan_chunk(chunk: dict[str, Any]) -> list[Piece]:
    reason = chunk.get("completionReason") or None
    return [(_int(chunk.get("index")), _str(chunk.get("outputText")), reason)]


def llama_chunk(chunk: dict[str, Any]) -> list[Piece]:
    # Unlike the Portkey gateway, the final chunk's text is kept.
    return [(0, _str(chunk.get("generation")), chunk.get("stop_reason") or None)]


def mistral_chunk(chunk: dict[str, Any]) -> list[Piece]:
    outputs = chunk.get("outputs")
    items = [_dict(o) for o in outputs] if isinstance(outputs, list) else []
    return [(i, _str(o.get("text")), o.get("stop_reason") or None) for i, o in enumerate(items)]


def no_chunks(_chunk: dict[str, Any]) -> list[Piece]:
    return []  # AI21 Jurassic on Bedrock does not stream; its streams are emulated
