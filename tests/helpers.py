"""Shared test helpers: an app with the middleware whose upstream is an httpx.MockTransport,
and real loopback servers (uvicorn in a thread) for integration tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import uvicorn

from portkey_mw import PortkeyMiddleware
from portkey_mw.providers.base import Provider, ResponseContext

JSON = msgspec.json.Decoder()


async def not_found_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A host app that answers 404 to everything (and completes lifespan)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].removeprefix("lifespan.")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"host 404"})


@dataclass
class Upstream:
    """A scripted MockTransport upstream that records what it was sent."""

    handler: Callable[[httpx.Request], httpx.Response]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.handler(request)

    def json(self, index: int = -1) -> Any:
        return JSON.decode(self.requests[index].content)


def gateway(
    upstream: Callable[[httpx.Request], httpx.Response], **settings: Any
) -> tuple[httpx.AsyncClient, Upstream]:
    """An httpx client talking (in process) to the middleware; upstream is a MockTransport."""
    recorder = upstream if isinstance(upstream, Upstream) else Upstream(upstream)
    upstream_client = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    settings.setdefault("retry_backoff_ms", 1)
    app = PortkeyMiddleware(not_found_app, http_client=upstream_client, **settings)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    return client, recorder


def sse_events(text: str) -> list[Any]:
    """The data payloads of an SSE body, JSON-decoded (``[DONE]`` kept as the string)."""
    out: list[Any] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(
            line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")
        )
        if data:
            out.append(data if data == "[DONE]" else JSON.decode(data))
    return out


def map_stream(provider: Provider, pieces: list[bytes], context: ResponseContext) -> list[Any]:
    """Decode and map a provider stream delivered in these pieces, as the relay does (which
    never passes an upstream ``[DONE]`` on), and return the SSE events the client would get."""
    decoder, mapper = provider.stream_decoder(), provider.stream_mapper(context)
    frames: list[bytes] = []
    events = [event for piece in pieces for event in decoder.feed(piece)]
    for event, data in [*events, *decoder.close()]:
        if data != b"[DONE]":
            frames.extend(mapper.on_event(event, data))
    frames.extend(mapper.finish())
    return sse_events(b"".join(frames).decode())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    config.setdefault("log_level", "warning")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
