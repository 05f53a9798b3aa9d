"""AI21 Jurassic-2 (/{model}/complete): request, response, emulated stream and error mapping,
with AI21's native payloads in fixtures/ai21, and one loopback integration test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from portkey_mw import PortkeyMiddleware
from portkey_mw.providers import REGISTRY
from portkey_mw.providers.base import ResponseContext, StreamFailure, Target
from tests.helpers import gateway, not_found_app, serve, sse_events

FIXTURES = Path(__file__).parent / "fixtures" / "ai21"
PROVIDER = REGISTRY["ai21"]
HEADERS = {"x-portkey-provider": "ai21", "authorization": "Bearer ai21-test"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def ctx(**params: Any) -> ResponseContext:
    return ResponseContext(
        provider="ai21",
        params={"model": "j2-ultra", **params},
        clock=lambda: 1_700_000_000,
        new_id=lambda: "cmpl-test",
    )


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=fixture("complete.json"))


# --- request mapping -------------------------------------------------------------------------


async def test_request_camel_case_penalty_objects_and_model_in_path() -> None:
    client, upstream = gateway(answer)
    body = {
        "model": "j2-ultra",
        "prompt": "Say hello",
        "max_tokens": 16,
        "temperature": 0.5,
        "top_p": 0.9,
        "n": 2,
        "stop": "\n",
        "presence_penalty": 0.4,
        "frequency_penalty": 0.3,
        "minTokens": 2,
        "user": "u-1",
        "seed": 3,
        "top_k": 5,
    }
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    assert response.status_code == 200
    sent = upstream.requests[0]
    assert str(sent.url) == "https://api.ai21.com/studio/v1/j2-ultra/complete"
    assert sent.headers["authorization"] == "Bearer ai21-test"
    assert upstream.json() == {
        "prompt": "Say hello",
        "numResults": 2,
        "maxTokens": 16,
        "minTokens": 2,
        "temperature": 0.5,
        "topP": 0.9,
        "stopSequences": ["\n"],
        "presencePenalty": {"scale": 0.4},
        "frequencyPenalty": {"scale": 0.3},
    }
    assert len(upstream.requests) == 1  # numResults is native n


def test_native_penalty_objects_win_and_drops_are_reported() -> None:
    native = {"scale": 2, "applyToNumbers": False}
    request, dropped = PROVIDER.build_request(
        Target(PROVIDER, api_key="k"),
        {
            "model": "j2-mid",
            "prompt": "p",
            "frequency_penalty": 0.3,
            "frequencyPenalty": native,
            "countPenalty": {"scale": 0.5},
            "logit_bias": {"1": 2},
            "stream": True,
        },
    )
    sent = json.loads(request.body)
    assert sent["frequencyPenalty"] == native
    assert sent["countPenalty"] == {"scale": 0.5}
    assert "stream" not in sent
    assert "model" not in sent
    assert dropped == ["logit_bias"]


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("j2-grande/my model", "/j2-grande/my%20model/complete"),
        ("j2-light?x=1#y", "/j2-light%3Fx%3D1%23y/complete"),
    ],
)
def test_model_segments_are_url_encoded(model: str, path: str) -> None:
    request, _ = PROVIDER.build_request(Target(PROVIDER, api_key="k"), {"model": model})
    assert request.url == "https://api.ai21.com/studio/v1" + path


@pytest.mark.parametrize("model", ["../admin", "j2//x", "j2/./x", ""])
async def test_unsafe_model_is_a_400(model: str) -> None:
    client, upstream = gateway(answer)
    response = await client.post(
        "/v1/completions", json={"model": model, "prompt": "p"}, headers=HEADERS
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("param", "value"), [("presence_penalty", -0.5), ("frequency_penalty", -2), ("n", 17)]
)
async def test_out_of_range_is_a_400_naming_the_param(param: str, value: float) -> None:
    client, upstream = gateway(answer)
    response = await client.post(
        "/v1/completions", json={"model": "j2-ultra", "prompt": "p", param: value}, headers=HEADERS
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert upstream.requests == []


# --- response mapping ------------------------------------------------------------------------


def test_response_golden() -> None:
    assert PROVIDER.map_response is not None
    assert PROVIDER.map_response(json.loads(fixture("complete.json")), ctx(n=2)) == {
        "id": "7921a78e-aaaa-c9df-27e3-88e4831e3c3b",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": "j2-ultra",
        "provider": "ai21",
        "choices": [
            {"text": " Hello!", "index": 0, "logprobs": None, "finish_reason": "stop"},
            {"text": " Hi there", "index": 1, "logprobs": None, "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6},
    }


async def test_logprobs_is_top_k_return_and_comes_back_in_openai_shape() -> None:
    client, upstream = gateway(answer)
    body = {"model": "j2-ultra", "prompt": "Say hello", "logprobs": 2}
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    assert upstream.json()["topKReturn"] == 2
    assert response.json()["choices"][0]["logprobs"] == {
        "tokens": [" Hello", "!"],
        "token_logprobs": [-0.5, -0.25],
        "top_logprobs": [{" Hello": -0.5, " Hi": -1.5}, {"!": -0.25, "\n": -2.0}],
        "text_offset": [0, 6],
    }


# --- emulated stream -------------------------------------------------------------------------


async def test_stream_is_emulated_from_one_call_without_stream() -> None:
    client, upstream = gateway(answer)
    body = {
        "model": "j2-ultra",
        "prompt": "Say hello",
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert len(upstream.requests) == 1
    assert "stream" not in upstream.json()
    events = sse_events(response.text)
    assert [e["choices"][0]["text"] for e in events[:2]] == [" Hello!", " Hi there"]
    assert [e["choices"][0]["finish_reason"] for e in events[:2]] == ["stop", "length"]
    assert all(e["object"] == "text_completion" for e in events[:-1])
    assert events[2]["choices"] == []
    assert events[2]["usage"]["total_tokens"] == 6
    assert events[-1] == "[DONE]"


def test_mislabelled_answer_is_still_replayed_split_anywhere() -> None:
    payload = fixture("complete.json")
    context = ctx(stream=True)
    for cut in (1, 50, len(payload) // 2, len(payload) - 1):
        decoder, mapper = PROVIDER.stream_decoder(), PROVIDER.stream_mapper(context)
        frames: list[bytes] = []
        for piece in (payload[:cut], payload[cut:]):
            for event, data in decoder.feed(piece):
                frames.extend(mapper.on_event(event, data))
        for event, data in decoder.close():
            frames.extend(mapper.on_event(event, data))
        events = sse_events(b"".join(frames).decode())
        assert [e["choices"][0]["finish_reason"] for e in events] == ["stop", "length"]
        assert mapper.usage is not None
        assert mapper.usage.total_tokens == 6


def test_unreadable_mislabelled_answer_raises() -> None:
    mapper = PROVIDER.stream_mapper(ctx(stream=True))
    with pytest.raises(StreamFailure):
        list(mapper.on_event(None, b"not json"))


# --- error mapping ---------------------------------------------------------------------------


async def test_validation_detail_list_is_rendered_readably() -> None:
    client, _ = gateway(lambda r: httpx.Response(422, content=fixture("error_422.json")))
    response = await client.post(
        "/v1/completions", json={"model": "j2-ultra", "prompt": "p"}, headers=HEADERS
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["message"] == (
        "ai21 error: body.maxTokens: ensure this value is less than or equal to 8191; "
        "body.temperature: value is not a valid float"
    )
    assert error["type"] == "value_error.number.not_le"


async def test_string_detail() -> None:
    client, _ = gateway(lambda r: httpx.Response(429, content=fixture("error_429.json")))
    response = await client.post(
        "/v1/completions", json={"model": "j2-ultra", "prompt": "p"}, headers=HEADERS
    )
    assert response.status_code == 429
    assert response.json() == {
        "error": {
            "message": "ai21 error: Too Many Requests",
            "type": None,
            "param": None,
            "code": None,
        },
        "provider": "ai21",
    }


# --- integration: a loopback fake AI21 and the openai SDK -------------------------------------


def _fake_ai21(seen: list[dict[str, Any]]) -> Starlette:
    async def complete(request: Request) -> Response:
        seen.append({"path": request.url.path, "body": await request.json()})
        return JSONResponse(json.loads(fixture("complete.json")))

    return Starlette(routes=[Route("/studio/v1/{model:path}/complete", complete, methods=["POST"])])


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[openai.OpenAI, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    app = PortkeyMiddleware(not_found_app, allowed_custom_hosts=["127.0.0.1"])
    with serve(_fake_ai21(seen)) as fake, serve(app) as gw:
        yield (
            openai.OpenAI(
                base_url=f"{gw}/v1",
                api_key="ai21-loopback",
                max_retries=0,
                default_headers={
                    "x-portkey-provider": "ai21",
                    "x-portkey-custom-host": f"{fake}/studio/v1",
                },
            ),
            seen,
        )


def test_openai_sdk_through_a_loopback_ai21(
    loopback: tuple[openai.OpenAI, list[dict[str, Any]]],
) -> None:
    client, seen = loopback
    result = client.completions.create(model="j2-ultra", prompt="Say hello", n=2, max_tokens=8)
    assert [c.text for c in result.choices] == [" Hello!", " Hi there"]
    assert [c.finish_reason for c in result.choices] == ["stop", "length"]
    assert result.model == "j2-ultra"
    assert seen[-1] == {
        "path": "/studio/v1/j2-ultra/complete",
        "body": {"prompt": "Say hello", "numResults": 2, "maxTokens": 8},
    }
    chunks = list(client.completions.create(model="j2-ultra", prompt="Say hello", stream=True))
    assert chunks[0].choices[0].text == " Hello!"
    assert chunks[0].choices[0].finish_reason == "stop"
    assert "stream" not in seen[-1]["body"]
