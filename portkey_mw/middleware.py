"""``PortkeyMiddleware``: the ASGI gate in front of the pipeline.

Everything that is not an HTTP request to the configured path goes straight to the host
app: no allocation, no header parsing, no ``receive()``. Lifespan is passed through too; on
shutdown the middleware closes its own upstream client after the host's handlers ran.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import httpx
from asgiref.sync import markcoroutinefunction

from portkey_mw.asgi import send_error
from portkey_mw.errors import MethodNotAllowed
from portkey_mw.pipeline import Pipeline
from portkey_mw.settings import build_settings

_ALLOW = [(b"allow", b"POST")]


class PortkeyMiddleware:
    """Turn ``POST /v1/completions`` on any ASGI app into a Portkey-compatible gateway.

    ``PortkeyMiddleware(app, **settings)``: see :class:`portkey_mw.Settings` for the settings.
    ``http_client`` injects the upstream ``httpx.AsyncClient`` (the middleware then leaves
    closing it to you); ``tracer_provider`` an OpenTelemetry ``TracerProvider`` to use
    instead of the global one.
    """

    def __init__(
        self,
        app: Any,
        *,
        http_client: httpx.AsyncClient | None = None,
        tracer_provider: Any = None,
        **settings: Any,
    ) -> None:
        self.app = app
        self.settings = build_settings(settings)
        self.pipeline = Pipeline(self.settings, http_client, tracer_provider)
        self._path = self.settings.path

    @markcoroutinefunction
    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        # Not ``async def``: for pass-through requests the host app's own coroutine is handed
        # back as it is, so the middleware adds no coroutine frame of its own (measured in
        # benchmarks/). ``markcoroutinefunction`` keeps servers seeing an ASGI 3 app.
        scope_type = scope["type"]
        if scope_type == "http":
            # Only a mounted app (a root_path) needs the relative path worked out; a failed
            # ``str.endswith`` per request cost more than the rest of this check together.
            if scope["path"] == self._path or (
                scope.get("root_path") and self._relative(scope) == self._path
            ):
                if scope["method"] == "POST":
                    return self.pipeline.handle(scope, receive, send)
                return self._not_allowed(scope, send)
        elif scope_type == "lifespan":
            return self._lifespan(scope, receive, send)
        return self.app(scope, receive, send)  # type: ignore[no-any-return]

    async def _not_allowed(self, scope: Any, send: Any) -> None:
        error = MethodNotAllowed(
            f"Method {scope['method']} is not allowed on {self._path}; use POST."
        )
        await send_error(send, error, list(_ALLOW))

    @staticmethod
    def _relative(scope: Any) -> str:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        return path[len(root) :] if root and path.startswith(root) else path

    async def _lifespan(self, scope: Any, receive: Any, send: Any) -> None:
        """Pass lifespan to the host; close our client once its shutdown ran. A host that
        refuses lifespan (Django raises on it) gets ours, so the client still closes."""
        received: list[str] = []
        sent: list[str] = []

        async def host_receive() -> Any:
            message = await receive()
            received.append(message["type"])
            return message

        async def host_send(message: dict[str, Any]) -> None:
            sent.append(message["type"])
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.pipeline.aclose()
            await send(message)

        try:
            await self.app(scope, host_receive, host_send)
        except Exception:
            if sent:
                raise
            if "lifespan.startup" not in received:
                await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await self.pipeline.aclose()
            await send({"type": "lifespan.shutdown.complete"})

    async def aclose(self) -> None:
        """Close the upstream client the middleware created (for hosts without lifespan)."""
        await self.pipeline.aclose()
