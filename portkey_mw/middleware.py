"""``PortkeyMiddleware``: the ASGI gate in front of the pipeline.

Everything that is not an HTTP request to the configured path goes straight to the host
app: no allocation, no header parsing, no ``receive()``. Lifespan is passed through too; on
shutdown the middleware closes its own upstream client after the host's handlers ran.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Awaitable, Callable
from types import FunctionType
from typing import Any, cast

import httpx
from asgiref.sync import markcoroutinefunction

from portkey_mw.asgi import send_error
from portkey_mw.errors import MethodNotAllowed
from portkey_mw.pipeline import Pipeline
from portkey_mw.settings import build_settings

_ALLOW = [(b"allow", b"POST")]


class _GateType(abc.ABCMeta):  # ABCMeta: a subclass may still mix in abc.ABC
    """``isinstance(gate, PortkeyMiddleware)`` holds for the gate the class hands out."""

    def __instancecheck__(cls, instance: Any) -> bool:
        if type(instance) is FunctionType:
            owner = instance.__dict__.get("portkey_middleware")
            # The gate itself, not a copy of its attributes (functools.wraps copies them).
            built = getattr(owner, "__dict__", {}).get("_gate")
            return built is instance and super().__instancecheck__(owner)
        return super().__instancecheck__(instance)


class PortkeyMiddleware(metaclass=_GateType):
    """Turn ``POST /v1/completions`` on any ASGI app into a Portkey-compatible gateway.

    ``PortkeyMiddleware(app, **settings)``: see :class:`portkey_mw.Settings` for the settings.
    ``http_client`` injects the upstream ``httpx.AsyncClient`` (the middleware then leaves
    closing it to you); ``tracer_provider`` an OpenTelemetry ``TracerProvider`` to use
    instead of the global one.

    What ``PortkeyMiddleware(...)`` returns is the middleware's *gate*: a plain function
    carrying ``app``, ``settings``, ``pipeline`` and ``aclose()`` and passing
    ``isinstance(..., PortkeyMiddleware)``. They are read when the gate is built: setting
    them afterwards changes nothing (build a new middleware instead). A host calls a Python
    function through CPython's specialised call path, an instance's ``__call__`` through
    the generic one; measured in ``benchmarks/hotspots.py``, the difference is half of what
    the middleware adds to every request it does not intercept. A subclass gets ordinary
    instances.
    """

    def __new__(cls, *args: Any, **options: Any) -> PortkeyMiddleware:
        middleware = super().__new__(cls)
        if cls is not PortkeyMiddleware:
            return middleware  # a subclass may override __call__: it keeps its instances
        middleware.__init__(*args, **options)  # type: ignore[misc]
        return cast(PortkeyMiddleware, middleware._gate)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = None  # type: ignore[attr-defined]  # its own __init__'s, not ours

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
        return self._gate(scope, receive, send)

    @functools.cached_property
    def _gate(self) -> Callable[[Any, Any, Any], Awaitable[None]]:
        # Built once the instance is whole (a subclass's __init__ included, on its first
        # request). Everything the gate reads is a closure cell: no attribute lookups per
        # request.
        app, path, handle = self.app, self._path, self.pipeline.handle
        relative, not_allowed, lifespan = self._relative, self._not_allowed, self._lifespan

        def gate(scope: Any, receive: Any, send: Any) -> Awaitable[None]:
            # Not ``async def``: for pass-through requests the host app's own coroutine is
            # handed back as it is, so the middleware adds no coroutine frame of its own.
            scope_type = scope["type"]
            if scope_type == "http":
                # Only a mounted app (a root_path) needs the relative path worked out; a
                # failed ``str.endswith`` per request cost more than the rest of this check.
                if scope["path"] == path or (scope.get("root_path") and relative(scope) == path):
                    if scope["method"] == "POST":
                        return handle(scope, receive, send)
                    return not_allowed(scope, send)
            elif scope_type == "lifespan":
                return lifespan(scope, receive, send)
            return app(scope, receive, send)  # type: ignore[no-any-return]

        gate.__name__ = gate.__qualname__ = "PortkeyMiddleware"
        gate.__doc__ = PortkeyMiddleware.__doc__
        gate.__module__ = __name__
        shown: Any = gate
        shown.app, shown.settings, shown.pipeline = self.app, self.settings, self.pipeline
        shown.aclose = self.aclose
        shown.portkey_middleware = self
        # Servers (uvicorn) tell an ASGI 3 app by ``iscoroutinefunction``.
        return markcoroutinefunction(gate)

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


# help() and signature-reading tools show the keywords of __init__, not __new__'s
# pass-through ``(app, **options)``.
_init = inspect.signature(PortkeyMiddleware.__init__)
setattr(  # noqa: B010 - mypy knows no __signature__ on a class
    PortkeyMiddleware,
    "__signature__",
    _init.replace(
        parameters=list(_init.parameters.values())[1:], return_annotation=inspect.Signature.empty
    ),
)
