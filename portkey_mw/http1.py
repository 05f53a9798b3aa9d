"""A lean HTTP/1.1 client for provider calls: asyncio protocols, llhttp (httptools) parsing,
one keep-alive pool per origin.

Measured in ``benchmarks/``, aiohttp's client was the largest single cost of a completion
(about as much CPU as our whole pipeline and log event together): most of it is generic
machinery a gateway never uses (cookies, redirects, auth, traces, multipart, proxies). This
client does one thing, ``POST`` bytes to a URL and hand back the answer as it arrives, and
keeps what production needs from a client:

- TLS with the system's trust store (``ssl.create_default_context``), SNI, ``http/1.1`` ALPN;
- addresses resolved by the loop (kept 5 minutes) and tried the Happy Eyeballs way
  (``aiohappyeyeballs``, as aiohttp does), so a broken IPv6 route costs 250 ms, not a timeout;
- a pool of keep-alive connections per origin, ``max_connections`` in use at most, idle ones
  closed after ``keepalive_s`` and when the server closes them; a connection is reused only
  after its answer was read to the end and the server did not ask to close it;
- no automatic re-send: a POST is not idempotent (aiohttp and Go's client do not re-send one
  either); a connection the server closed while idle is noticed and dropped before use;
- bodies framed by ``Content-Length``, chunked or the end of the connection; ``gzip`` and
  ``deflate`` decoded in bounded pieces (a small compressed body cannot inflate unbounded);
- a connect timeout and a read timeout (the longest wait for the next bytes), flow control
  for streams (reading pauses while the consumer is behind);
- failures raised as httpx's exception types, as the other clients do.

The URL is sent exactly as built (a ``%3A`` in a Bedrock model id stays encoded).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import aiohappyeyeballs
import httptools
import httpx

# A stream's unread bytes before reading from the socket pauses.
_HIGH_WATER = 256 * 1024
# Response head size limit (status line and headers): what servers accept for requests.
_MAX_HEAD_BYTES = 64 * 1024
# Most bytes one decompression step yields: the caller's size cap applies between steps.
_INFLATE_STEP = 256 * 1024
_DECODABLE = b"gzip, deflate"
# Characters kept as they are in a request target: RFC 3986's reserved and unreserved ones
# and ``%`` (escapes already made stay made).
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~-._"
# Resolved addresses are kept this long (aiohttp's default, which this client replaces).
_DNS_TTL_S = 300.0
# RFC 8305's recommended head start of one address family over the other.
_HAPPY_EYEBALLS_DELAY_S = 0.25


class ResponseHeaders(Mapping[str, str]):
    """A response's headers by lower-case name; lookups are case-insensitive. A repeated
    header reads as its first value, as aiohttp's did (a doubled ``retry-after`` still
    parses); every value stays in ``raw_headers``."""

    __slots__ = ("_by_name",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        by_name: dict[str, str] = {}
        for name, value in raw:
            key = name.decode("latin-1").lower()
            if key not in by_name:
                by_name[key] = value.decode("utf-8", "surrogateescape")
        self._by_name = by_name

    def __getitem__(self, name: str) -> str:
        return self._by_name[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._by_name.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._by_name!r})"


class _Origin:
    """A URL's parts, worked out once per URL text."""

    __slots__ = ("head", "host", "key", "port", "tls")

    def __init__(self, url: str, user_agent: bytes) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise httpx.UnsupportedProtocol(f"not an http(s) URL: {parts.scheme}://")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.key = (self.tls, self.host, self.port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Escapes stay as they are; anything that may not appear in a request line (spaces,
        # controls, non-ASCII) is percent-encoded.
        target = quote(target, safe=_TARGET_SAFE)
        netloc = parts.netloc.rpartition("@")[2]  # credentials in a URL are never sent
        # Everything before the request's own headers, one bytes object per URL.
        self.head = (
            f"POST {target} HTTP/1.1\r\n".encode("ascii")
            + b"host: "
            + netloc.encode("idna" if not netloc.isascii() else "ascii")
            + b"\r\nuser-agent: "
            + user_agent
            + b"\r\naccept-encoding: "
            + _DECODABLE
            + b"\r\n"
        )


class _Connection(asyncio.Protocol):
    """One connection, one exchange at a time; parser callbacks fill the current answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool_key: tuple[bool, str, int]) -> None:
        self.loop = loop
        self.pool_key = pool_key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False  # the connection is gone (or going): never reused
        self.in_use = True  # an exchange is running (bytes while idle are a broken server)
        self.failure: BaseException | None = None
        self.idle_since = 0.0
        self.last_read = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.paused = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.until_eof = False  # framed by the end of the connection
        self.body: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.transport.resume_reading()  # a consumer that left may have paused it
        self.paused = False

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.in_use:  # nobody asked: the connection cannot be trusted with the next
            self._fail(httpx.RemoteProtocolError("the provider sent bytes nobody asked for"))
            return
        self.last_read = self.loop.time()
        if not self.head_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the provider switched protocols"))
            return
        except httptools.HttpParserError as exc:
            # A callback's own verdict (already in ``failure``) comes first.
            self._fail(httpx.RemoteProtocolError(f"the provider's answer is not HTTP: {exc}"))
            return
        # Counted per read, not per header: httptools grows an unfinished header value by
        # itself, so an endless one must be stopped here.
        if not self.head_done and self.head_bytes > _MAX_HEAD_BYTES:
            self._fail(httpx.RemoteProtocolError("the provider's response head is too large"))

    def eof_received(self) -> bool:
        self.closed = True  # never hand this connection to another exchange
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_done and not self.complete and self.until_eof and exc is None:
            self.complete = True  # the end of the connection ends this body
        elif not self.complete and self.failure is None:
            self.failure = httpx.RemoteProtocolError(
                "the provider closed the connection before the answer was complete"
                if self.head_done or self.status
                else "the provider closed the connection without answering"
            )
        self._wake()

    # --- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request: the framing cannot be trusted
            self._reject("the provider sent more than one answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 102, 103 Early Hints)
            self.raw_headers = []
            self.head_bytes = 0
            return
        self.status = status
        framed = False
        size = 0
        for name, value in self.raw_headers:
            size += len(name) + len(value)
            lowered = name.lower()
            if lowered == b"content-length":
                framed = True
            elif lowered == b"transfer-encoding":
                # llhttp's rule: chunked framing only when chunked is the last coding.
                framed = value.rstrip().lower().endswith(b"chunked")
        if size > _MAX_HEAD_BYTES:  # a head that ended within the reads' count
            self._reject("the provider's response head is too large")
        self.until_eof = not framed and status not in (204, 304)
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done:
            return  # the end of an interim answer
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # --- used by the client -------------------------------------------------------------

    def _reject(self, message: str) -> None:
        """Stop the parser from inside a callback (httptools wraps what it raises)."""
        if self.failure is None:
            self.failure = httpx.RemoteProtocolError(message)
        raise self.failure

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

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


class _Inflater:
    """``gzip`` / ``deflate`` decoding in pieces of at most ``_INFLATE_STEP`` bytes."""

    def __init__(self, coding: str) -> None:
        # deflate is zlib-wrapped by the standard, raw by some servers: the header tells.
        self.coding = coding
        self.decoder: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if coding == "gzip" else None

    def pieces(self, data: bytes) -> Iterator[bytes]:
        if self.decoder is None:
            raw = not data or (data[0] & 0x0F) != 8  # no zlib header: raw deflate
            self.decoder = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        try:
            piece = self.decoder.decompress(data, _INFLATE_STEP)
            while piece:
                yield piece
                piece = self.decoder.decompress(self.decoder.unconsumed_tail, _INFLATE_STEP)
        except zlib.error as exc:
            raise httpx.DecodingError(f"the provider's {self.coding} body is corrupt") from exc


class Http1Response:
    """An answer whose head arrived; the body is read through ``read_declared`` or
    ``chunks``, then ``aclose`` gives the connection back (or closes it)."""

    __slots__ = ("_client", "_conn", "headers", "raw_headers", "status")

    def __init__(self, client: Http1Client, conn: _Connection) -> None:
        self._client = client
        self._conn: _Connection | None = conn
        self.status = conn.status
        self.raw_headers = conn.raw_headers
        self.headers: Mapping[str, str] = ResponseHeaders(conn.raw_headers)

    async def read_declared(self, cap: int) -> bytes | None:
        length = self.headers.get("content-length")
        if (
            length is None
            or not length.isdigit()
            or int(length) > cap
            or "content-encoding" in self.headers
        ):
            return None
        chunks = [piece async for piece in self._raw()]
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        coding = self.headers.get("content-encoding", "identity").strip().lower()
        if coding in ("", "identity"):
            async for piece in self._raw():
                yield piece
            return
        if coding not in ("gzip", "x-gzip", "deflate"):
            raise httpx.DecodingError(f"the provider's answer is in an unknown coding: {coding}")
        inflater = _Inflater("deflate" if coding == "deflate" else "gzip")
        async for piece in self._raw():
            for inflated in inflater.pieces(piece):
                yield inflated

    async def _raw(self) -> AsyncIterator[bytes]:
        conn = self._conn
        timeout = self._client.read_timeout
        # Checked after every suspension: once closed, the connection may carry another
        # exchange, whose bytes are not this answer's.
        while conn is not None and self._conn is conn:
            if conn.body:
                yield conn.take_body()
            elif conn.complete:
                return
            else:
                await conn.wait(timeout)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client.release(conn)

    def __del__(self) -> None:
        # A safety net, not the way: an answer dropped without ``aclose`` must not keep one
        # of ``max_connections`` forever.
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.close()
            self._client.release(conn)


Key = tuple[bool, str, int]


class Http1Client:
    """The pool: ``post`` takes an idle connection to the URL's origin or opens one."""

    def __init__(
        self,
        *,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        user_agent: str,
        keepalive_s: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._keepalive_s = keepalive_s
        self._user_agent = user_agent.encode("latin-1")
        self._max_connections = max_connections
        self._origins: dict[str, _Origin] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[Any]]] = {}
        self._tls = tls_context  # made on first use when not given (it reads the trust store)
        self._closed = False
        self._bind(None)

    def _bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Pool state belongs to one event loop; a client used from a new loop starts over
        (the old loop's connections cannot be used, nor closed, from this one)."""
        self._loop = loop
        self._slots = asyncio.Semaphore(self._max_connections)
        self._idle: dict[Key, list[_Connection]] = {}
        self._active: set[_Connection] = set()
        self._resolving: dict[tuple[str, int], asyncio.Future[list[Any]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Http1Response:
        origin = self._origin(url)
        request = _request(origin, headers, body)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        slots = self._slots
        await slots.acquire()
        conn: _Connection | None = None
        try:
            conn = self._idle_connection(origin.key, loop) or await self._connect(origin, loop)
            self._active.add(conn)
            conn.transport.write(request)  # type: ignore[union-attr]
            while not conn.head_done:
                await conn.wait(self.read_timeout)
        except BaseException as exc:
            if conn is not None:
                conn.close()
                self._active.discard(conn)
            slots.release()
            if isinstance(exc, OSError):
                raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
            raise
        return Http1Response(self, conn)

    def release(self, conn: _Connection) -> None:
        """Give a connection back after its exchange: to the idle pool if it can carry
        another, closed otherwise."""
        if conn.loop is not self._loop:
            conn.close()  # from a loop this client has left
            return
        self._active.discard(conn)
        self._slots.release()
        if conn.closed or not conn.complete or not conn.keep_alive or self._closed:
            conn.close()
            return
        conn._reset()
        conn.in_use = False
        conn.idle_since = conn.loop.time()
        self._idle.setdefault(conn.pool_key, []).append(conn)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(self._keepalive_s, self._sweep)

    def _idle_connection(self, key: Key, loop: asyncio.AbstractEventLoop) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_allowed = loop.time() - self._keepalive_s
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be stale
            if (
                not conn.closed
                and conn.idle_since >= oldest_allowed
                and not conn.transport.is_closing()  # type: ignore[union-attr]
            ):
                conn.in_use = True
                return conn
            conn.close()
        return None

    async def _connect(self, origin: _Origin, loop: asyncio.AbstractEventLoop) -> _Connection:
        tls = self._tls_context() if origin.tls else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                sock = await aiohappyeyeballs.start_connection(
                    await self._addresses(origin, loop),
                    happy_eyeballs_delay=_HAPPY_EYEBALLS_DELAY_S,
                    interleave=1,
                    loop=loop,
                )
                try:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(loop, origin.key),
                        sock=sock,
                        ssl=tls,
                        server_hostname=origin.host if tls is not None else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("connecting to the provider timed out") from exc
        # Refused, unreachable, unresolvable, TLS verification; uvloop may raise
        # RuntimeError where asyncio raises OSError (noted by aiohappyeyeballs).
        except (OSError, RuntimeError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return conn

    async def _addresses(self, origin: _Origin, loop: asyncio.AbstractEventLoop) -> list[Any]:
        """The origin's addresses: kept ``_DNS_TTL_S``, one lookup for concurrent misses
        (a burst of new connections at start-up must not be a burst of lookups)."""
        key = (origin.host, origin.port)
        known = self._dns.get(key)
        if known is not None and known[0] > time.monotonic():
            return known[1]
        pending = self._resolving.get(key)
        if pending is None:
            pending = loop.create_task(self._resolve(key, loop))
            self._resolving[key] = pending
            pending.add_done_callback(lambda _: self._resolving.pop(key, None))
        # Shielded: one waiter's timeout or cancellation must not cancel the others' lookup.
        return await asyncio.shield(pending)

    async def _resolve(self, key: tuple[str, int], loop: asyncio.AbstractEventLoop) -> list[Any]:
        infos = await loop.getaddrinfo(
            key[0], key[1], type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        if len(self._dns) >= 256:
            self._dns.clear()
        self._dns[key] = (time.monotonic() + _DNS_TTL_S, infos)
        return infos

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            context = ssl.create_default_context()
            context.set_alpn_protocols(["http/1.1"])
            self._tls = context
        return self._tls

    def _origin(self, url: str) -> _Origin:
        origin = self._origins.get(url)
        if origin is None:
            origin = _Origin(url, self._user_agent)
            if len(self._origins) >= 256:  # a gateway calls few URLs; keep the table small
                self._origins.clear()
            self._origins[url] = origin
        return origin

    def _sweep(self) -> None:
        """Close connections idle longer than ``keepalive_s``; re-arm while any are left."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        oldest_allowed = loop.time() - self._keepalive_s
        for key, idle in list(self._idle.items()):
            kept = [conn for conn in idle if not conn.closed and conn.idle_since >= oldest_allowed]
            for conn in idle:
                if conn not in kept:
                    conn.close()
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]
        if self._idle:
            self._sweeper = loop.call_later(self._keepalive_s, self._sweep)

    async def aclose(self) -> None:
        """Close every connection, idle or in use (an answer still being read then ends
        with an error, as with aiohttp's ``session.close()``)."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._active):
            conn.close()


# Request headers the client writes itself. A request's own ``host`` and ``user-agent``
# replace ours (Bedrock signs the host); its framing and codings never go out: the body is
# framed here and only the codings this client decodes may be offered.
_REPLACEABLE = frozenset({"host", "user-agent"})
_DROPPED = frozenset({"content-length", "transfer-encoding", "accept-encoding", "connection"})
# A header name is a token (RFC 9110); a value is visible ASCII, spaces and tabs.
_BAD_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(r"[^\t\x20-\x7e]")


def _request(origin: _Origin, headers: dict[str, str], body: bytes) -> bytes:
    """The request's bytes. Names and values are checked here too, as aiohttp did: a line
    break in a value would be a header (or a request) of its own."""
    if _BAD_NAME.search("".join(headers)) or _BAD_VALUE.search("".join(headers.values())):
        raise httpx.LocalProtocolError("a request header cannot be sent as it is")
    head = origin.head
    lines = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _REPLACEABLE:
            head = _replace(head, lowered.encode("ascii"), value)
        elif lowered not in _DROPPED:
            lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {len(body)}\r\n\r\n")
    return head + "".join(lines).encode("ascii") + body


def _replace(head: bytes, name: bytes, value: str) -> bytes:
    start = head.index(b"\r\n" + name + b": ") + 2
    end = head.index(b"\r\n", start)
    return head[:start] + name + b": " + value.encode("ascii") + head[end:]


__all__ = ["Http1Client", "Http1Response", "ResponseHeaders"]
