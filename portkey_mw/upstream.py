"""The shared upstream client and one attempt against one target.

The client is an :class:`~portkey_mw.clients.UpstreamClient`: the lean HTTP/1.1 pool of
:mod:`portkey_mw.http1` by default, aiohttp's on request, an injected ``httpx.AsyncClient``
otherwise. An attempt sends one request and
turns whatever happens into an :class:`Answer`: a mapped JSON body, an open stream whose
first frames are already read, or an error in the OpenAI shape. Nothing here leaks an
address or a secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import httpx
import msgspec

from portkey_mw.clients import (
    USER_AGENT,
    AiohttpUpstream,
    HttpxUpstream,
    UpstreamClient,
    UpstreamResponse,
)
from portkey_mw.errors import (
    ErrorBody,
    GatewayError,
    UpstreamTimeout,
    UpstreamUnavailable,
    encode_json,
)
from portkey_mw.framing import FrameDecoder
from portkey_mw.http1 import Http1Client
from portkey_mw.providers.base import (
    Provider,
    ResponseContext,
    ResponseUnreadable,
    StreamFailure,
    StreamMapper,
    UpstreamRequest,
    Usage,
    usage_from,
)
from portkey_mw.settings import Settings

_ANY = msgspec.json.Decoder()
_MAX_ERROR_BYTES = 1024 * 1024

# Upstream response headers never relayed: hop-by-hop and framing headers (the server
# re-frames), cookies and identity of the provider's edge, and anything claiming to be ours.
_NOT_RELAYED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"content-encoding",
        b"content-type",
        b"set-cookie",
        b"set-cookie2",
        b"server",
        b"date",
        b"alt-svc",
        b"strict-transport-security",
        b"via",
    }
)


def make_client(settings: Settings, injected: httpx.AsyncClient | None) -> UpstreamClient:
    """The injected ``httpx.AsyncClient``, or the middleware's own pool (``http1`` by
    default, aiohttp's with ``upstream_client="aiohttp"``)."""
    if injected is not None:
        return HttpxUpstream(injected)
    if settings.upstream_client == "aiohttp":
        return AiohttpUpstream(
            max_connections=settings.max_connections,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
        )
    return Http1Client(
        max_connections=settings.max_connections,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        user_agent=USER_AGENT,
    )


