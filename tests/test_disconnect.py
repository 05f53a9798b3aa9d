"""DisconnectWatch: fast requests never pay for a watcher; slow ones are cancelled when their
client leaves, within the grace period; a disconnect after the response is ignored."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from portkey_mw.asgi import ClientDisconnected
from portkey_mw.disconnect import DisconnectWatch

FINAL = {"type": "http.response.body", "body": b"ok", "more_body": False}


class Client:
    """An ASGI client side: ``receive()`` blocks until ``leave()``, then says disconnect."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.receives = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.receives += 1
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def leave(self) -> None:
        self.gone.set()


async def test_a_fast_request_never_starts_a_watcher() -> None:
    watch, client = DisconnectWatch(grace=0.2, interval=0.01), Client()

    async def work(send: Any) -> int:
        await asyncio.sleep(0.05)
        await send(FINAL)
        return 200

    assert await watch.run(work, client.receive, client.send) == 200
    assert client.receives == 0
    assert client.sent == [FINAL]


async def test_a_slow_request_is_cancelled_soon_after_its_client_leaves() -> None:
    watch, client = DisconnectWatch(grace=0.05, interval=0.01), Client()
    cancelled = asyncio.Event()

    async def work(send: Any) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 200

    async def leave_early() -> None:
        await asyncio.sleep(0.01)  # inside the grace period: noticed when the watcher starts
        client.leave()

    loop = asyncio.get_running_loop()
    started = loop.time()
    leaving = asyncio.ensure_future(leave_early())
    with pytest.raises(ClientDisconnected):
        await watch.run(work, client.receive, client.send)
    await leaving
    assert cancelled.is_set()
    assert loop.time() - started < 1.0
    assert client.receives == 1
    # The task is usable afterwards: the cancellation was taken back.
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


async def test_a_disconnect_after_the_response_is_ignored() -> None:
    watch, client = DisconnectWatch(grace=0.01, interval=0.01), Client()

    async def work(send: Any) -> int:
        await asyncio.sleep(0.05)  # long enough for the watcher to start
        await send(FINAL)
        client.leave()  # servers report a disconnect once the response is complete
        await asyncio.sleep(0.02)  # clean-up after the response still runs to the end
        return 200

    assert await watch.run(work, client.receive, client.send) == 200
    assert client.receives == 1


async def test_a_cancellation_from_elsewhere_is_not_a_disconnect() -> None:
    watch, client = DisconnectWatch(grace=0.01, interval=0.01), Client()

    async def work(send: Any) -> int:
        await asyncio.sleep(30)
        return 200

    task = asyncio.ensure_future(watch.run(work, client.receive, client.send))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_sweep_stops_when_no_request_is_in_flight() -> None:
    watch, client = DisconnectWatch(grace=0.01, interval=0.01), Client()

    async def work(send: Any) -> int:
        await asyncio.sleep(0.03)
        return 200

    await watch.run(work, client.receive, client.send)
    await asyncio.sleep(0.05)
    state = watch._state(asyncio.get_running_loop())
    assert state.timer is None
    assert not state.pending


def test_one_watch_serves_several_event_loops() -> None:
    """An app object outlives a test's loop: each loop gets its own sweep."""
    watch = DisconnectWatch(grace=0.01, interval=0.01)

    async def one_slow_request_that_loses_its_client() -> None:
        client = Client()

        async def work(send: Any) -> int:
            await asyncio.sleep(30)
            return 200

        asyncio.get_running_loop().call_later(0.02, client.leave)
        with pytest.raises(ClientDisconnected):
            await watch.run(work, client.receive, client.send)

    for _ in range(3):
        asyncio.run(one_slow_request_that_loses_its_client())
    uvloop = pytest.importorskip("uvloop")  # uvicorn[standard] runs the middleware on it
    uvloop.run(one_slow_request_that_loses_its_client())
