"""The simple (exact) response cache: keys, stored entries, and two backends.

A key is the SHA-256 of the provider, the upstream URL, the exact request bytes sent, the
cache namespace (``x-portkey-cache-namespace``, else the metadata header) and a hash of the
provider key — so tenants with different credentials never share answers and no secret is
ever stored in clear. Only successful answers are stored; streams are stored whole (as the
OpenAI SSE frames the client got) and replayed frame for frame.

Backends: :class:`MemoryCache` (default; bounded by entries and bytes, TTL, LRU) and
:class:`RedisCache` (``redis://`` URL; shared by a fleet of replicas). A Redis that is down or
slow is a miss with a warning, never an error and never a stall beyond ``timeout``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
import structlog

from portkey_mw.providers.base import UpstreamRequest, Usage

LOGGER = structlog.get_logger("portkey_mw")
_KEY_ENCODER = msgspec.msgpack.Encoder()


class CachedAnswer(msgspec.Struct, array_like=True):
    """What a cache entry holds: a JSON body, or the SSE frames of a finished stream."""

    status: int
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes | None = None
    frames: list[bytes] | None = None
    usage: Usage | None = None
    model: str | None = None


_ENCODE = msgspec.msgpack.Encoder().encode
_DECODE = msgspec.msgpack.Decoder(CachedAnswer).decode


def encode_entry(entry: CachedAnswer) -> bytes:
    return _ENCODE(entry)


def decode_entry(raw: bytes) -> CachedAnswer | None:
    try:
        return _DECODE(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # a foreign or older entry: treat as a miss


def cache_key(provider: str, request: UpstreamRequest, namespace: str, api_key: str | None) -> str:
    key_hash = hashlib.sha256(api_key.encode()).hexdigest() if api_key else ""
    material = _KEY_ENCODER.encode([provider, request.url, request.body, namespace, key_hash])
    return "portkey_mw:v1:" + hashlib.sha256(material).hexdigest()


class CacheBackend(Protocol):
    # A local backend stores inline (it never waits); a remote one in the background.
    local: bool

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: int) -> None: ...

    async def aclose(self) -> None: ...


class MemoryCache:
    """An in-process LRU with per-entry expiry, bounded by entry count and total bytes."""

    local = True

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        item = self._entries.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        if len(value) > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (time.monotonic() + ttl_s, value)
        self._bytes += len(value)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self._bytes -= len(value)

    def __len__(self) -> int:
        return len(self._entries)

    async def aclose(self) -> None:
        self._entries.clear()
        self._bytes = 0


class RedisCache:
    """Redis shared by replicas. Failures are misses: bounded by ``timeout_s``, logged at
    most every ``warn_every_s``, and after one the backend rests for ``pause_s`` so a dead
    Redis costs requests nothing."""

    local = False

    def __init__(
        self, url: str, *, timeout_s: float = 0.1, pause_s: float = 1.0, warn_every_s: float = 10.0
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.pause_s = pause_s
        self.warn_every_s = warn_every_s
        import redis.asyncio as redis  # the optional extra, imported once at start-up

        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._resting_until = 0.0
        self._last_warning = -1e9

    async def get(self, key: str) -> bytes | None:
        if time.monotonic() < self._resting_until:
            return None
        try:
            async with asyncio.timeout(self.timeout_s):
                value = await self._client.get(key)
        except Exception as exc:  # noqa: BLE001 - any Redis failure is a miss, by design
            self._failed("get", exc)
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        if time.monotonic() < self._resting_until:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._client.set(key, value, ex=ttl_s)
        except Exception as exc:  # noqa: BLE001 - a failed store only costs a future miss
            self._failed("set", exc)

    def _failed(self, operation: str, exc: BaseException) -> None:
        now = time.monotonic()
        self._resting_until = now + self.pause_s
        if now - self._last_warning >= self.warn_every_s:
            self._last_warning = now
            LOGGER.warning(
                "cache_unavailable", backend="redis", operation=operation, error=type(exc).__name__
            )

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing to do
            return


def make_cache(url: str | None, max_entries: int, max_bytes: int, timeout_ms: int) -> CacheBackend:
    if url is None or url == "memory://":
        return MemoryCache(max_entries, max_bytes)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisCache(url, timeout_s=timeout_ms / 1000)
    raise ValueError(f"unsupported cache_url scheme: {url.split(':', 1)[0]!r}")
