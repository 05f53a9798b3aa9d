"""Loopback fakes for the fault catalogue, the fuzzers and the secrets check.

* :class:`FaultServer`: a raw TCP "provider" on 127.0.0.1. Each connection reads one HTTP
  request, then runs a *behaviour* (a function of the :class:`Connection`) that answers,
  resets, stalls, cuts or sends garbage on cue. Every wait is bounded by the server's stop
  event, so leaving the ``with`` block ends every connection at once.
* :class:`OpenAIFake`: an ASGI app (serve it with ``tests.helpers.serve``) that answers any
  POST with an OpenAI completion, or an SSE stream when the body says ``"stream": true``.
* :func:`fuzz_settings` and :func:`assert_error_shape`, shared by the fuzzers
  (``tests/test_fuzz*.py``). Quick mode (CI, the default) runs a few hundred examples in a
  few seconds, derandomized so a CI run is repeatable. Nightly mode:
  ``PORTKEY_MW_FUZZ_EXAMPLES=5000`` sets the examples per fuzz test and draws new random
  examples on every run.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings

Logs = list[MutableMapping[str, Any]]
"""What ``structlog.testing.capture_logs()`` collects."""

COMPLETION: dict[str, Any] = {
    "id": "cmpl-fake",
    "object": "text_completion",
    "created": 1700000000,
    "model": "fake-model",
    "choices": [{"text": " ok", "index": 0, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def sse_chunk(index: int, padding: int = 0, finish: str | None = None) -> bytes:
    """One OpenAI completion chunk as an SSE event (``padding`` extra characters of text)."""
    chunk = {
        **COMPLETION,
        "choices": [
            {
                "text": f" t{index}" + "x" * padding,
                "index": 0,
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
    }
    chunk.pop("usage")
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


@dataclass
class Connection:
    """One accepted upstream connection, as a behaviour sees it."""

    sock: socket.socket
    request: bytes
    stop: threading.Event
    server: FaultServer

    @property
    def body(self) -> Any:
        body = self.request.partition(b"\r\n\r\n")[2]
        try:
            return json.loads(body or b"null")
        except ValueError:
            return None

    def send(self, data: bytes) -> bool:
        """Send ``data``; False once the peer is gone (it closed or reset the connection)."""
        if self.peer_closed():
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            self.server.record_peer_close()
            return False
        return True

    def peer_closed(self) -> bool:
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if readable and self.sock.recv(1, socket.MSG_PEEK) == b"":
                self.server.record_peer_close()
                return True
        except OSError:
            self.server.record_peer_close()
            return True
        return False

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False when the server is stopping."""
        return not self.stop.wait(seconds)

    def reset(self) -> None:
        """Close with an RST (SO_LINGER 0) instead of a FIN."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


Behaviour = Callable[[Connection], None]


class FaultServer:
    """A raw HTTP/1.1 server on a free loopback port whose connections run ``behaviour``.

    ``with FaultServer(behaviour) as server:`` starts it; ``server.url`` is its base URL.
    ``connections`` counts accepted connections, ``open_connections`` those not yet ended,
    ``peer_closes`` the monotonic times at which a peer was seen to go away mid-answer.
    """

    def __init__(self, behaviour: Behaviour, *, max_connection_s: float = 30.0) -> None:
        self.behaviour = behaviour
        self.max_connection_s = max_connection_s
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.connections = 0
        self.open_connections = 0
        self.peer_closes: list[float] = []
        self.requests: list[bytes] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> FaultServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        self.sock.close()

    def record_peer_close(self) -> None:
        with self.lock:
            self.peer_closes.append(time.monotonic())

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.open_connections += 1
                self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(self.max_connection_s)
            request = _read_request(sock)
            if request is None:
                return
            with self.lock:
                self.requests.append(request)
            self.behaviour(Connection(sock, request, self.stop, self))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self.lock:
                self.open_connections -= 1


def _read_request(sock: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > 1 << 20:
            return None
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or b"0")
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


# --- behaviours -------------------------------------------------------------------------


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(
    body: bytes, status: int = 200, content_type: str = "application/json", **headers: str
) -> Behaviour:
    """A complete answer with a content-length."""

    def behaviour(conn: Connection) -> None:
        extra = {"content-type": content_type, "content-length": str(len(body)), **headers}
        conn.send(_head(status, {"connection": "close", **extra}) + body)

    return behaviour


def answer_chunked(body: bytes, piece: int = 4096) -> Behaviour:
    """A complete 200 JSON answer in chunked encoding: no length announced up front."""

    def behaviour(conn: Connection) -> None:
        head = _head(200, {"content-type": "application/json", "transfer-encoding": "chunked"})
        chunks = b"".join(_chunk(body[i : i + piece]) for i in range(0, len(body), piece))
        conn.send(head + chunks + b"0\r\n\r\n")

    return behaviour


def completion(status: int = 200) -> Behaviour:
    """An OpenAI completion (2xx) or an OpenAI error body (otherwise)."""
    if 200 <= status < 300:
        return answer(json.dumps(COMPLETION).encode(), status)
    error = {"error": {"message": f"fake {status}", "type": "server_error", "param": None}}
    return answer(json.dumps(error).encode(), status)


def reset_before_headers(conn: Connection) -> None:
    conn.reset()


def reset_mid_body(conn: Connection) -> None:
    """Promise a 4 KiB JSON answer, send part of it, then reset."""
    body = json.dumps({**COMPLETION, "pad": "x" * 4096}).encode()
    head = _head(200, {"content-type": "application/json", "content-length": str(len(body))})
    conn.send(head + body[:100])
    conn.wait(0.05)
    conn.reset()


def garbage(conn: Connection) -> None:
    conn.send(b"\x00\xff\xfe not an HTTP answer at all \x07\x1b[31m\r\n\r\n\x00" * 4)
    conn.wait(0.05)


def stall(seconds: float) -> Behaviour:
    """Read the request, then say nothing for ``seconds`` (bounded by the server's stop)."""

    def behaviour(conn: Connection) -> None:
        conn.wait(seconds)

    return behaviour


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def sse_stream(
    events: int,
    *,
    interval: float = 0.0,
    padding: int = 0,
    end: str = "done",
    stall_s: float = 30.0,
) -> Behaviour:
    """An SSE stream (chunked) of ``events`` completion chunks, ``interval`` s apart, then:
    ``done`` (``data: [DONE]`` and the last chunk), ``reset`` (RST, no last chunk) or
    ``stall`` (silence for ``stall_s``)."""

    def behaviour(conn: Connection) -> None:
        head = _head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"})
        if not conn.send(head):
            return
        for index in range(events):
            if not conn.send(_chunk(sse_chunk(index, padding))):
                return
            if interval and not conn.wait(interval):
                return
        if end == "reset":
            conn.wait(0.02)
            conn.reset()
        elif end == "stall":
            conn.wait(stall_s)
        else:
            conn.send(_chunk(sse_chunk(events, finish="stop")) + _chunk(b"data: [DONE]\n\n"))
            conn.send(b"0\r\n\r\n")

    return behaviour


# --- an ASGI OpenAI stand-in --------------------------------------------------------------


@dataclass
class OpenAIFake:
    """Answers any POST with an OpenAI completion, or ``chunks`` SSE chunks when the request
    body asks for a stream. Counts requests; never fails."""

    chunks: int = 3
    requests: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests += 1
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
        streaming = isinstance(params, dict) and params.get("stream") is True
        if streaming:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            for index in range(self.chunks):
                frame = sse_chunk(index, finish="stop" if index == self.chunks - 1 else None)
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            return
        data = json.dumps(COMPLETION).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})


