"""Cancel a request's work when its client leaves, without a watcher task per request.

Watching a client means a task blocked in the server's ``receive()`` until
``http.disconnect``: under uvicorn that costs ~50k instructions per request (measured in
``benchmarks/``), a sizeable part of a fast request's own cost, and it buys nothing for a
request that is over in a few milliseconds. So requests get a watcher only once they have
run for ``grace`` seconds: one shared sweep, armed only while requests are in flight, starts a
watcher for each request older than that. A client that leaves is noticed at once after
that point, and within ``grace + interval`` seconds before it (an LLM call that long is
still cancelled long before it would have finished).

Disconnects after the response is complete are ignored: servers report one then, and
cancelling there would break the clean-up that returns the upstream connection to the pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from portkey_mw.asgi import ClientDisconnected

Work = Callable[[Any], Coroutine[Any, Any, int]]


class _Guard:
    """One request: its task, how to hear from its client, and what happened so far."""

    __slots__ = ("_send", "complete", "left", "receive", "started", "state", "task", "watcher")

    def __init__(
        self, task: asyncio.Task[Any], receive: Any, send: Any, started: float, state: _LoopState
    ) -> None:
        self.task = task
        self.state = state
        self.receive = receive
        self._send = send
        self.started = started
        self.complete = False
        self.left = False
        self.watcher: asyncio.Task[None] | None = None

    def send(self, message: dict[str, Any]) -> Any:
        """The server's ``send``, noting the end of the response (not ``async``: no
        coroutine of its own on every message)."""
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True  # a disconnect while the last bytes go out changes nothing
        return self._send(message)

    def left_early(self) -> bool:
        """For a ``CancelledError`` in the request's task: whether it is the client leaving
        (the cancellation is then taken back, to be answered as a disconnect)."""
        if not self.left:
            return False
        self.task.uncancel()
        return True

    async def watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        if not self.complete:
            self.left = True
            self.task.cancel()


class _LoopState:
    """The requests of one event loop not yet watched, oldest first, and the sweep timer."""

    __slots__ = ("pending", "timer")

    def __init__(self) -> None:
        self.pending: dict[_Guard, None] = {}
        self.timer: asyncio.TimerHandle | None = None


class DisconnectWatch:
    """``await watch.run(work, receive, send)`` runs ``work(send)`` in the current task and
    cancels it (raising :class:`ClientDisconnected`) if the client leaves first;
    ``enter``/``leave`` do the same around code of the caller's own coroutine."""

    def __init__(self, grace: float = 0.1, interval: float = 0.05) -> None:
        self.grace = grace
        self.interval = interval
        # One state per event loop: an app object may serve several loops (tests do).
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop | None, _LoopState] = (None, _LoopState())

    async def run(self, work: Work, receive: Any, send: Any) -> int:
        guard = self.enter(receive, send)
        try:
            return await work(guard.send)
        except asyncio.CancelledError:
            if not guard.left_early():
                raise
            raise ClientDisconnected from None
        finally:
            self.leave(guard)

    def enter(self, receive: Any, send: Any) -> _Guard:
        """Watch the current task from now on (``run`` without its coroutine: for a caller
        that handles the cancellation itself). Pair with :meth:`leave`."""
        loop = asyncio.get_running_loop()
        state = self._state(loop)
        task = asyncio.current_task()
        assert task is not None
        guard = _Guard(task, receive, send, loop.time(), state)
        state.pending[guard] = None
        if state.timer is None:
            state.timer = loop.call_later(
                self.interval, self._sweep, loop, state, context=contextvars.Context()
            )
        return guard

    @staticmethod
    def leave(guard: _Guard) -> None:
        guard.state.pending.pop(guard, None)
        if guard.watcher is not None:
            guard.watcher.cancel()

    def _state(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        last_loop, state = self._last
        if last_loop is not loop:
            state = self._states.setdefault(loop, _LoopState())
            self._last = (loop, state)
        return state

    def _sweep(self, loop: asyncio.AbstractEventLoop, state: _LoopState) -> None:
        state.timer = None
        pending = state.pending
        cutoff = loop.time() - self.grace
        due = []
        for guard in pending:  # insertion order is start order: stop at the first young one
            if guard.started > cutoff:
                break
            due.append(guard)
        for guard in due:
            del pending[guard]
            guard.watcher = loop.create_task(guard.watch(), context=contextvars.Context())
        if pending:
            state.timer = loop.call_later(
                self.interval, self._sweep, loop, state, context=contextvars.Context()
            )


__all__ = ["DisconnectWatch"]
