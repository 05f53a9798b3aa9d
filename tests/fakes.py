"""A scriptable loopback provider that misbehaves on cue, for routing and fault tests.

``script`` queues actions; each POST to any path takes the next one (the last repeats):
``{"status": 200}`` answers an OpenAI completion (or an error body for non-2xx),
``{"delay": s}`` waits first,
``{"stream": n, "stall_after": k}`` streams n chunks (stalling after k), ``{"headers": {...}}``
adds response headers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from typing import Any

COMPLETION = {
    "id": "cmpl-scripted",
    "object": "text_completion",
    "created": 1700000000,
    "model": "scripted",
    "choices": [{"text": " ok", "index": 0, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


class ScriptedProvider:
    def __init__(self, *actions: dict[str, Any]) -> None:
        self.actions = list(actions) or [{"status": 200}]
        self.seen: list[dict[str, Any]] = []

    def script(self, *actions: dict[str, Any]) -> None:
        self.actions = list(actions)
        self.seen.clear()

    def _next(self) -> dict[str, Any]:
        return self.actions.pop(0) if len(self.actions) > 1 else self.actions[0]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        action = self._next()
        self.seen.append(
            {
                "path": scope["path"],
                "headers": headers,
                "body": json.loads(body or b"null"),
                "action": action,
            }
        )
        if action.get("delay"):
            await asyncio.sleep(action["delay"])
        status = action.get("status", 200)
        extra = [(k.encode(), v.encode()) for k, v in action.get("headers", {}).items()]
        if "stream" in action and status == 200:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), *extra],
                }
            )
            for i in range(action["stream"]):
                if i == action.get("stall_after", -1):
                    await asyncio.sleep(3600)
                chunk = {
                    **COMPLETION,
                    "choices": [
                        {"text": f" t{i}", "index": 0, "logprobs": None, "finish_reason": None}
                    ],
                }
                await send(
                    {
                        "type": "http.response.body",
                        "more_body": True,
                        "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                    }
                )
                await asyncio.sleep(action.get("interval", 0))
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            return
        payload = (
            COMPLETION
            if 200 <= status < 300
            else {
                "error": {
                    "message": f"scripted {status}",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        )
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": data})


class ResettingServer:
    """A raw TCP server that resets the first ``resets`` connections after reading the
    request (RST, no answer), then answers a plain OpenAI completion."""

    def __init__(self, resets: int) -> None:
        self.resets = resets
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if self.resets > 0:
                    self.resets -= 1
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue
                body = json.dumps(COMPLETION).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"connection: close\r\ncontent-length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
