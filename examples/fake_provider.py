"""A local stand-in for an OpenAI-compatible completions provider, for the demo, the tests
and the benchmarks. It speaks OpenAI's real wire format (JSON and SSE) on loopback.

Knobs, per request: ``model`` ``"error-429"`` / ``"error-500"`` answers with that error;
header ``x-fake-delay-ms`` waits before answering; ``x-fake-chunks`` sets how many stream
chunks to send (default 3). Every request is recorded in ``app.state.requests``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "cmpl-fake-0001",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }


async def completions(request: Request) -> Response:
    body = await request.json()
    request.app.state.requests.append({"headers": dict(request.headers), "body": body})
    delay = int(request.headers.get("x-fake-delay-ms", "0"))
    if delay:
        await asyncio.sleep(delay / 1000)
    model = str(body.get("model", ""))
    if model.startswith("error-"):
        status = int(model.removeprefix("error-"))
        error = {
            "message": f"fake provider error {status}",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        return JSONResponse(
            {"error": error}, status_code=status, headers={"x-request-id": "req-fake"}
        )
    if body.get("stream"):
        chunks = int(request.headers.get("x-fake-chunks", "3"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _stream(model, chunks, include_usage), media_type="text/event-stream"
        )
    return JSONResponse(
        _completion(model, " Hello from the fake provider."), headers={"x-request-id": "req-fake"}
    )


async def _stream(model: str, chunks: int, include_usage: bool) -> Any:
    base = {
        "id": "cmpl-fake-0002",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    for i in range(chunks):
        choice = {"text": f" word{i}", "index": 0, "logprobs": None, "finish_reason": None}
        yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"
    final = {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}
    yield f"data: {json.dumps({**base, 'choices': [final]})}\n\n"
    if include_usage:
        usage = {"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": 5 + chunks}
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def create_app() -> Starlette:
    app = Starlette(routes=[Route("/v1/completions", completions, methods=["POST"])])
    app.state.requests = []
    return app


app = create_app()
