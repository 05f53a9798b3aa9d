"""Incremental, I/O-free decoders that split a provider's byte stream into events.

Each decoder takes arbitrary byte chunks (boundaries anywhere, even inside a line ending)
and yields ``(event_name, data)`` pairs. ``close()`` flushes what is left when the stream
ends without a final separator.
"""

from __future__ import annotations

from typing import Protocol

from portkey_mw.errors import StreamFailure

Event = tuple[str | None, bytes]

# The most a decoder holds for one event while waiting for its end (a line, or an SSE
# event's data lines, each line counted with what Python keeps for it). Real events are
# kilobytes; a provider sending more without a separator is broken, and holding it would
# grow memory without bound.
MAX_EVENT_BYTES = 8 * 1024 * 1024
_LINE_OVERHEAD = 64


def _too_large() -> StreamFailure:
    return StreamFailure(
        f"The provider's stream sent an event larger than {MAX_EVENT_BYTES // (1024 * 1024)} MiB."
    )


class _Held:
    """The middle of a long line, kept as the reads that brought it and joined once when
    its end arrives: a line spread over N reads costs one pass, not N growing copies."""

    __slots__ = ("failure", "pieces", "size")

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0
        self.failure: StreamFailure | None = None  # raised by the next call

    def hold(self, pending: bytes, chunk: bytes) -> None:
        self.pieces.append(chunk)
        self.size += len(chunk)
        if self.size + len(pending) > MAX_EVENT_BYTES:
            raise _too_large()

    def join(self, pending: bytes, chunk: bytes) -> bytes:
        joined = b"".join([pending, *self.pieces, chunk])
        self.pieces = []
        self.size = 0
        return joined

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure


class FrameDecoder(Protocol):
    def feed(self, chunk: bytes) -> list[Event]: ...

    def close(self) -> list[Event]: ...


class SSEDecoder:
    """Server-sent events (WHATWG): LF, CRLF or CR line endings; multi-line ``data`` joined
    with LF; comments and ``id``/``retry`` fields ignored; an event ends at a blank line."""

    __slots__ = ("_buffer", "_data", "_data_bytes", "_event", "_held", "_pending_cr")

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[bytes] = []
        self._data_bytes = 0
        self._pending_cr = False
        self._held = _Held()

    def feed(self, chunk: bytes) -> list[Event]:
        if self._held.failure is not None:
            raise self._held.failure
        if not chunk:
            return []  # keeps a pending CR of a CRLF split across chunks
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across chunks
        self._pending_cr = chunk.endswith(b"\r")
        if b"\n" not in chunk and b"\r" not in chunk:
            self._held.hold(self._buffer, chunk)  # no line ends here: nothing to decode yet
            return []
        pending = self._buffer
        buffer = self._held.join(pending, chunk) if self._held.pieces else pending + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[Event] = []
        if not self._data and self._event is None:
            buffer = self._whole_events(buffer, events)
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        try:
            for line in lines:
                self._line(line, events)
            if len(self._buffer) > MAX_EVENT_BYTES:
                raise _too_large()
        except StreamFailure as failure:
            if not events:
                raise
            self._held.failure = failure  # the events before it go out first
        return events

    def takes_whole(self, chunk: bytes) -> bool:
        """True when nothing is pending and ``chunk`` is only whole events of one
        ``data: `` line each (what providers send): a relay may then use the chunk as it is,
        without feeding it, since decoding it would change nothing but the split."""
        if (
            self._buffer
            or self._data
            or self._event is not None
            or self._pending_cr
            or self._held.pieces
            or self._held.failure
        ):
            return False
        if not (chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")) or b"\r" in chunk:
            return False
        # E-1 separators "\n\ndata: " and the final "\n\n" hold 2E newlines: any other
        # newline (a second line, an empty event) makes the count differ.
        events = chunk.count(b"\n\ndata: ") + 1
        return chunk.count(b"\n") == 2 * events

    @staticmethod
    def _whole_events(buffer: bytes, events: list[Event]) -> bytes:
        """The fast path for what providers actually send: events of one ``data: `` line
        each, split at blank lines without a Python call per line. Stops at the first event
        of any other shape and returns the rest for the line parser."""
        parts = buffer.split(b"\n\n")
        last = len(parts) - 1
        for index in range(last):
            part = parts[index]
            if part.startswith(b"data: ") and b"\n" not in part:
                events.append((None, part[6:]))
            else:
                return b"\n\n".join(parts[index:])
        return parts[last]

    def close(self) -> list[Event]:
        self._held.check()
        if self._held.pieces:
            self._buffer = self._held.join(self._buffer, b"")
        events: list[Event] = []
        if self._buffer:
            self._line(self._buffer, events)
            self._buffer = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[Event]) -> None:
        if not line:
            if self._data:
                events.append((self._event, b"\n".join(self._data)))
            self._event = None
            self._data = []
            self._data_bytes = 0
            return
        if line.startswith(b":"):
            return
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._data_bytes += len(value) + _LINE_OVERHEAD
            if self._data_bytes > MAX_EVENT_BYTES:
                raise _too_large()
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")


class NDJSONDecoder:
    """Newline-delimited JSON (Cohere's stream): one event per non-empty line."""

    __slots__ = ("_buffer", "_held")

    def __init__(self) -> None:
        self._buffer = b""
        self._held = _Held()

    def feed(self, chunk: bytes) -> list[Event]:
        self._held.check()
        if b"\n" not in chunk:
            self._held.hold(self._buffer, chunk)
            return []
        lines = self._held.join(self._buffer, chunk).split(b"\n")
        self._buffer = lines.pop()
        events: list[Event] = [(None, line.strip()) for line in lines if line.strip()]
        if len(self._buffer) > MAX_EVENT_BYTES:
            if not events:
                raise _too_large()
            self._held.failure = _too_large()  # the events before it go out first
        return events

    def close(self) -> list[Event]:
        self._held.check()
        rest = self._held.join(self._buffer, b"").strip()
        self._buffer = b""
        return [(None, rest)] if rest else []
