"""The standalone gateway: the middleware over a minimal app that only answers
``GET /health`` (everything else is a JSON 404)."""

from __future__ import annotations

from typing import Any

import httpx

from portkey_mw.middleware import PortkeyMiddleware
from portkey_mw.settings import Settings, build_settings

_HEALTH = b'{"status":"ok"}'
_NOT_FOUND = (
    b'{"error":{"message":"Not found","type":"invalid_request_error","param":null,"code":null}}'
)


async def _minimal_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    found = scope["path"] == "/health" and scope["method"] in ("GET", "HEAD")
    body = _HEALTH if found else _NOT_FOUND
    await send(
        {
            "type": "http.response.start",
            "status": 200 if found else 404,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_gateway(
    settings: Settings | None = None, *, http_client: httpx.AsyncClient | None = None
) -> PortkeyMiddleware:
    """The standalone gateway as an ASGI app."""
    settings = settings or build_settings({})
    values = {name: getattr(settings, name) for name in settings.__struct_fields__}
    return PortkeyMiddleware(_minimal_app, http_client=http_client, **values)