# --- fuzz settings and checks ------------------------------------------------------------

QUICK_EXAMPLES = 150
EXAMPLES = int(os.environ.get("PORTKEY_MW_FUZZ_EXAMPLES", "0") or 0)
NIGHTLY = EXAMPLES > 0


def fuzz_settings(quick: int = QUICK_EXAMPLES, **extra: Any) -> settings:
    """Hypothesis settings for one fuzz test: ``quick`` examples in CI, ``EXAMPLES`` nightly."""
    return settings(
        max_examples=EXAMPLES if NIGHTLY else quick,
        deadline=None,
        derandomize=not NIGHTLY,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
        **extra,
    )


ERROR_KEYS = {"message", "type", "param", "code"}


def assert_error_shape(status: int, payload: Any, context: str = "") -> None:
    """A 4xx/5xx body is the OpenAI error shape: ``{"error": {message, type, param, code}}``."""
    assert isinstance(payload, dict), f"{status} body is not a JSON object: {payload!r} {context}"
    error = payload.get("error")
    assert isinstance(error, dict), f"{status} body has no 'error' object: {payload!r} {context}"
    missing = ERROR_KEYS - set(error)
    assert not missing, f"{status} error lacks {missing}: {payload!r} {context}"
    assert isinstance(error["message"], str), payload
    assert error["message"], payload
    for key in ("type", "param", "code"):
        assert error[key] is None or isinstance(error[key], str), (key, payload)
