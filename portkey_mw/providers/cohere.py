"""Cohere: the legacy Generate API (``POST /v1/generate``), text prompts only.

Unlike the Portkey gateway, finish reasons come from Cohere (``COMPLETE`` is ``stop``,
``MAX_TOKENS`` is ``length``, ``ERROR_TOXIC`` is ``content_filter``), usage is read from
``meta.billed_units``, the requested model is reported, and the NDJSON stream ends with a
finish-reason chunk (and ``[DONE]``, written by the relay). Ranges are Cohere's documented
ones (``p`` 0.01-0.99, penalties 0-1, ``k`` 0-500, ``num_generations`` 1-5): anything
outside is a 400 naming the OpenAI parameter, never a clamp.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from portkey_mw.framing import NDJSONDecoder
from portkey_mw.providers._openai_compatible import (
    bearer_auth,
    fixed_base,
    fixed_endpoint,
    map_compatible_error,
)
from portkey_mw.providers.base import (
    DROP,
    JSONDict,
    Params,
    ParamSpec,
    ParamTable,
    Provider,
    ResponseContext,
    ResponseUnreadable,
    StreamFailure,
    Usage,
    choice,
    completion,
    map_finish_reason,
    text_chunk,
    usage_chunk,
)

_ANY = msgspec.json.Decoder()

# Beyond the shared map: the context window ran out, which OpenAI calls ``length``.
_REASONS = {"ERROR_LIMIT": "length", "USER_CANCEL": "stop"}


def _as_list(value: Any, _params: Params) -> Any:
    return [value] if isinstance(value, str) else value


def _honoured(_value: Any, _params: Params) -> Any:
    """Handled by the gateway itself (``stream_options``), so neither sent nor dropped."""
    return DROP


PARAMS: ParamTable = {
    "model": ParamSpec("model"),
    "prompt": ParamSpec("prompt"),
    "max_tokens": ParamSpec("max_tokens"),
    "temperature": ParamSpec("temperature", minimum=0, maximum=5),
    "top_p": ParamSpec("p", minimum=0.01, maximum=0.99),
    "top_k": ParamSpec("k", minimum=0, maximum=500),
    "frequency_penalty": ParamSpec("frequency_penalty", minimum=0, maximum=1),
    "presence_penalty": ParamSpec("presence_penalty", minimum=0, maximum=1),
    "n": ParamSpec("num_generations", minimum=1, maximum=5),
    # OpenAI's stop strings are left out of the text, as Cohere's end_sequences are.
    "stop": ParamSpec("end_sequences", _as_list),
    "seed": ParamSpec("seed"),
    "stream": ParamSpec("stream"),
    "stream_options": ParamSpec("stream_options", _honoured),
    # Cohere's own extras.
    "truncate": ParamSpec("truncate"),
    "raw_prompting": ParamSpec("raw_prompting"),
}


def _usage(meta: Any) -> Usage | None:
    billed = meta.get("billed_units") if isinstance(meta, dict) else None
    if not isinstance(billed, dict):
        return None
    prompt = billed.get("input_tokens")
    output = billed.get("output_tokens")
    if not isinstance(prompt, (int, float)) and not isinstance(output, (int, float)):
        return None
    prompt = int(prompt) if isinstance(prompt, (int, float)) else 0
    output = int(output) if isinstance(output, (int, float)) else 0
    return Usage(prompt, output, prompt + output)


def _index(item: dict[str, Any], position: int) -> int:
    index = item.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else position


def map_response(body: Any, ctx: ResponseContext) -> JSONDict:
    generations = body.get("generations") if isinstance(body, dict) else None
    if not isinstance(generations, list):
        raise ResponseUnreadable("the answer has no 'generations' list")
    choices = []
    for position, raw in enumerate(generations):
        item = raw if isinstance(raw, dict) else {}
        text = item.get("text")
        reason = map_finish_reason(item.get("finish_reason"), _REASONS)
        choices.append(
            choice(text if isinstance(text, str) else "", _index(item, position), reason)
        )
    response_id = body.get("id")
    return completion(
        ctx,
        response_id if isinstance(response_id, str) else ctx.new_id(),
        choices,
        _usage(body.get("meta")),
    )


class CohereStream:
    """Cohere's NDJSON events: ``text-generation`` lines become chunks; the final
    ``is_finished`` line (``stream-end``) carries the finish reason per generation and the
    usage; ``stream-error`` (or a final ``ERROR``) is a :class:`StreamFailure`."""

    def __init__(self, ctx: ResponseContext) -> None:
        self.ctx = ctx
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._id = ctx.new_id()

    def on_event(self, event: str | None, data: bytes) -> Iterable[bytes]:
        if data.startswith(b"data:"):  # tolerated, as the Portkey gateway does
            data = data[5:].strip()
        try:
            raw = _ANY.decode(data)
        except msgspec.DecodeError:
            raise StreamFailure("Cohere sent a stream line that is not JSON.") from None
        if not isinstance(raw, dict):
            return ()
        if raw.get("event_type") == "stream-error" or raw.get("finish_reason") == "ERROR":
            message = raw.get("err") or raw.get("message") or "generation failed"
            raise StreamFailure(f"Cohere reported an error mid-stream: {message}")
        if raw.get("is_finished") is True:
            return self._final(raw)
        text = raw.get("text")
        if not isinstance(text, str) or not text:
            return ()  # stream-start and other events without text
        return (text_chunk(self.ctx, self._id, text, index=_index(raw, 0)),)

    def _final(self, raw: dict[str, Any]) -> list[bytes]:
        response = raw.get("response")
        response = response if isinstance(response, dict) else {}
        self.usage = _usage(response.get("meta"))
        generations = response.get("generations")
        items = [g for g in generations or () if isinstance(g, dict)] or [{}]
        frames = []
        for position, item in enumerate(items):
            reason = item.get("finish_reason") or raw.get("finish_reason")
            self.finish_reason = map_finish_reason(reason, _REASONS)
            usage = self.usage if position == len(items) - 1 else None
            frames.append(
                text_chunk(
                    self.ctx,
                    self._id,
                    "",
                    index=_index(item, position),
                    finish_reason=self.finish_reason,
                    usage=usage,
                )
            )
        if self.usage is not None and self.ctx.include_usage:
            frames.append(usage_chunk(self.ctx, self._id, self.usage))
        return frames

    def finish(self) -> Iterable[bytes]:
        if self.finish_reason is None:
            # Cohere always ends with an is_finished line: without it the stream was cut.
            raise StreamFailure("Cohere's stream ended before its final event.")
        return ()


PROVIDER = Provider(
    name="cohere",
    base_url=fixed_base("https://api.cohere.ai"),
    endpoint=fixed_endpoint("/v1/generate"),
    params=PARAMS,
    auth_headers=bearer_auth,
    # Cohere errors are {"message": ...}; the shared mapper reads that and other shapes.
    map_error=map_compatible_error,
    map_response=map_response,
    stream_mapper=CohereStream,
    stream_decoder=NDJSONDecoder,
    prompt_mode="text",
    native_n=True,
)
