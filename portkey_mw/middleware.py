"""``PortkeyMiddleware``: the ASGI gate in front of the pipeline.

Everything that is not an HTTP request to the configured path goes straight to the host
app: no allocation, no header parsing, no ``receive()``. Lifespan is passed through too; on
shutdown the middleware closes its own upstream client after the host's handlers ran.
"""

from __future__ import annotations

from typing import Any

import httpx

from portkey_mw.asgi import send_error
from portkey_mw.errors import MethodNotAllowed
from portkey_mw.pipeline import Pipeline
from portkey_mw.settings import build_settings

_ALLOW = [(b"allow", b"POST")]


class PortkeyMiddleware:
    """Turn ``POST /v1/completions`` on any ASGI app into a Portkey-compatible gateway.

    ``PortkeyMiddleware(app, **settings)``: see :class:`portkey_mw.Settings` for the settings.
    ``http_client`` injects the upstream ``httpx.AsyncClient`` (the middleware then leaves
    closing it to you).
    """

    def __init__(
        self, app: Any, *, http_client: httpx.AsyncClient | None = None, **settings: Any
    ) -> None:
        self.app = app
        self.settings = build_settings(settings)
        self.pipeline = Pipeline(self.settings, http_client)
        self._path = self.settings.path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope_type = scope["type"]
        if scope_type == "http":
            path = scope["path"]
            if path == self._path or (
                path.endswith(self._path) and self._relative(scope) == self._path
            ):
                if scope["method"] == "POST":
                    await self.pipeline.handle(scope, receive, send)
                else:
                    error = MethodNotAllowed(
                        f"Method {scope['method']} is not allowed on {self._path}; use POST."
                    )
                    await send_error(send, error, list(_ALLOW))
                return
        elif scope_type == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _relative(scope: Any) -> str:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        return path[len(root) :] if root and path.startswith(root) else path

    def _lifespan_send(self, send: Any) -> Any:
        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.pipeline.aclose()
            await send(message)

        return wrapped

    async def aclose(self) -> None:
        """Close the upstream client the middleware created (for hosts without lifespan)."""
        await self.pipeline.aclose()
