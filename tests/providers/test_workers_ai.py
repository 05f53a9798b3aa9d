"""Cloudflare Workers AI (/ai/run/{model}): request, response, SSE stream and error mapping,
with Cloudflare's native payloads in fixtures/workers_ai, and one loopback integration test."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from portkey_mw import PortkeyMiddleware
from portkey_mw.providers import REGISTRY
from portkey_mw.providers.base import ResponseContext, StreamFailure
from tests.helpers import gateway, map_stream, not_found_app, serve, sse_events

FIXTURES = Path(__file__).parent / "fixtures" / "workers_ai"
PROVIDER = REGISTRY["workers-ai"]
ACCOUNT = "0123456789abcdef0123456789abcdef"
HEADERS = {
    "x-portkey-provider": "workers-ai",
    "authorization": "Bearer cf-test",
    "x-portkey-workers-ai-account-id": ACCOUNT,
}
MODEL = "@cf/meta/llama-3.1-8b-instruct"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def ctx(**params: Any) -> ResponseContext:
    return ResponseContext(
        provider="workers-ai",
        params={"model": MODEL, **params},
        clock=lambda: 1_700_000_000,
        new_id=lambda: "cmpl-test",
    )


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=fixture("run.json"))


def run_stream(pieces: list[bytes], context: ResponseContext) -> list[Any]:
    return map_stream(PROVIDER, pieces, context)


# --- request mapping -------------------------------------------------------------------------


async def test_request_account_model_path_and_prompt_as_given() -> None:
    client, upstream = gateway(answer)
    body = {
        "model": MODEL,
        "prompt": "Say hello",
        "max_tokens": 16,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 20,
        "seed": 42,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.25,
        "repetition_penalty": 1.1,
        "raw": True,
        "stop": ["\n"],
        "user": "u-1",
    }
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    assert response.status_code == 200
    sent = upstream.requests[0]
    assert str(sent.url) == (
        f"https://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai/run/{MODEL}"
    )
    assert sent.headers["authorization"] == "Bearer cf-test"
    assert upstream.json() == {
        "prompt": "Say hello",
        "raw": True,
        "max_tokens": 16,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 20,
        "seed": 42,
        "repetition_penalty": 1.1,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.25,
    }


async def test_missing_account_is_a_clear_400_unless_a_custom_host_is_used() -> None:
    client, upstream = gateway(answer, allowed_custom_hosts=["127.0.0.1"])
    headers = {k: v for k, v in HEADERS.items() if k != "x-portkey-workers-ai-account-id"}
    body = {"model": MODEL, "prompt": "p"}
    response = await client.post("/v1/completions", json=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-portkey-workers-ai-account-id"
    assert upstream.requests == []
    custom = {**headers, "x-portkey-custom-host": "http://127.0.0.1:9/ai/run"}
    response = await client.post("/v1/completions", json=body, headers=custom)
    assert response.status_code == 200
    assert str(upstream.requests[0].url) == f"http://127.0.0.1:9/ai/run/{MODEL}"


@pytest.mark.parametrize("model", ["@cf/../../user/tokens", "@cf//x", "a/./b"])
async def test_unsafe_model_is_a_400(model: str) -> None:
    client, upstream = gateway(answer)
    response = await client.post(
        "/v1/completions", json={"model": model, "prompt": "p"}, headers=HEADERS
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"
    assert upstream.requests == []


async def test_model_characters_are_encoded_but_slashes_and_at_kept() -> None:
    client, upstream = gateway(answer)
    body = {"model": "@hf/the bloke/model?x#y", "prompt": "p"}
    await client.post("/v1/completions", json=body, headers=HEADERS)
    assert (
        upstream.requests[0].url.raw_path.decode().endswith("/ai/run/@hf/the%20bloke/model%3Fx%23y")
    )


async def test_n_fans_out_one_call_per_sample() -> None:
    client, upstream = gateway(answer)
    body = {"model": MODEL, "prompt": "p", "n": 2}
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    assert [c["index"] for c in response.json()["choices"]] == [0, 1]
    assert len(upstream.requests) == 2
    assert "n" not in upstream.json()


# --- response mapping ------------------------------------------------------------------------


def test_response_golden() -> None:
    assert PROVIDER.map_response is not None
    assert PROVIDER.map_response(json.loads(fixture("run.json")), ctx()) == {
        "id": "cmpl-test",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "provider": "workers-ai",
        "choices": [
            {
                "text": "Hello! How can I help?",
                "index": 0,
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }


def test_every_allowed_token_used_is_length() -> None:
    assert PROVIDER.map_response is not None
    mapped = PROVIDER.map_response(json.loads(fixture("run.json")), ctx(max_tokens=7))
    assert mapped["choices"][0]["finish_reason"] == "length"
    mapped = PROVIDER.map_response({"result": {"response": "x"}}, ctx(max_tokens=7))
    assert mapped["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in mapped


# --- stream mapping --------------------------------------------------------------------------


def test_stream_golden() -> None:
    events = run_stream([fixture("stream.sse")], ctx(stream=True))
    assert [(e["choices"][0]["text"], e["choices"][0]["finish_reason"]) for e in events] == [
        ("Hello", None),
        ("! How", None),
        (" can I help?", None),
        ("", "stop"),
    ]
    assert events[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    assert events[0] == {
        "id": "cmpl-test",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "provider": "workers-ai",
        "choices": [{"text": "Hello", "index": 0, "logprobs": None, "finish_reason": None}],
    }


def test_stream_split_anywhere_lf_and_crlf() -> None:
    payload = fixture("stream.sse")
    whole = run_stream([payload], ctx(stream=True))
    for framed in (payload, payload.replace(b"\n", b"\r\n")):
        for cut in range(1, len(framed)):
            assert run_stream([framed[:cut], framed[cut:]], ctx(stream=True)) == whole


def test_stream_error_event_raises() -> None:
    bad = b'data: {"response":"Hi"}\n\ndata: {"errors":[{"code":3040,"message":"Capacity"}]}\n\n'
    with pytest.raises(StreamFailure, match="Error 3040:Capacity"):
        run_stream([bad], ctx(stream=True))


async def test_stream_through_the_gateway() -> None:
    client, upstream = gateway(
        lambda r: httpx.Response(
            200, content=fixture("stream.sse"), headers={"content-type": "text/event-stream"}
        )
    )
    body = {
        "model": MODEL,
        "prompt": "Say hello",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    assert events[-2]["choices"] == []
    assert events[-2]["usage"]["total_tokens"] == 19
    assert upstream.json() == {"prompt": "Say hello", "stream": True}


# --- error mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        (
            "error_400.json",
            400,
            "workers-ai error: Error 5006:Bad input: Error: oneOf at '/' not met, 0 matches: "
            "required properties at '/' are 'prompt'",
        ),
        (
            "error_auth.json",
            401,
            "workers-ai error: Error 10000:Authentication error, Error 9109:Invalid access token",
        ),
    ],
)
async def test_errors(name: str, status: int, message: str) -> None:
    client, _ = gateway(lambda r: httpx.Response(status, content=fixture(name)))
    response = await client.post(
        "/v1/completions", json={"model": MODEL, "prompt": "p"}, headers=HEADERS
    )
    assert response.status_code == status
    assert response.json() == {
        "error": {"message": message, "type": None, "param": None, "code": None},
        "provider": "workers-ai",
    }


# --- integration: a loopback fake Workers AI and the openai SDK -------------------------------


def _fake_workers_ai(seen: list[dict[str, Any]]) -> Starlette:
    async def run(request: Request) -> Response:
        body = await request.json()
        seen.append({"path": request.url.path, "body": body})
        if not body.get("stream"):
            return JSONResponse(json.loads(fixture("run.json")))

        async def events() -> AsyncIterator[bytes]:
            for block in fixture("stream.sse").split(b"\n\n"):
                if block:
                    yield block + b"\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    path = f"/client/v4/accounts/{ACCOUNT}/ai/run/{{model:path}}"
    return Starlette(routes=[Route(path, run, methods=["POST"])])


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[openai.OpenAI, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    app = PortkeyMiddleware(not_found_app, allowed_custom_hosts=["127.0.0.1"])
    with serve(_fake_workers_ai(seen)) as fake, serve(app) as gw:
        yield (
            openai.OpenAI(
                base_url=f"{gw}/v1",
                api_key="cf-loopback",
                max_retries=0,
                default_headers={
                    "x-portkey-provider": "workers-ai",
                    "x-portkey-custom-host": f"{fake}/client/v4/accounts/{ACCOUNT}/ai/run",
                },
            ),
            seen,
        )


def test_openai_sdk_through_a_loopback_workers_ai(
    loopback: tuple[openai.OpenAI, list[dict[str, Any]]],
) -> None:
    client, seen = loopback
    result = client.completions.create(model=MODEL, prompt="Say hello", max_tokens=16)
    assert result.choices[0].text == "Hello! How can I help?"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.total_tokens == 19
    assert seen[-1] == {
        "path": f"/client/v4/accounts/{ACCOUNT}/ai/run/{MODEL}",
        "body": {"prompt": "Say hello", "max_tokens": 16},
    }
    chunks = list(client.completions.create(model=MODEL, prompt="Say hello", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "Hello! How can I help?"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 7
