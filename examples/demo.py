"""Offline demo: a FastAPI host app with the gateway, a local OpenAI-compatible stand-in
provider on loopback, one completion and one stream through the real ``openai`` SDK, and
the structured ``completion`` log events printed as JSON lines.

    python examples/demo.py
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import uvicorn
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_provider

from portkey_mw import PortkeyMiddleware
from portkey_mw.logconfig import configure_logging


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main() -> None:
    configure_logging(json=True)
    for sdk_logger in ("openai", "httpx2"):  # the openai SDK's own request lines
        logging.getLogger(sdk_logger).setLevel(logging.WARNING)
    host = FastAPI()

    @host.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "from the host app"}

    host.add_middleware(PortkeyMiddleware, allowed_custom_hosts=["127.0.0.1"])

    with _serve(fake_provider.create_app()) as provider_url, _serve(host) as gateway_url:
        client = openai.OpenAI(
            base_url=f"{gateway_url}/v1",
            api_key="sk-demo-not-a-real-key",
            default_headers={
                "x-portkey-provider": "openai",
                "x-portkey-custom-host": f"{provider_url}/v1",
                "x-portkey-trace-id": "demo-trace-1",
                "x-portkey-metadata": '{"_user": "demo-user", "env": "demo"}',
            },
        )
        print("--- completion through the gateway ---", flush=True)
        completion = client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Say hello", max_tokens=16
        )
        print(f"text: {completion.choices[0].text!r}  usage: {completion.usage}", flush=True)
        print("--- stream through the gateway ---", flush=True)
        stream = client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Count",
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces = [chunk.choices[0].text for chunk in stream if chunk.choices]
        print(f"streamed: {''.join(pieces)!r}", flush=True)
        time.sleep(0.1)  # let the last log event flush before the servers stop
    print('--- the JSON lines above with "event":"completion" are the gateway\'s log events ---')


if __name__ == "__main__":
    main()
