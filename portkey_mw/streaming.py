"""A finished completion replayed as an OpenAI SSE stream.

Used when a stream was asked for but the answer came whole: a provider without streaming
(AI21) or, later, a cache hit. Each choice becomes one chunk carrying its whole text and
finish reason; the usage rides on the last chunk (and, with ``include_usage``, in OpenAI's
own trailing usage chunk). The relay appends ``data: [DONE]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

_ANY = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


def completion_frames(body: bytes, params: Mapping[str, Any]) -> list[bytes]:
    completion = _ANY.decode(body)
    if not isinstance(completion, dict):
        return []
    base = {
        key: completion[key]
        for key in ("id", "object", "created", "model", "provider")
        if key in completion
    }
    base["object"] = "text_completion"
    raw_choices = completion.get("choices")
    choices: list[Any] = raw_choices if isinstance(raw_choices, list) else []
    usage = completion.get("usage")
    frames = []
    for position, choice in enumerate(choices):
        item = choice if isinstance(choice, dict) else {}
        chunk = {
            **base,
            "choices": [
                {
                    "text": item.get("text", ""),
                    "index": item.get("index", position),
                    "logprobs": item.get("logprobs"),
                    "finish_reason": item.get("finish_reason") or "stop",
                }
            ],
        }
        if usage is not None and position == len(choices) - 1:
            chunk["usage"] = usage
        frames.append(b"data: " + _ENCODER.encode(chunk) + b"\n\n")
    options = params.get("stream_options")
    if usage is not None and isinstance(options, Mapping) and options.get("include_usage"):
        frames.append(
            b"data: " + _ENCODER.encode({**base, "choices": [], "usage": usage}) + b"\n\n"
        )
    return frames
