"""AWS event-stream framing (``application/vnd.amazon.eventstream``) as a frame decoder.

botocore's :class:`~botocore.eventstream.EventStreamBuffer` parses the binary messages and
verifies both CRCs. Each message becomes one ``(event, data)`` pair for the stream mapper:

* ``("chunk", <model JSON>)`` for ``:event-type: chunk`` (the base64 ``bytes`` inside the
  payload JSON, decoded);
* ``("exception:<type>", <payload JSON>)`` for ``:message-type: exception`` (the mapper turns
  it into an SSE error event; the Portkey gateway fed these to the model mapper as chunks);
* ``("error:<code>", <JSON with message>)`` for ``:message-type: error``.

A corrupt frame (bad CRC or length) or a stream that stops inside a message is a
:class:`StreamFailure`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from portkey_mw.framing import Event
from portkey_mw.providers.base import StreamFailure

_ANY = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


class EventStreamDecoder:
    """The ``stream_decoder`` of Bedrock. botocore is imported on the first bytes only, so the
    decoder can be made for every request (the pipeline does) without the extra installed."""

    __slots__ = ("_buffer", "_pending")

    def __init__(self) -> None:
        self._buffer: Any = None
        self._pending = 0  # bytes fed and not yet consumed by a whole message

    def feed(self, chunk: bytes) -> list[Event]:
        if self._buffer is None:
            try:
                from botocore.eventstream import EventStreamBuffer
            except ImportError:  # pragma: no cover - the sign hook refuses such requests first
                raise StreamFailure("botocore is not installed (portkey_mw[bedrock])") from None
            self._buffer = EventStreamBuffer()
        from botocore.eventstream import ParserError

        self._buffer.add_data(chunk)
        self._pending += len(chunk)
        events: list[Event] = []
        try:
            for message in self._buffer:
                self._pending -= message.prelude.total_length
                event = _event(message.headers, message.payload)
                if event is not None:
                    events.append(event)
        except (ParserError, UnicodeDecodeError, ValueError) as exc:
            # CRC-valid frames can still carry headers that are not UTF-8: corrupt all the same.
            raise StreamFailure(
                f"The provider's event stream is corrupt ({type(exc).__name__})."
            ) from None
        return events

    def close(self) -> list[Event]:
        if self._pending:
            raise StreamFailure("The provider's event stream ended inside a message.")
        return []


def _event(headers: dict[str, Any], payload: bytes) -> Event | None:
    kind = headers.get(":message-type", "event")
    if kind == "exception":
        return f"exception:{headers.get(':exception-type', 'unknown')}", payload
    if kind == "error":
        message = {"message": str(headers.get(":error-message") or "unknown error")}
        return f"error:{headers.get(':error-code', 'unknown')}", _ENCODER.encode(message)
    if headers.get(":event-type") != "chunk":
        return None  # e.g. an initial-response event: nothing for the client
    try:
        body = _ANY.decode(payload)
        raw = body["bytes"] if isinstance(body, dict) else None
        if not isinstance(raw, str):
            raise StreamFailure("A Bedrock stream chunk has no 'bytes'.")
        return "chunk", base64.b64decode(raw, validate=True)
    except (msgspec.DecodeError, KeyError, binascii.Error):
        raise StreamFailure("A Bedrock stream chunk is not the documented JSON.") from None
