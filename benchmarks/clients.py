"""Upstream clients to inject into ``PortkeyMiddleware(http_client=...)`` for comparisons.

- ``default``: nothing injected; the middleware's own upstream client (``portkey_mw.http1``).
- ``aiohttp``: nothing injected; the middleware's ``upstream_client="aiohttp"`` (aiohttp's
  pool directly, no httpx on the path; the default before ``http1``).
- ``lean``: an ``httpx.AsyncClient`` over :class:`LeanAiohttpTransport`, a minimal httpx
  transport on one ``aiohttp.ClientSession`` (no per-request ``ClientTimeout``, raw header
  list, ``iter_any``): what a leaner transport alone buys, httpx API unchanged.
- ``httpx``: a plain ``httpx.AsyncClient`` (httpx's own pool, 512 connections).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx

CLIENT_KINDS = ("default", "aiohttp", "lean", "httpx")


def _session(max_connections: int = 512) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=30),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600),
        auto_decompress=False,
        trust_env=False,
    )


class _AiohttpStream(httpx.AsyncByteStream):
    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientPayloadError as exc:
            raise httpx.ReadError(str(exc)) from exc

    async def aclose(self) -> None:
        self._response.release()


class LeanAiohttpTransport(httpx.AsyncBaseTransport):
    """A minimal httpx transport on one pooled aiohttp session (created on first use)."""

    def __init__(self, max_connections: int = 512) -> None:
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None:
            session = self._session = _session(self._max)
        try:
            response = await session.request(
                request.method,
                str(request.url),
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                data=request.content or None,
                allow_redirects=False,
            )
        except aiohttp.ClientError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_AiohttpStream(response),
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def make_client(kind: str) -> httpx.AsyncClient | None:
    """The client to inject for ``kind`` (``None``: let the middleware build its own)."""
    if kind in ("default", "aiohttp"):
        return None
    if kind == "lean":
        return httpx.AsyncClient(
            transport=LeanAiohttpTransport(),
            trust_env=False,
            timeout=httpx.Timeout(600, connect=10),
        )
    if kind == "httpx":
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        return httpx.AsyncClient(limits=limits, trust_env=False, timeout=600)
    raise ValueError(f"unknown client kind {kind!r}; choose one of {', '.join(CLIENT_KINDS)}")
