"""Everything that is not POST on the gateway path reaches the host app untouched."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgiref.testing import ApplicationCommunicator
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from portkey_mw import PortkeyMiddleware

BIG = b"x" * (3 * 1024 * 1024)


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, headers={"x-echo-len": str(len(body)), "set-cookie": "a=b"})


async def stream(request: Request) -> StreamingResponse:
    async def parts() -> Any:
        for i in range(50):
            yield f"part {i}\n".encode()

    return StreamingResponse(parts(), media_type="text/plain")


async def completions_get(request: Request) -> PlainTextResponse:
    return PlainTextResponse("host GET")


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    message = await websocket.receive_text()
    await websocket.send_text(f"echo {message}")
    await websocket.close()


def host() -> Starlette:
    return Starlette(
        routes=[
            Route("/echo", echo, methods=["POST", "PUT"]),
            Route("/stream", stream),
            Route("/v1/completions/extra", completions_get),
            WebSocketRoute("/ws", ws),
        ]
    )


def _exchange(app: Any) -> list[tuple[int, dict[str, str], bytes]]:
    with TestClient(app) as client:
        out = []
        for method, path, content in [
            ("POST", "/echo", BIG),
            ("PUT", "/echo?x=1", b"small"),
            ("GET", "/stream", None),
            ("GET", "/nope", None),
            ("GET", "/v1/completions/extra", None),
        ]:
            r = client.request(method, path, content=content)
            out.append((r.status_code, dict(r.headers), r.content))
        return out


def test_bytes_are_identical_with_and_without_the_middleware() -> None:
    """Statuses, headers (cookies included) and bodies, large and streamed, are unchanged."""
    plain = _exchange(host())
    wrapped = _exchange(PortkeyMiddleware(host()))
    assert plain == wrapped
    assert plain[0][2] == BIG
    assert wrapped[2][2].count(b"part") == 50


def test_websocket_passes_through() -> None:
    with TestClient(PortkeyMiddleware(host())) as client, client.websocket_connect("/ws") as sock:
        sock.send_text("hi")
        assert sock.receive_text() == "echo hi"


async def test_passthrough_never_calls_receive() -> None:
    """The gate decides from the scope alone: the host app gets receive() untouched."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Any:
        raise AssertionError("the middleware must not read the body of a pass-through request")

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/other", "headers": [], "root_path": ""}
    await PortkeyMiddleware(app)(scope, receive, send)
    assert seen == ["/other"]
    assert sent[0]["status"] == 204


def test_lifespan_of_the_host_still_runs_and_client_is_closed() -> None:
    events: list[str] = []
    app = FastAPI(
        on_startup=[lambda: events.append("start")], on_shutdown=[lambda: events.append("stop")]
    )
    middleware = PortkeyMiddleware(app)
    with TestClient(middleware) as client:
        assert client.get("/docs").status_code == 200
        _ = middleware.pipeline.router  # the upstream client exists now
        assert middleware.pipeline._client is not None
    assert events == ["start", "stop"]
    assert middleware.pipeline._client is None  # closed at shutdown


def test_add_middleware_on_fastapi_and_wrong_method_is_405() -> None:
    app = FastAPI()

    @app.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.add_middleware(PortkeyMiddleware)
    with TestClient(app) as client:
        assert client.get("/hello").json() == {"hello": "world"}
        response = client.get("/v1/completions")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert response.json()["error"]["type"] == "invalid_request_error"
        missing = client.post("/v1/completions", json={"model": "m", "prompt": "p"})
        assert missing.status_code == 400
        assert "x-portkey-provider" in missing.json()["error"]["message"]


def test_mounted_under_a_prefix_matches_relative_to_root_path() -> None:
    inner = Starlette(routes=[Route("/", lambda r: PlainTextResponse("inner"))])
    app = Starlette(routes=[Mount("/llm", app=PortkeyMiddleware(inner))])
    with TestClient(app) as client:
        assert client.get("/llm/").text == "inner"
        assert client.get("/llm/v1/completions").status_code == 405
        assert client.post("/llm/v1/completions", json={}).status_code == 400
        assert client.get("/v1/completions").status_code == 404


def test_custom_path() -> None:
    with TestClient(PortkeyMiddleware(host(), path="/ai/complete")) as client:
        assert client.get("/ai/complete").status_code == 405
        assert client.post("/v1/completions", json={}).status_code == 404


