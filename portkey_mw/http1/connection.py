"""One upstream connection: an ``asyncio.Protocol`` whose llhttp (httptools) callbacks fill
the current exchange's answer, one exchange at a time."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools
import httpx

if TYPE_CHECKING:
    from portkey_mw.http1.pool import Pool

# A stream's unread bytes before reading from the socket pauses.
HIGH_WATER = 256 * 1024
# The most bytes a provider may send without a byte of body: a response head (status line
# and headers), chunk framing, trailers. What servers accept for a request head.
MAX_STALLED_BYTES = 64 * 1024


class Connection(asyncio.Protocol):
    """The protocol of one connection to an origin, owned by one pool."""

    def __init__(self, pool: Pool, key: tuple[bool, str, int]) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False  # the connection is gone (or going): never reused
        self.in_use = True  # an exchange is running (bytes while idle are a broken server)
        self.failure: BaseException | None = None
        self.idle_since = 0.0
        self.last_read = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.paused = False
        self.reset()

    def reset(self) -> None:
        """Ready for the next exchange (the connection goes back to its pool)."""
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.until_eof = False  # framed by the end of the connection
        self.body: list[bytes] = []
        self.buffered = 0
        self.received = 0  # body bytes of this exchange so far
        self.stalled = 0  # bytes read since the last body byte
        self.waiter: asyncio.Future[None] | None = None
        if self.paused and self.transport is not None:
            self.transport.resume_reading()  # a consumer that left may have paused it
        self.paused = False

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.in_use:  # nobody asked: the connection cannot be trusted with the next
            self.fail(httpx.RemoteProtocolError("the provider sent bytes nobody asked for"))
            return
        self.last_read = self.loop.time()
        received = self.received
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(httpx.RemoteProtocolError("the provider switched protocols"))
            return
        except httptools.HttpParserError as exc:
            # A callback's own verdict (already in ``failure``) comes first.
            self.fail(httpx.RemoteProtocolError(f"the provider's answer is not HTTP: {exc}"))
            return
        # Counted per read: httptools grows an unfinished header (or trailer, or chunk
        # extension) by itself, so an endless one must be stopped here.
        if self.received != received:
            self.stalled = 0
        else:
            self.stalled += len(data)
            if self.stalled > MAX_STALLED_BYTES and not self.complete:
                self.fail(httpx.RemoteProtocolError("the provider sent too much without a body"))

    def eof_received(self) -> bool:
        self.closed = True  # never hand this connection to another exchange
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.failure is None:
            if self.head_done and self.until_eof and exc is None:
                self.complete = True  # the provider's end of the connection ends this body
            else:
                self.failure = httpx.RemoteProtocolError(
                    "the provider closed the connection before the answer was complete"
                    if self.head_done
                    else "the provider closed the connection without answering"
                )
        self.wake()

    # --- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request: the framing cannot be trusted
            self._reject("the provider sent more than one answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # trailers after a chunked body are not kept
            self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 102, 103 Early Hints)
            self.raw_headers = []
            self.stalled = 0
            return
        if status < 100:
            self._reject(f"the provider answered with status {status}")
        framed = False
        size = 0
        for name, value in self.raw_headers:
            size += len(name) + len(value)
            lowered = name.lower()
            if lowered == b"content-length":
                framed = True
            elif lowered == b"transfer-encoding":
                # llhttp's rule: chunked framing only when chunked is the last coding.
                framed = value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        if size > MAX_STALLED_BYTES:  # a head that ended within one read
            self._reject("the provider's response head is too large")
        self.status = status
        self.until_eof = not framed and status not in (204, 304)
        self.head_done = True
        self.wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        self.received += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self.wake()

    def on_message_complete(self) -> None:
        if not self.head_done:
            return  # the end of an interim answer
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self.wake()

    # --- used by the pool and the response --------------------------------------------

    def _reject(self, message: str) -> None:
        """Stop the parser from inside a callback (httptools wraps what it raises)."""
        if self.failure is None:
            self.failure = httpx.RemoteProtocolError(message)
        raise self.failure

    def fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        self.close()
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Close at once. An exchange still running ends with an error now: not at the
        provider's leisure (a close waits for unsent bytes), and never as a complete answer
        (an answer framed by the connection's end would otherwise look whole)."""
        self.closed = True
        if not self.complete and self.failure is None:
            self.failure = httpx.ReadError("the connection was closed by the gateway")
        if self.transport is not None:
            if self.complete:
                self.transport.close()
            else:
                self.transport.abort()
        self.wake()

    async def wait(self, seconds: float) -> None:
        """Until something new arrived (head, body bytes, the end, a failure); a
        ``ReadTimeout`` once no byte at all arrived for ``seconds``."""
        if self.failure is not None:
            raise self.failure
        waiter = self.loop.create_future()
        self.waiter = waiter
        self.last_read = self.loop.time()
        self.timer = self.loop.call_later(seconds, self._check_silence, waiter, seconds)
        try:
            await waiter
        finally:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.waiter = None
        # A failure is raised by the next call, once what arrived before it was taken.

    def _check_silence(self, waiter: asyncio.Future[None], seconds: float) -> None:
        if waiter.done():
            return
        silent = self.loop.time() - self.last_read
        if silent < seconds:  # bytes came (a slow head, an interim answer): wait on
            self.timer = self.loop.call_later(
                seconds - silent, self._check_silence, waiter, seconds
            )
            return
        waiter.set_exception(httpx.ReadTimeout("the provider sent nothing in time"))

    def take_body(self) -> bytes:
        body = self.body
        data = body[0] if len(body) == 1 else b"".join(body)
        self.body = []
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data
