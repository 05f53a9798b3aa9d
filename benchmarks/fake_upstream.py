"""A fast fake OpenAI-compatible completions provider for the benchmarks.

Raw asyncio protocol + httptools parser (+ uvloop when installed): every answer is a
pre-built byte string, so the fake costs a few microseconds per request and is never the
bottleneck of the system under test. The scenario is chosen by the path prefix:

- ``POST /instant/v1/completions``: an instant JSON completion (with ``usage``);
- ``POST /stream/v1/completions``: an SSE stream of ``--chunks`` (50) completion chunks, a
  final chunk with ``finish_reason`` and ``data: [DONE]``, chunked transfer encoding, written
  in one go (the proxy may read it in one or several reads);
- ``POST /delay/v1/completions``: the instant JSON answer after ``--delay-ms`` (50 ms), via a
  timer (no coroutine per request);
- ``GET /health``: ``ok``; ``GET /stats``: JSON ``{"connections": n, "requests": n}`` since
  start (a proxy that does not reuse its upstream connections shows here).

``python benchmarks/fake_upstream.py --port 9100`` (loopback only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

import httptools

_COMPLETION = {
    "id": "cmpl-bench-0001",
    "object": "text_completion",
    "created": 1700000000,
    "model": "gpt-3.5-turbo-instruct",
    "choices": [
        {
            "text": " Hello from the fake provider.",
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
}


def _json_response(body: bytes, status: bytes = b"200 OK") -> bytes:
    head = (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: application/json\r\n"
        b"x-request-id: req-bench\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def sse_events(chunks: int) -> list[bytes]:
    """The SSE events (each ``data: ...\\n\\n``) of a stream of ``chunks`` text chunks, in
    compact JSON as OpenAI sends its stream (``"finish_reason":null``, no spaces)."""
    base = {
        "id": "cmpl-bench-0002",
        "object": "text_completion",
        "created": 1700000000,
        "model": "gpt-3.5-turbo-instruct",
    }
    events: list[bytes] = []
    for i in range(chunks):
        choice = {"text": f" word{i}", "index": 0, "logprobs": None, "finish_reason": None}
        events.append(b"data: " + _compact({**base, "choices": [choice]}) + b"\n\n")
    final = {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}
    events.append(b"data: " + _compact({**base, "choices": [final]}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def _stream_response(chunks: int) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\n"
        b"content-type: text/event-stream\r\n"
        b"cache-control: no-cache\r\n"
        b"x-request-id: req-bench\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    parts = [head]
    for event in sse_events(chunks):
        parts.append(b"%x\r\n" % len(event) + event + b"\r\n")
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


COMPLETION_BODY = json.dumps(_COMPLETION).encode()
INSTANT = _json_response(COMPLETION_BODY)
HEALTH = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
NOT_FOUND = _json_response(
    b'{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}',
    b"404 Not Found",
)


_COUNTS = {"connections": 0, "requests": 0}


def _stats_response() -> bytes:
    body = json.dumps(_COUNTS).encode()
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class _FakeProtocol(asyncio.Protocol):
    __slots__ = ("_delay", "_loop", "_parser", "_stream", "_transport", "_url")

    def __init__(self, stream: bytes, delay: float) -> None:
        self._stream = stream
        self._delay = delay
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: Any = None
        self._url = b""

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        _COUNTS["connections"] += 1

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self._url = url

    def on_message_complete(self) -> None:
        url = self._url
        _COUNTS["requests"] += 1
        if url.startswith(b"/instant/"):
            self._transport.write(INSTANT)
        elif url.startswith(b"/stream/"):
            self._transport.write(self._stream)
        elif url.startswith(b"/delay/"):
            self._loop.call_later(self._delay, self._late, INSTANT)
        elif url == b"/health":
            self._transport.write(HEALTH)
        elif url == b"/stats":
            self._transport.write(_stats_response())
        else:
            self._transport.write(NOT_FOUND)
        if not self._parser.should_keep_alive():
            self._transport.close()

    def _late(self, payload: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(payload)


async def serve(host: str, port: int, chunks: int, delay_ms: float) -> None:
    stream = _stream_response(chunks)
    delay = delay_ms / 1000
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _FakeProtocol(stream, delay), host, port, backlog=2048, reuse_address=True
    )
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=50)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.host, args.port, args.chunks, args.delay_ms))


if __name__ == "__main__":
    main()