async def test_http_scope_through_asgiref_communicator_for_other_methods() -> None:
    app = PortkeyMiddleware(host())
    scope = {
        "type": "http",
        "method": "PUT",
        "path": "/echo",
        "headers": [],
        "query_string": b"",
        "root_path": "",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("t", 80),
    }
    comm = ApplicationCommunicator(app, scope)
    await comm.send_input({"type": "http.request", "body": b"abc"})
    start = await comm.receive_output()
    body = await comm.receive_output()
    assert start["status"] == 200
    assert body["body"] == b"abc"


@pytest.mark.parametrize("settings", [{"path": "no-slash"}, {"max_body_bytes": 0}, {"unknown": 1}])
def test_bad_settings_name_the_key(settings: dict[str, Any]) -> None:
    from portkey_mw import SettingsError

    with pytest.raises(SettingsError) as info:
        PortkeyMiddleware(host(), **settings)
    assert next(iter(settings)) in str(info.value)


def test_httpx_client_injection_is_not_closed_by_us() -> None:
    client = httpx.AsyncClient()
    middleware = PortkeyMiddleware(host(), http_client=client)
    with TestClient(middleware):
        pass
    assert not client.is_closed


def test_the_gate_is_a_plain_function_that_still_reads_as_the_middleware() -> None:
    """``PortkeyMiddleware(...)`` hands out a function (CPython's fast call path for every
    request the host sends through it) that keeps the middleware's surface."""
    import asyncio
    import types

    import uvicorn

    app = host()
    middleware = PortkeyMiddleware(app, path="/ai/complete")
    assert type(middleware) is types.FunctionType
    assert isinstance(middleware, PortkeyMiddleware)
    assert not isinstance(app, PortkeyMiddleware)
    assert middleware.app is app
    assert middleware.settings.path == "/ai/complete"
    assert middleware.pipeline is not None
    assert asyncio.iscoroutinefunction(middleware)
    assert "PortkeyMiddleware" in repr(middleware)
    # uvicorn tells ASGI 3 from ASGI 2 by the callable: the gate must not be wrapped.
    config = uvicorn.Config(middleware, lifespan="off", proxy_headers=False)
    config.load()
    assert config.loaded_app is middleware


def test_a_subclass_keeps_ordinary_instances_and_its_own_call() -> None:
    seen: list[str] = []

    class Counting(PortkeyMiddleware):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["type"])
            await super().__call__(scope, receive, send)

    middleware = Counting(host())
    assert type(middleware) is Counting
    with TestClient(middleware) as client:
        assert client.put("/echo", content=b"abc").content == b"abc"
        assert client.get("/v1/completions").status_code == 405
    assert seen.count("http") == 2


def test_subclasses_keep_their_own_constructor_signature_and_mixins() -> None:
    import abc
    import functools
    import inspect

    from starlette.middleware import Middleware

    inner = host()
    seen: list[str] = []

    class Flavoured(PortkeyMiddleware, abc.ABC):  # a mixin with its own metaclass
        def __init__(self, app: Any, flavor: str, **settings: Any) -> None:
            super().__init__(app, **settings)
            self.app = self._wrap(app, flavor)  # changed after the base's __init__

        def _wrap(self, app: Any, flavor: str) -> Any:
            async def flavoured(scope: Any, receive: Any, send: Any) -> None:
                seen.append(f"{flavor} {scope['type']}")
                await app(scope, receive, send)

            return flavoured

    assert "flavor" in inspect.signature(Flavoured).parameters
    assert "flavor" not in inspect.signature(PortkeyMiddleware).parameters
    app = Starlette(middleware=[Middleware(Flavoured, "mint")], routes=inner.routes)  # type: ignore[arg-type]
    with TestClient(app) as client:
        assert client.put("/echo", content=b"x").content == b"x"
    assert "mint http" in seen  # the subclass's own app, set after the base's __init__

    class Lookalike:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("unbound proxy")

    gate = PortkeyMiddleware(inner)
    assert not isinstance(Lookalike(), PortkeyMiddleware)  # asked, never raises
    assert not isinstance(functools.wraps(gate)(lambda *a: None), PortkeyMiddleware)
    assert isinstance(gate, PortkeyMiddleware)
