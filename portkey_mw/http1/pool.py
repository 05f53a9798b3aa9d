"""The connection pool of one event loop: the slots (``max_connections`` in use at most),
idle keep-alive connections per origin, connections in use, pending DNS lookups."""

from __future__ import annotations

import asyncio
from typing import Any

from portkey_mw.http1.connection import Connection

Key = tuple[bool, str, int]


class Pool:
    """Everything here belongs to ``loop``: its futures, timers and transports cannot be
    used from another loop, so a client keeps one pool per loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, max_connections: int, keepalive_s: float
    ) -> None:
        self.loop = loop
        self.keepalive_s = keepalive_s
        self.slots = asyncio.Semaphore(max_connections)
        self.idle: dict[Key, list[Connection]] = {}
        self.active: set[Connection] = set()
        self.resolving: dict[tuple[str, int], asyncio.Task[list[Any]]] = {}
        self.sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    def idle_connection(self, key: Key) -> Connection | None:
        """The most recently used idle connection to ``key`` that can carry an exchange."""
        idle = self.idle.get(key)
        if not idle:
            return None
        oldest_allowed = self.loop.time() - self.keepalive_s
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be stale
            if _usable(conn, oldest_allowed):
                conn.in_use = True
                return conn
            conn.close()
        return None

    def release(self, conn: Connection) -> None:
        """A connection after its exchange: idle if it can carry another, closed otherwise;
        its slot goes back either way."""
        self.active.discard(conn)
        self.slots.release()
        if conn.closed or not conn.complete or not conn.keep_alive or self.closed:
            conn.close()
            return
        conn.reset()
        conn.in_use = False
        conn.idle_since = self.loop.time()
        self.idle.setdefault(conn.key, []).append(conn)
        if self.sweeper is None:
            self.sweeper = self.loop.call_later(self.keepalive_s, self.sweep)

    def abandon(self, conn: Connection) -> None:
        """An answer dropped without ``aclose``: its connection closes, its slot returns."""
        if conn in self.active:
            conn.close()
            self.release(conn)

    def sweep(self) -> None:
        """Close connections idle longer than ``keepalive_s``; re-arm while any are left."""
        self.sweeper = None
        oldest_allowed = self.loop.time() - self.keepalive_s
        for key, idle in list(self.idle.items()):
            kept = []
            for conn in idle:
                if _usable(conn, oldest_allowed):
                    kept.append(conn)
                else:
                    conn.close()
            if kept:
                self.idle[key] = kept
            else:
                del self.idle[key]
        if self.idle and not self.closed:
            self.sweeper = self.loop.call_later(self.keepalive_s, self.sweep)

    def close(self) -> None:
        """Close every connection, idle or in use (an answer still being read ends with an
        error, as with aiohttp's ``session.close()``)."""
        self.closed = True
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        for idle in self.idle.values():
            for conn in idle:
                conn.close()
        self.idle.clear()
        for conn in list(self.active):
            conn.close()


def _usable(conn: Connection, oldest_allowed: float) -> bool:
    """An idle connection that may carry another exchange: open on both sides and not idle
    for longer than the keep-alive allows."""
    return (
        not conn.closed
        and conn.idle_since >= oldest_allowed
        and conn.transport is not None
        and not conn.transport.is_closing()
    )
