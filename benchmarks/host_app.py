"""The system under test: a Starlette host app with ``PortkeyMiddleware`` under uvicorn
(httptools, uvloop, no access log).

``python benchmarks/host_app.py --port 9102 --upstream-host 127.0.0.1:9100 [--log json]``

- ``--log json``: every completion event rendered to a JSON line into /dev/null (the
  realistic cost of logging, without flooding the terminal); ``--log drop``: structlog drops
  events below WARNING (the floor of the logging cost).
- ``--client default|aiohttp|lean|httpx``: the upstream client (see ``clients.py``).
- ``--cprofile PATH``: profile the whole process with cProfile, stats written at shutdown.
- ``--gc-freeze``: the host freezes its start-up objects out of the garbage collector's full
  scans before serving (the tuning the README suggests to hosts).
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from portkey_mw import PortkeyMiddleware
from portkey_mw.logconfig import configure_logging


async def health(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def create_app(upstream_host: str, client_kind: str = "default") -> Starlette:
    """The host app, the way the README adds the middleware (``app.add_middleware``)."""
    from clients import make_client

    settings: dict[str, Any] = {"allowed_custom_hosts": [upstream_host]}
    if client_kind == "aiohttp":
        settings["upstream_client"] = "aiohttp"
    client = make_client(client_kind)
    if client is not None:
        settings["http_client"] = client
    return Starlette(
        routes=[Route("/health", health), Route("/", health)],
        # starlette's _MiddlewareFactory protocol rejects any class taking **kwargs under mypy
        middleware=[Middleware(PortkeyMiddleware, **settings)],  # type: ignore[arg-type]
    )


def configure(log: str) -> None:
    devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    level = logging.INFO if log == "json" else logging.WARNING
    configure_logging(json=True, level=level, stream=devnull)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-host", required=True, help="host:port of the fake provider")
    parser.add_argument("--log", choices=["json", "drop"], default="json")
    parser.add_argument("--client", default="default")
    parser.add_argument("--cprofile", default=None, metavar="PATH")
    parser.add_argument("--gc-freeze", action="store_true")
    args = parser.parse_args(argv)

    import uvicorn

    configure(args.log)
    app = create_app(args.upstream_host, args.client)
    profiler = None
    if args.cprofile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    if args.gc_freeze:
        import gc

        gc.collect()
        gc.freeze()
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            http="httptools",
            loop="uvloop",
            access_log=False,
            log_level="warning",
            lifespan="on",
            backlog=2048,
        )
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.cprofile)


if __name__ == "__main__":
    main()
