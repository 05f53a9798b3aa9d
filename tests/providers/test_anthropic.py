"""Anthropic (legacy /v1/complete): request, response, SSE stream (LF and CRLF, split anywhere)
and error mapping, with Anthropic's native payloads in fixtures/anthropic, and one loopback
integration test through the openai SDK."""

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
from portkey_mw.providers.anthropic import wrap_prompt
from portkey_mw.providers.base import ResponseContext, StreamFailure, Target
from tests.helpers import gateway, map_stream, not_found_app, serve, sse_events

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
PROVIDER = REGISTRY["anthropic"]
HEADERS = {"x-portkey-provider": "anthropic", "authorization": "Bearer sk-ant-test"}
BODY = {"model": "claude-2.1", "prompt": "Say hello", "max_tokens": 16}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def ctx(**params: Any) -> ResponseContext:
    return ResponseContext(
        provider="anthropic",
        params={"model": "claude-2.1", **params},
        clock=lambda: 1_700_000_000,
        new_id=lambda: "cmpl-test",
    )


def run_stream(pieces: list[bytes], context: ResponseContext) -> list[Any]:
    return map_stream(PROVIDER, pieces, context)


def json_response(name: str, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, content=fixture(name), headers={"content-type": "application/json", **headers}
    )


# --- request mapping -------------------------------------------------------------------------


@pytest.mark.parametrize("case", json.loads(fixture("requests.json")), ids=lambda c: str(c["name"]))
async def test_request_mapping_golden(case: dict[str, Any]) -> None:
    client, upstream = gateway(lambda r: json_response("complete.json"))
    headers = {"x-portkey-provider": "anthropic", **case["headers"]}
    await client.post("/v1/completions", json=case["body"], headers=headers)
    sent = upstream.requests[0]
    assert str(sent.url) == case["url"]
    for name, value in case["upstream_headers"].items():
        assert sent.headers[name] == value
    assert "authorization" not in sent.headers
    assert upstream.json() == case["upstream_body"]


def test_dropped_params_are_named() -> None:
    target = Target(PROVIDER, api_key="k")
    params = {**BODY, "logprobs": 1, "echo": True, "seed": 3, "n": 1, "suffix": "x", "user": "u"}
    _, dropped = PROVIDER.build_request(target, params)
    assert sorted(dropped) == ["echo", "logprobs", "seed", "suffix"]


def test_prompt_wrapping() -> None:
    assert wrap_prompt("Hi") == "\n\nHuman: Hi\n\nAssistant:"
    assert wrap_prompt("Human: Hi\n\nAssistant:") == "\n\nHuman: Hi\n\nAssistant:"
    # "Human:" alone, without an Assistant turn, is an ordinary prompt.
    assert wrap_prompt("Human: resources") == "\n\nHuman: Human: resources\n\nAssistant:"


