"""A host app that ships the gateway's events as JSON lines to stdout and a rotating file.

    python examples/log_shipping/host_app.py --log-file /tmp/portkey-mw/events.log --port 8000

Point a collector at either (vector.toml and fluent-bit.conf beside this file). The host's
own log lines carry the request's trace_id too, since the middleware binds it into
structlog's contextvars while the request runs.
"""

from __future__ import annotations

import argparse

import structlog
import uvicorn
from fastapi import FastAPI

from portkey_mw import PortkeyMiddleware
from portkey_mw.logconfig import configure_logging


def create_app() -> FastAPI:
    app = FastAPI()
    log = structlog.get_logger("host")

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        log.info("hello_called")
        return {"hello": "world"}

    app.add_middleware(PortkeyMiddleware, allowed_custom_hosts=["127.0.0.1"])
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-file", required=True)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    configure_logging(json=True, file=args.log_file, file_max_bytes=5 * 1024 * 1024)
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
