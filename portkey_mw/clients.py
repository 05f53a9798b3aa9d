"""Upstream HTTP clients behind one small interface.

The middleware's own client is :class:`portkey_mw.http1.Http1Client` (or, with
``upstream_client="aiohttp"``, aiohttp's connection pool used directly): measured in
``benchmarks/``, the ``httpx.AsyncClient`` layer on top of a transport costs ~300 µs of CPU per
request (request building, cookie extraction, header models), and httpx's own pool collapses
under concurrency (encode/httpx#3215). An injected ``httpx.AsyncClient`` — the seam for tests
(``MockTransport``) and for users who bring their own — goes through :class:`HttpxUpstream`.

Both raise httpx's exception types, so failures map the same way whatever the client; the
URL is sent exactly as built (a ``%3A`` in a Bedrock model id stays encoded, so the signed
path is the sent path).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp
import httpx
from yarl import URL

from portkey_mw._version import __version__

# Sent unless the request forwards its own. A default session header, not
# ``skip_auto_headers``: skipping sends aiohttp down a slow path (a sorted header dict built
# and merged) on every request.
USER_AGENT = f"portkey_mw/{__version__}"


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]  # case-insensitive
    raw_headers: list[tuple[bytes, bytes]]

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def read_declared(self, cap: int) -> bytes | None:
        """The whole body when the response declares a length of at most ``cap`` (read in
        one call, no iteration); ``None`` otherwise (the caller then reads ``chunks()``)."""
        ...

    async def aclose(self) -> None: ...


class UpstreamClient(Protocol):
    async def post(self, url: str, headers: dict[str, str], body: bytes) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


# --- aiohttp, the default ---------------------------------------------------------------------


def _read_failure(exc: BaseException) -> httpx.HTTPError:
    """An aiohttp failure while reading a body, as the httpx error the pipeline maps."""
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(str(exc) or "read timed out")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(str(exc) or "the body was cut")
    return httpx.ReadError(str(exc) or type(exc).__name__)


class _AiohttpResponse:
    __slots__ = ("_response", "headers", "raw_headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self.raw_headers = list(response.raw_headers)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            raise _read_failure(exc) from exc

    async def read_declared(self, cap: int) -> bytes | None:
        length = self._response.content_length
        if length is None or length > cap or "content-encoding" in self._response.headers:
            return None  # unknown, too large, or decompressed (a small body may inflate)
        try:
            return await self._response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise _read_failure(exc) from exc

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # read to the end: the connection goes back to the pool
        else:
            self._response.close()  # abandoned mid-body (a disconnect): close it now


class AiohttpUpstream:
    """One aiohttp session, created lazily inside the running loop."""

    def __init__(
        self, *, max_connections: int, connect_timeout: float, read_timeout: float
    ) -> None:
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None
        # Parsed URLs by text: yarl's parse is a measurable part of a request; URLs repeat.
        self._urls: dict[str, URL] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=30.0, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"User-Agent": USER_AGENT},
                # One session serves every user: a cookie a provider set for one request
                # must never ride along on the next (and keeping none costs nothing).
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> UpstreamResponse:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = URL(url, encoded=True)
            if len(self._urls) >= 256:  # a gateway calls few URLs; keep the table small
                self._urls.clear()
            self._urls[url] = parsed
        try:
            response = await self._client().post(
                parsed, headers=headers, data=body, allow_redirects=False
            )
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timed out") from exc
        except aiohttp.ServerTimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
        except (aiohttp.ClientConnectorError, aiohttp.InvalidURL) as exc:
            raise httpx.ConnectError(str(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        return _AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


# --- an injected httpx.AsyncClient ------------------------------------------------------------


class _HttpxResponse:
    __slots__ = ("_response", "headers", "raw_headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers
        self.raw_headers = list(response.headers.raw)

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.aiter_bytes()

    async def read_declared(self, cap: int) -> bytes | None:
        return None  # httpx decodes content-encoding: the declared length is not the size

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxUpstream:
    """Adapter for a user-supplied ``httpx.AsyncClient`` (closing it is the user's job)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> UpstreamResponse:
        request = self.client.build_request("POST", url, headers=headers, content=body)
        if "cookie" not in headers:
            # The client's jar keeps what providers set; it must not reach other requests.
            request.headers.pop("cookie", None)
        return _HttpxResponse(await self.client.send(request, stream=True))

    async def aclose(self) -> None:
        return None


__all__ = ["AiohttpUpstream", "HttpxUpstream", "UpstreamClient", "UpstreamResponse"]