@pytest.mark.parametrize(
    ("field", "value"), [("temperature", 1.5), ("max_tokens", 0), ("top_k", -1)]
)
async def test_out_of_range_is_a_400_naming_the_param(field: str, value: Any) -> None:
    client, upstream = gateway(lambda r: json_response("complete.json"))
    response = await client.post("/v1/completions", json={**BODY, field: value}, headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == field
    assert upstream.requests == []


async def test_token_prompt_is_a_400_and_prompt_list_fans_out() -> None:
    client, upstream = gateway(lambda r: json_response("complete.json"))
    tokens = await client.post("/v1/completions", json={**BODY, "prompt": [1, 2]}, headers=HEADERS)
    assert tokens.status_code == 400
    assert tokens.json()["error"]["param"] == "prompt"
    listed = await client.post(
        "/v1/completions", json={**BODY, "prompt": ["A", "B"]}, headers=HEADERS
    )
    assert [c["index"] for c in listed.json()["choices"]] == [0, 1]
    prompts = sorted(json.loads(r.content)["prompt"] for r in upstream.requests)
    assert prompts == ["\n\nHuman: A\n\nAssistant:", "\n\nHuman: B\n\nAssistant:"]


async def test_missing_key_is_a_401() -> None:
    client, upstream = gateway(lambda r: json_response("complete.json"))
    response = await client.post(
        "/v1/completions", json=BODY, headers={"x-portkey-provider": "anthropic"}
    )
    assert response.status_code == 401
    assert upstream.requests == []


# --- response mapping ------------------------------------------------------------------------


def test_response_mapping_golden() -> None:
    assert PROVIDER.map_response is not None
    mapped = PROVIDER.map_response(json.loads(fixture("complete.json")), ctx())
    assert mapped == {
        "id": "compl_01QjyFAkoYdCy36QCHgwwuu9",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": "claude-2.1",
        "provider": "anthropic",
        "choices": [
            {
                "text": " Hello! How can I help you today?",
                "index": 0,
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }


async def test_max_tokens_stop_reason_is_length() -> None:
    client, _ = gateway(lambda r: json_response("complete_max_tokens.json"))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.json()["choices"][0]["finish_reason"] == "length"
    assert response.json()["provider"] == "anthropic"


async def test_unreadable_answer_is_a_502() -> None:
    client, _ = gateway(lambda r: httpx.Response(200, json={"unexpected": True}))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.status_code == 502


# --- streams -----------------------------------------------------------------------------------


EXPECTED_TEXTS = [" Hello", ", wörld", "!", ""]


@pytest.mark.parametrize("framing", ["crlf", "lf"])
def test_stream_mapping_split_anywhere(framing: str) -> None:
    raw = fixture("stream_crlf.sse")
    if framing == "lf":
        raw = raw.replace(b"\r\n", b"\n")
    whole = run_stream([raw], ctx(stream=True))
    assert [e["choices"][0]["text"] for e in whole] == EXPECTED_TEXTS
    assert [e["choices"][0]["finish_reason"] for e in whole] == [None, None, None, "stop"]
    assert {e["id"] for e in whole} == {"compl_01StreamFixture00000000001"}
    assert all(e["provider"] == "anthropic" and e["model"] == "claude-2.1" for e in whole)
    for cut in range(1, len(raw)):
        assert run_stream([raw[:cut], raw[cut:]], ctx(stream=True)) == whole, cut
    assert run_stream([raw[i : i + 1] for i in range(len(raw))], ctx(stream=True)) == whole


def test_stream_error_event_raises() -> None:
    with pytest.raises(StreamFailure, match="Overloaded") as caught:
        run_stream([fixture("stream_error.sse")], ctx(stream=True))
    assert caught.value.error_type == "overloaded_error"


async def test_stream_through_the_gateway_ends_with_done() -> None:
    client, upstream = gateway(
        lambda r: httpx.Response(
            200, content=fixture("stream_crlf.sse"), headers={"content-type": "text/event-stream"}
        )
    )
    response = await client.post("/v1/completions", json={**BODY, "stream": True}, headers=HEADERS)
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == " Hello, wörld!"
    assert upstream.json()["stream"] is True


async def test_mid_stream_error_becomes_an_error_event_then_done() -> None:
    first, error = fixture("stream_error.sse").split(b"\r\n\r\n", 1)

    async def body() -> AsyncIterator[bytes]:
        yield first + b"\r\n\r\n"  # a first chunk reaches the client before the error
        yield error

    client, _ = gateway(
        lambda r: httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})
    )
    response = await client.post("/v1/completions", json={**BODY, "stream": True}, headers=HEADERS)
    events = sse_events(response.text)
    assert response.status_code == 200
    assert events[0]["choices"][0]["text"] == " Hello"
    assert "Overloaded" in events[1]["error"]["message"]
    assert events[-1] == "[DONE]"
    assert len(events) == 3


async def test_error_event_before_the_first_chunk_is_a_json_error() -> None:
    _, error = fixture("stream_error.sse").split(b"\r\n\r\n", 1)
    client, _ = gateway(
        lambda r: httpx.Response(200, content=error, headers={"content-type": "text/event-stream"})
    )
    response = await client.post("/v1/completions", json={**BODY, "stream": True}, headers=HEADERS)
    assert response.status_code == 502
    assert "Overloaded" in response.json()["error"]["message"]


# --- errors -------------------------------------------------------------------------------------


async def test_error_429_keeps_status_type_and_retry_after() -> None:
    client, _ = gateway(lambda r: json_response("error_429.json", 429, **{"retry-after": "7"}))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {
        "error": {
            "message": "anthropic error: Number of request tokens has exceeded your per-minute "
            "rate limit",
            "type": "rate_limit_error",
            "param": None,
            "code": None,
        },
        "provider": "anthropic",
    }


async def test_error_400_message() -> None:
    client, _ = gateway(lambda r: json_response("error_400.json", 400))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "anthropic error: max_tokens_to_sample: field required"
    assert error["type"] == "invalid_request_error"


# --- integration: a loopback fake Anthropic and the openai SDK ---------------------------------


def _fake_anthropic(seen: list[dict[str, Any]]) -> Starlette:
    async def complete(request: Request) -> Response:
        body = await request.json()
        seen.append({"body": body, "key": request.headers.get("x-api-key")})
        if not body.get("prompt", "").startswith("\n\nHuman:"):
            return JSONResponse(json.loads(fixture("error_400.json")), status_code=400)
        if not body.get("stream"):
            return JSONResponse(json.loads(fixture("complete.json")))

        async def events() -> AsyncIterator[bytes]:
            for part in fixture("stream_crlf.sse").split(b"\r\n\r\n"):
                if part:
                    yield part + b"\r\n\r\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/complete", complete, methods=["POST"])])


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[openai.OpenAI, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    app = PortkeyMiddleware(not_found_app, allowed_custom_hosts=["127.0.0.1"])
    with serve(_fake_anthropic(seen)) as fake, serve(app) as gw:
        yield (
            openai.OpenAI(
                base_url=f"{gw}/v1",
                api_key="sk-ant-loopback",
                max_retries=0,
                default_headers={
                    "x-portkey-provider": "anthropic",
                    "x-portkey-custom-host": f"{fake}/v1",
                },
            ),
            seen,
        )


def test_openai_sdk_through_a_loopback_anthropic(
    loopback: tuple[openai.OpenAI, list[dict[str, Any]]],
) -> None:
    client, seen = loopback
    result = client.completions.create(model="claude-2.1", prompt="Say hello", stop="\n\nHuman:")
    assert result.choices[0].text == " Hello! How can I help you today?"
    assert result.choices[0].finish_reason == "stop"
    assert seen[-1]["key"] == "sk-ant-loopback"
    assert seen[-1]["body"]["stop_sequences"] == ["\n\nHuman:"]
    assert seen[-1]["body"]["max_tokens_to_sample"] == 16
    chunks = list(client.completions.create(model="claude-2.1", prompt="Hi", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == " Hello, wörld!"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert seen[-1]["body"]["stream"] is True
