"""The cache on the request path: look up before a call, store successful answers after.

Statuses: ``HIT`` (answered from the cache, no upstream call), ``MISS`` (looked up, not
found, stored if it succeeds), ``REFRESH`` (``x-portkey-cache-force-refresh``: lookup skipped,
fresh answer stored), ``DISABLED`` (no ``cache`` in the config).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec

from portkey_mw.cache import CacheBackend, CachedAnswer, cache_key, decode_entry, encode_entry
from portkey_mw.config import CacheSettings
from portkey_mw.headers import RequestHeaders
from portkey_mw.providers.base import Target, UpstreamRequest
from portkey_mw.upstream import Answer

DEFAULT_MAX_AGE_S = 7 * 24 * 3600
_METADATA = msgspec.json.Encoder(order="sorted")


class Lookup(msgspec.Struct, gc=False):
    key: str
    ttl_s: int
    status: str


class ResponseCache:
    def __init__(self, backend: CacheBackend, max_entry_bytes: int) -> None:
        self.backend = backend
        self.max_entry_bytes = max_entry_bytes
        self._pending: set[asyncio.Task[None]] = set()

    async def lookup(
        self,
        settings: CacheSettings,
        target: Target,
        request: UpstreamRequest,
        headers: RequestHeaders,
    ) -> tuple[Lookup, Answer | None]:
        namespace = headers.raw.get("x-portkey-cache-namespace")
        if namespace is None:
            namespace = _METADATA.encode(headers.metadata).decode() if headers.metadata else ""
        key = cache_key(target.provider.name, request, namespace, target.api_key)
        ttl = settings.max_age or DEFAULT_MAX_AGE_S
        if headers.cache_force_refresh:
            return Lookup(key, ttl, "REFRESH"), None
        raw = await self.backend.get(key)
        entry = decode_entry(raw) if raw is not None else None
        if entry is None:
            return Lookup(key, ttl, "MISS"), None
        return Lookup(key, ttl, "HIT"), _answer_from(entry)

    async def keep(self, lookup: Lookup, answer: Answer) -> None:
        """Store ``answer`` under the lookup's key if it succeeds (streams: once finished)."""
        answer.cache_status = lookup.status
        if not answer.ok:
            return
        if answer.stream is not None:
            answer.stream = self._tee(lookup, answer, answer.stream)
        elif answer.body is not None and len(answer.body) <= self.max_entry_bytes:
            entry = CachedAnswer(
                answer.status,
                answer.headers,
                body=answer.body,
                usage=answer.usage,
                model=answer.model,
            )
            await self._store(lookup, entry)

    async def _tee(
        self, lookup: Lookup, answer: Answer, frames: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        kept: list[bytes] | None = []
        size = 0
        async for frame in frames:
            if kept is not None:
                size += len(frame)
                if size <= self.max_entry_bytes:
                    kept.append(frame)
                else:
                    kept = None  # too large to keep: relay it, do not store it
            yield frame
        # Reached only when the stream finished cleanly: a failure raises past this point.
        if kept is not None:
            entry = CachedAnswer(
                answer.status, answer.headers, frames=kept, usage=answer.usage, model=answer.model
            )
            await self._store(lookup, entry)

    async def _store(self, lookup: Lookup, entry: CachedAnswer) -> None:
        if self.backend.local:
            await self.backend.set(lookup.key, encode_entry(entry), lookup.ttl_s)
            return
        task = asyncio.ensure_future(
            self.backend.set(lookup.key, encode_entry(entry), lookup.ttl_s)
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def aclose(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.backend.aclose()


def _answer_from(entry: CachedAnswer) -> Answer:
    answer = Answer(
        entry.status,
        list(entry.headers),
        entry.body,
        usage=entry.usage,
        model=entry.model,
        cache_status="HIT",
    )
    if entry.frames is not None:
        answer.stream = _replay(entry.frames)
    return answer


async def _replay(frames: list[bytes]) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame
