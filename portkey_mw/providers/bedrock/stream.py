"""Bedrock stream chunks (already unframed by :mod:`.eventstream`) → OpenAI chunks.

Per choice: text chunks with ``finish_reason: null``; when the family's chunk carries a finish
reason, that chunk's text (if any), then a chunk with ``text: ""``, the mapped finish reason
and the invocation-metrics usage. With ``stream_options.include_usage`` a usage chunk with
empty choices follows. Exceptions inside the stream are :class:`StreamFailure`.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from portkey_mw.providers.base import (
    ResponseContext,
    StreamFailure,
    Usage,
    map_finish_reason,
    text_chunk,
    usage_chunk,
)
from portkey_mw.providers.bedrock.families import family_of, model_id
from portkey_mw.providers.bedrock.readers import metrics_usage

_ANY = msgspec.json.Decoder()


def _failure(event: str, data: bytes) -> StreamFailure:
    name = event.partition(":")[2]
    try:
        body = _ANY.decode(data)
    except msgspec.DecodeError:
        body = None
    message = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("Message")
    text = str(message) if message else data.decode("utf-8", "replace")[:500] or "no message"
    return StreamFailure(f"{name}: {text}" if name else text)


class BedrockStream:
    def __init__(self, ctx: ResponseContext) -> None:
        self.ctx = ctx
        self.family = family_of(model_id(ctx.params))
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._id = ctx.new_id()

    def on_event(self, event: str | None, data: bytes) -> Iterable[bytes]:
        if event is not None and event.startswith(("exception", "error")):
            raise _failure(event, data)
        if event != "chunk":
            return ()
        try:
            chunk = _ANY.decode(data)
        except msgspec.DecodeError:
            raise StreamFailure("the provider sent a stream chunk that is not JSON") from None
        if not isinstance(chunk, dict):
            return ()
        usage = metrics_usage(chunk)
        if usage is not None:
            self.usage = usage
        frames: list[bytes] = []
        for index, text, reason in self.family.read_chunk(chunk):
            if text:
                frames.append(text_chunk(self.ctx, self._id, text, index=index))
            if reason is not None:
                self.finish_reason = map_finish_reason(reason)
                frames.append(
                    text_chunk(
                        self.ctx,
                        self._id,
                        "",
                        index=index,
                        finish_reason=self.finish_reason,
                        usage=self.usage,
                    )
                )
        return frames

    def finish(self) -> Iterable[bytes]:
        if self.ctx.include_usage and self.usage is not None:
            return (usage_chunk(self.ctx, self._id, self.usage),)
        return ()
