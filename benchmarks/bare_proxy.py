"""The limit: a bare forwarding proxy on the fastest Python client (aiohttp server + one
pooled ``aiohttp.ClientSession``, uvloop when installed).

``POST /<anything>`` is forwarded to ``--upstream`` + the same path with the body, the
``authorization`` and ``content-type`` headers; the answer's status, ``content-type`` and body
come back (streams relayed chunk by chunk as they are read). No parsing, no validation, no
logging: what any gateway has to do at the very least.

``python benchmarks/bare_proxy.py --port 9101 --upstream http://127.0.0.1:9100``

``--server uvicorn`` serves the same forwarding as a raw ASGI app under uvicorn (httptools,
uvloop), still on the aiohttp client: the limit for anything that runs inside an ASGI server,
so the gap between the two bare proxies is the server's share, not the middleware's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import aiohttp
from aiohttp import web

_FORWARDED = ("authorization", "content-type")


def make_app(upstream: str, max_connections: int = 512) -> web.Application:
    state: dict[str, aiohttp.ClientSession] = {}

    async def startup(_app: web.Application) -> None:
        state["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=600),
            auto_decompress=False,
        )

    async def cleanup(_app: web.Application) -> None:
        await state["session"].close()

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k in _FORWARDED if (v := request.headers.get(k)) is not None}
        async with state["session"].post(
            upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            content_type = answer.headers.get("content-type", "application/json")
            if content_type.startswith("text/event-stream"):
                response = web.StreamResponse(
                    status=answer.status, headers={"content-type": content_type}
                )
                await response.prepare(request)
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
            data = await answer.read()
            return web.Response(
                status=answer.status, body=data, headers={"content-type": content_type}
            )

    app = web.Application()
    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_get("/health", health)
    app.router.add_post("/{tail:.*}", forward)
    return app


def make_asgi_app(upstream: str, max_connections: int = 512) -> Any:
    """The same forwarding as a raw ASGI app (one aiohttp session, made on first use)."""
    sessions: list[aiohttp.ClientSession] = []

    def session() -> aiohttp.ClientSession:
        if not sessions:
            sessions.append(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=30),
                    timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=600),
                    auto_decompress=False,
                )
            )
        return sessions[0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    if sessions:
                        await sessions.pop().close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        wanted = {b"authorization", b"content-type"}
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k in wanted]
        url = upstream + scope["path"]
        async with session().post(url, data=b"".join(chunks), headers=headers) as answer:
            content_type = answer.headers.get("content-type", "application/json")
            start: dict[str, Any] = {"type": "http.response.start", "status": answer.status}
            if content_type.startswith("text/event-stream"):
                start["headers"] = [(b"content-type", content_type.encode())]
                await send(start)
                async for chunk in answer.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            data = await answer.read()
            length = (b"content-length", str(len(data)).encode())
            start["headers"] = [(b"content-type", content_type.encode()), length]
            await send(start)
            await send({"type": "http.response.body", "body": data})

    return app


async def serve(host: str, port: int, upstream: str) -> None:
    runner = web.AppRunner(make_app(upstream.rstrip("/")), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--server", choices=["aiohttp", "uvicorn"], default="aiohttp")
    args = parser.parse_args(argv)
    if args.server == "uvicorn":
        import uvicorn

        uvicorn.run(
            make_asgi_app(args.upstream.rstrip("/")),
            host=args.host,
            port=args.port,
            http="httptools",
            loop="uvloop",
            access_log=False,
            log_level="warning",
            lifespan="on",
            backlog=2048,
        )
        return
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.host, args.port, args.upstream))


if __name__ == "__main__":
    main()