def relayable(raw_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Upstream headers for the client, as ASGI header pairs (lower-case names)."""
    out = []
    for name, value in raw_headers:
        lowered = name.lower()
        if lowered not in _NOT_RELAYED and not lowered.startswith(b"x-portkey-"):
            out.append((lowered, value))
    return out


class Answer(msgspec.Struct):
    """What one attempt produced."""

    status: int
    # Tuples by default: shared, nothing allocated for what most answers never fill.
    headers: Sequence[tuple[bytes, bytes]] = ()
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None
    error_type: str | None = None
    usage: Usage | None = None
    model: str | None = None
    retry_after_s: float | None = None
    upstream_ms: float | None = None
    ttft_ms: float | None = None
    dropped: Sequence[str] = ()
    cache_status: str = "DISABLED"
    closer: Any = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    async def aclose(self) -> None:
        if self.closer is not None:
            closer, self.closer = self.closer, None
            await closer()


def gateway_answer(error: GatewayError) -> Answer:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers]
    return Answer(error.status, headers, error.encode(), error_type=error.error_type)


async def send_attempt(
    client: UpstreamClient,
    request: UpstreamRequest,
    provider: Provider,
    params: Mapping[str, Any],
    settings: Settings,
    timeout_ms: int | None,
) -> Answer:
    """Send one request; the deadline (``timeout_ms``) covers a whole JSON answer, or a
    stream up to its first frame. Every answer carries the time spent waiting upstream."""
    started = time.perf_counter()
    response: UpstreamResponse | None = None
    try:
        if timeout_ms:
            async with asyncio.timeout(timeout_ms / 1000):
                response = await client.post(request.url, request.headers, request.body)
                answer = await _read(response, provider, params, settings, request.stream)
        else:
            response = await client.post(request.url, request.headers, request.body)
            answer = await _read(response, provider, params, settings, request.stream)
    except BaseException as exc:  # noqa: BLE001 - closed, then mapped or re-raised by _failure
        if response is not None:
            await response.aclose()
        answer = gateway_answer(_failure(exc, provider.name, timeout_ms))
    answer.upstream_ms = (time.perf_counter() - started) * 1000
    return answer


def _failure(exc: BaseException, provider: str, timeout_ms: int | None) -> GatewayError:
    """What a failed exchange means for the client; anything unexpected is re-raised."""
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"Request exceeded the timeout sent in the request: {timeout_ms}ms")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamUnavailable(
            f"Provider '{provider}' did not answer in time.", status=504, code="upstream_timeout"
        )
    if isinstance(exc, httpx.ConnectError):
        return UpstreamUnavailable(
            f"Provider '{provider}' could not be reached.", code="upstream_unreachable"
        )
    if isinstance(exc, httpx.HTTPError):
        return UpstreamUnavailable(
            f"Provider '{provider}' broke the connection or answered with something that is "
            "not HTTP.",
            code="upstream_connection_error",
        )
    if isinstance(exc, GatewayError):
        return exc
    raise exc


async def _read(
    response: UpstreamResponse,
    provider: Provider,
    params: Mapping[str, Any],
    settings: Settings,
    stream: bool,
) -> Answer:
    headers = relayable(response.raw_headers)
    ctx = ResponseContext(provider.name, params, response.status, response.headers)
    if not 200 <= response.status < 300:
        raw = await _read_capped(response, _MAX_ERROR_BYTES)
        answer = _error_answer(raw, response, ctx, provider.map_error)
        answer.headers = headers
        return answer
    if stream:
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":  # a stream asked for may still come back as JSON
            mapper = provider.stream_mapper(ctx)
            return await _open_stream(response, headers, provider.stream_decoder(), mapper)
    raw = await _read_capped(response, settings.max_response_bytes)
    answer = _json_answer(raw, ctx, provider.map_response)
    answer.headers = headers
    return answer


async def _read_capped(response: UpstreamResponse, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        whole = await response.read_declared(cap)
        if whole is not None:
            return whole
        async for chunk in response.chunks():
            size += len(chunk)
            if size > cap:
                raise UpstreamUnavailable(
                    "The provider's answer is larger than this gateway accepts.",
                    code="upstream_too_large",
                )
            chunks.append(chunk)
    finally:
        await response.aclose()
    return b"".join(chunks)


def _error_answer(
    raw: bytes, response: UpstreamResponse, ctx: ResponseContext, map_error: Any
) -> Answer:
    try:
        decoded: Any = _ANY.decode(raw) if raw.strip() else ""
    except msgspec.DecodeError:
        decoded = raw.decode("utf-8", "replace")
    detail = map_error(decoded, ctx)
    detail.message = f"{ctx.provider} error: {detail.message}"
    body = encode_json(ErrorBody(detail, ctx.provider))
    return Answer(
        response.status,
        body=body,
        error_type=detail.type or "provider_error",
        retry_after_s=retry_after(response.headers),
    )


class _Summary(msgspec.Struct):
    """What the log needs from a relayed answer: msgspec checks the whole document is JSON
    but builds only these two fields (a long completion's text is never materialised)."""

    model: Any = None
    usage: Any = None


_SUMMARY = msgspec.json.Decoder(_Summary)


def _json_answer(raw: bytes, ctx: ResponseContext, map_response: Any) -> Answer:
    if map_response is None:  # relayed as it came
        try:
            summary = _SUMMARY.decode(raw)
        except msgspec.ValidationError:  # not an object (maybe not even JSON): check all of it
            try:
                _ANY.decode(raw)
            except msgspec.DecodeError:
                raise _not_json(ctx) from None
            return Answer(ctx.status, body=raw)
        except msgspec.DecodeError:
            raise _not_json(ctx) from None
        model = summary.model if isinstance(summary.model, str) else None
        return Answer(ctx.status, body=raw, usage=usage_from(summary.usage), model=model)
    try:
        decoded = _ANY.decode(raw)
    except msgspec.DecodeError:
        raise _not_json(ctx) from None
    try:
        mapped = map_response(decoded, ctx)
    except ResponseUnreadable as exc:
        raise UpstreamUnavailable(
            f"Provider '{ctx.provider}' sent an answer this gateway cannot read: {exc}.",
            code="upstream_unreadable",
        ) from None
    usage, model = _usage_of(mapped)
    return Answer(ctx.status, body=encode_json(mapped), usage=usage, model=model)


def _not_json(ctx: ResponseContext) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"Provider '{ctx.provider}' sent an answer that is not valid JSON.",
        code="upstream_unreadable",
    )


def _usage_of(body: Any) -> tuple[Usage | None, str | None]:
    if not isinstance(body, dict):
        return None, None
    model = body.get("model")
    return usage_from(body.get("usage")), model if isinstance(model, str) else None


async def _open_stream(
    response: UpstreamResponse,
    headers: list[tuple[bytes, bytes]],
    decoder: FrameDecoder,
    mapper: StreamMapper,
) -> Answer:
    """Read until the first frame to send exists (so retries and fallbacks still apply)."""
    chunks = response.chunks()
    first: list[bytes] = []
    ended = False
    reads = _Reads(decoder, mapper)
    try:
        while not first:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                ended = True
                first.extend(_map_events(decoder.close(), mapper))
                first.extend(mapper.finish())
                break
            first.extend(reads.frames(chunk))
    except StreamFailure as failure:
        await response.aclose()
        raise UpstreamUnavailable(failure.message, code="upstream_stream_error") from None
    except BaseException:
        await response.aclose()
        raise
    answer = Answer(response.status, headers)
    answer.stream = _frames(first, ended, chunks, reads, answer)
    answer.closer = response.aclose
    return answer


def _map_events(events: list[tuple[str | None, bytes]], mapper: StreamMapper) -> list[bytes]:
    out: list[bytes] = []
    for event, data in events:
        if data == b"[DONE]":
            continue
        try:
            out.extend(mapper.on_event(event, data))
        except StreamFailure as failure:
            failure.frames_before = out  # what the same read carried before the error
            raise
    return out


class _Reads:
    """One upstream read to the frames to send. A mapper that relays frames unchanged (see
    ``StreamMapper``) takes the leading part of a read of whole ``data:`` events as it came;
    only the rest (the events that carry a finish reason, usage or ``[DONE]``, usually the
    last ones) is split into events and mapped one by one."""

    __slots__ = ("decoder", "mapper", "takes_whole", "verbatim_prefix")

    def __init__(self, decoder: FrameDecoder, mapper: StreamMapper) -> None:
        self.decoder = decoder
        self.mapper = mapper
        self.verbatim_prefix: Callable[[bytes], int] | None = getattr(
            mapper, "verbatim_prefix", None
        )
        self.takes_whole: Callable[[bytes], bool] | None = getattr(decoder, "takes_whole", None)

    def frames(self, chunk: bytes) -> list[bytes]:
        prefix = 0
        if (
            self.verbatim_prefix is not None
            and self.takes_whole is not None
            and self.takes_whole(chunk)
        ):
            prefix = self.verbatim_prefix(chunk)
            if prefix == len(chunk):
                return [chunk]
        if not prefix:
            return _map_events(self.decoder.feed(chunk), self.mapper)
        head = chunk[:prefix]
        try:
            return [head, *_map_events(self.decoder.feed(chunk[prefix:]), self.mapper)]
        except StreamFailure as failure:
            failure.frames_before = [head, *failure.frames_before]
            raise


async def _frames(
    first: list[bytes],
    ended: bool,
    chunks: AsyncIterator[bytes],
    reads: _Reads,
    answer: Answer,
) -> AsyncIterator[bytes]:
    """The rest of the stream as OpenAI SSE frames — the frames of one upstream read joined, so
    the client gets one write per read, not one per event. Failures after the first byte
    raise :class:`StreamFailure`; the relay turns them into an SSE error event."""
    if first:
        yield first[0] if len(first) == 1 else b"".join(first)
    decoder, mapper = reads.decoder, reads.mapper
    if not ended:
        try:
            async for chunk in chunks:
                try:
                    frames = reads.frames(chunk)
                except StreamFailure as failure:
                    if failure.frames_before:
                        yield b"".join(failure.frames_before)
                    raise
                if frames:
                    yield frames[0] if len(frames) == 1 else b"".join(frames)
        except httpx.HTTPError:
            raise StreamFailure("The provider's stream was cut before it finished.") from None
        tail = [*_map_events(decoder.close(), mapper), *mapper.finish()]
        if tail:
            yield b"".join(tail)
    answer.usage = mapper.usage


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a provider asked us to wait (``retry-after-ms``, ``x-ms-retry-after-ms``,
    ``retry-after`` in seconds)."""
    for name, scale in (
        ("retry-after-ms", 0.001),
        ("x-ms-retry-after-ms", 0.001),
        ("retry-after", 1.0),
    ):
        value = headers.get(name)
        if value:
            try:
                seconds = float(value.strip()) * scale
            except ValueError:
                continue
            if seconds >= 0:
                return seconds
    return None
