"""ASGI plumbing for intercepted requests: capped body reads and eager responses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from portkey_mw.errors import GatewayError, PayloadTooLarge

Scope = dict[str, Any]
Message = dict[str, Any]


class ClientDisconnected(Exception):
    """The client went away before we answered."""


async def read_body(receive: Any, cap: int, declared_length: str | None) -> bytes:
    """The whole request body, or a 413 as soon as it is known to exceed ``cap``."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > cap:
        raise PayloadTooLarge(f"The request body is larger than {cap} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > cap:
                raise PayloadTooLarge(f"The request body is larger than {cap} bytes.")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers]


async def send_bytes(
    send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Any, error: GatewayError, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-type", b"application/json"), *encode_headers(error.headers)]
    await send_bytes(send, error.status, headers, error.encode())
