"""An answer whose head arrived: its headers, and its body as it comes (decoded)."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx

from portkey_mw.http1.connection import Connection

# Most bytes one decompression step yields: the caller's size cap applies between steps.
INFLATE_STEP = 256 * 1024


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


class Inflater:
    """``gzip`` / ``deflate`` decoding in pieces of at most ``INFLATE_STEP`` bytes."""

    def __init__(self, coding: str) -> None:
        # deflate is zlib-wrapped by the standard, raw by some servers: the header tells.
        self.coding = coding
        self.decoder: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if coding == "gzip" else None

    def pieces(self, data: bytes) -> Iterator[bytes]:
        if self.decoder is None:
            raw = not data or (data[0] & 0x0F) != 8  # no zlib header: raw deflate
            self.decoder = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        try:
            piece = self.decoder.decompress(data, INFLATE_STEP)
            while piece:
                yield piece
                piece = self.decoder.decompress(self.decoder.unconsumed_tail, INFLATE_STEP)
        except zlib.error as exc:
            raise httpx.DecodingError(f"the provider's {self.coding} body is corrupt") from exc


class Http1Response:
    """The body is read through ``read_declared`` or ``chunks``; ``aclose`` then gives the
    connection back to its pool (or closes it)."""

    __slots__ = ("_conn", "_read_timeout", "headers", "raw_headers", "status")

    def __init__(self, conn: Connection, read_timeout: float) -> None:
        self._conn: Connection | None = conn
        self._read_timeout = read_timeout
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
        inflater = Inflater("deflate" if coding == "deflate" else "gzip")
        async for piece in self._raw():
            for inflated in inflater.pieces(piece):
                yield inflated

    async def _raw(self) -> AsyncIterator[bytes]:
        conn = self._conn
        # Checked after every suspension: once given back, the connection may carry another
        # exchange, whose bytes are not this answer's.
        while conn is not None and self._conn is conn:
            if conn.body:
                yield conn.take_body()
            elif conn.complete:
                return
            else:
                await conn.wait(self._read_timeout)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.pool.release(conn)

    def __del__(self) -> None:
        # A safety net, not the way: an answer dropped without ``aclose`` must not keep one
        # of ``max_connections`` forever. The collector may run in any thread, and after
        # the loop closed: the work is handed to the connection's loop, or dropped with it.
        conn = self._conn
        if conn is not None:
            self._conn = None
            if not conn.loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed meanwhile
                    conn.loop.call_soon_threadsafe(conn.pool.abandon, conn)
