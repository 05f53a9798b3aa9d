"""``Http1Client``: ``post`` takes an idle connection to the URL's origin (or opens one),
sends the request and returns once the answer's head arrived."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import weakref
from typing import Any

import aiohappyeyeballs
import httpx

from portkey_mw.http1.connection import Connection
from portkey_mw.http1.pool import Pool
from portkey_mw.http1.request import Origin, encode_request
from portkey_mw.http1.response import Http1Response

# Resolved addresses are kept this long (aiohttp's default, which this client replaces).
_DNS_TTL_S = 300.0
# RFC 8305's recommended head start of one address family over the other.
_HAPPY_EYEBALLS_DELAY_S = 0.25


class Http1Client:
    """The middleware's own upstream client (see the package's docstring)."""

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
        self._origins: dict[str, Origin] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[Any]]] = {}
        self._tls = tls_context  # made on first use when not given (it reads the trust store)
        # One pool per event loop (usually one loop in all); the last one used is at hand.
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = (
            weakref.WeakKeyDictionary()
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: Pool | None = None

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Http1Response:
        origin = self._origin(url)
        request = encode_request(origin, headers, body)
        loop = asyncio.get_running_loop()
        pool = self._pool if loop is self._loop else self._pool_of(loop)
        assert pool is not None
        slots = pool.slots
        await slots.acquire()
        conn: Connection | None = None
        try:
            conn = pool.idle_connection(origin.key) or await self._connect(origin, pool)
            pool.active.add(conn)
            conn.transport.write(request)  # type: ignore[union-attr]
            while not conn.head_done:
                await conn.wait(self.read_timeout)
        except BaseException as exc:
            if conn is not None:
                conn.close()
                pool.active.discard(conn)
            slots.release()
            if isinstance(exc, OSError):
                raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
            raise
        return Http1Response(conn, self.read_timeout)

    def _pool_of(self, loop: asyncio.AbstractEventLoop) -> Pool:
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = Pool(loop, self._max_connections, self._keepalive_s)
        self._loop, self._pool = loop, pool
        return pool

    async def _connect(self, origin: Origin, pool: Pool) -> Connection:
        loop = pool.loop
        tls = self._tls_context() if origin.tls else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                sock = await aiohappyeyeballs.start_connection(
                    await self._addresses(origin, pool),
                    happy_eyeballs_delay=_HAPPY_EYEBALLS_DELAY_S,
                    interleave=1,
                    loop=loop,
                )
                try:
                    _, conn = await loop.create_connection(
                        lambda: Connection(pool, origin.key),
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
        # RuntimeError where asyncio raises OSError (noted by aiohappyeyeballs); the
        # resolver's idna codec raises UnicodeError.
        except (OSError, RuntimeError, UnicodeError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return conn

    async def _addresses(self, origin: Origin, pool: Pool) -> list[Any]:
        """The origin's addresses: kept ``_DNS_TTL_S``, one lookup for concurrent misses
        (a burst of new connections at start-up must not be a burst of lookups)."""
        key = (origin.host, origin.port)
        known = self._dns.get(key)
        if known is not None and known[0] > time.monotonic():
            return known[1]
        pending = pool.resolving.get(key)
        if pending is None:
            pending = pool.loop.create_task(self._resolve(key, pool.loop))
            pool.resolving[key] = pending

            def done(task: asyncio.Task[list[Any]]) -> None:
                pool.resolving.pop(key, None)
                if not task.cancelled():
                    task.exception()  # retrieved: every waiter may have given up already

            pending.add_done_callback(done)
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

    def _origin(self, url: str) -> Origin:
        origin = self._origins.get(url)
        if origin is None:
            origin = Origin(url, self._user_agent)
            if len(self._origins) >= 256:  # a gateway calls few URLs; keep the table small
                self._origins.clear()
            self._origins[url] = origin
        return origin

    async def aclose(self) -> None:
        """Close the connections of the running loop's pool, idle or in use."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - always awaited inside a loop
            return
        pool = self._pools.pop(loop, None)
        if pool is not None:
            pool.close()
        if loop is self._loop:
            self._loop, self._pool = None, None
