"""Cohere (legacy /v1/generate): request, response, NDJSON stream and error mapping, with
Cohere's native payloads in fixtures/cohere, and one loopback integration test."""

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
from portkey_mw.providers.base import ResponseContext, StreamFailure, Target
from tests.helpers import gateway, map_stream, not_found_app, serve, sse_events

FIXTURES = Path(__file__).parent / "fixtures" / "cohere"
PROVIDER = REGISTRY["cohere"]
HEADERS = {"x-portkey-provider": "cohere", "authorization": "Bearer co-test"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def ctx(**params: Any) -> ResponseContext:
    return ResponseContext(
        provider="cohere",
        params={"model": "command", **params},
        clock=lambda: 1_700_000_000,
        new_id=lambda: "cmpl-test",
    )


def run_stream(pieces: list[bytes], context: ResponseContext) -> list[Any]:
    return map_stream(PROVIDER, pieces, context)


# --- request mapping -------------------------------------------------------------------------


async def test_request_renames_and_stop_list() -> None:
    client, upstream = gateway(lambda r: httpx.Response(200, content=fixture("generate.json")))
    body = {
        "model": "command",
        "prompt": "Say hello",
        "max_tokens": 16,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "n": 2,
        "stop": "\n",
        "presence_penalty": 0.25,
        "frequency_penalty": 0.5,
        "seed": 7,
        "user": "u-1",
        "logprobs": 2,
        "truncate": "END",
    }
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    assert response.status_code == 200
    sent = upstream.requests[0]
    assert str(sent.url) == "https://api.cohere.ai/v1/generate"
    assert sent.headers["authorization"] == "Bearer co-test"
    assert sent.headers["content-type"] == "application/json"
    assert upstream.json() == {
        "model": "command",
        "prompt": "Say hello",
        "max_tokens": 16,
        "temperature": 0.5,
        "p": 0.9,
        "k": 40,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.25,
        "num_generations": 2,
        "end_sequences": ["\n"],
        "seed": 7,
        "truncate": "END",
    }
    assert len(upstream.requests) == 1  # n is native: one call


def test_stop_list_kept_and_dropped_params_reported() -> None:
    request, dropped = PROVIDER.build_request(
        _target(),
        {"model": "command", "prompt": "p", "stop": ["a", "b"], "echo": True, "best_of": 2},
    )
    assert json.loads(request.body)["end_sequences"] == ["a", "b"]
    assert sorted(dropped) == ["best_of", "echo"]


def _target() -> Target:
    return Target(PROVIDER, api_key="co-test")


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("top_p", 1.0),
        ("top_p", 0.0),
        ("presence_penalty", -1),
        ("frequency_penalty", 1.5),
        ("n", 6),
        ("top_k", 501),
        ("temperature", -0.1),
    ],
)
async def test_out_of_range_is_a_400_naming_the_param(param: str, value: float) -> None:
    client, upstream = gateway(lambda r: httpx.Response(200, content=fixture("generate.json")))
    body = {"model": "command", "prompt": "p", param: value}
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert upstream.requests == []


async def test_prompt_list_fans_out_and_token_prompts_are_rejected() -> None:
    client, upstream = gateway(lambda r: httpx.Response(200, content=fixture("generate.json")))
    response = await client.post(
        "/v1/completions", json={"model": "command", "prompt": [[1, 2]]}, headers=HEADERS
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"
    response = await client.post(
        "/v1/completions", json={"model": "command", "prompt": ["a", "b"]}, headers=HEADERS
    )
    assert response.status_code == 200
    assert [r["prompt"] for r in map(json.loads, (r.content for r in upstream.requests))] == [
        "a",
        "b",
    ]


# --- response mapping ------------------------------------------------------------------------


def test_response_finish_reasons_usage_and_model() -> None:
    body = json.loads(fixture("generate.json"))
    assert PROVIDER.map_response is not None
    assert PROVIDER.map_response(body, ctx()) == {
        "id": "5b0d3d47-1111-4000-8000-000000000001",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": "command",
        "provider": "cohere",
        "choices": [
            {"text": " Hello!", "index": 0, "logprobs": None, "finish_reason": "stop"},
            {"text": " Hi there, how", "index": 1, "logprobs": None, "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9},
    }


async def test_unreadable_answer_is_a_502() -> None:
    client, _ = gateway(lambda r: httpx.Response(200, json={"unexpected": True}))
    response = await client.post(
        "/v1/completions", json={"model": "command", "prompt": "p"}, headers=HEADERS
    )
    assert response.status_code == 502
    assert "generations" in response.json()["error"]["message"]


# --- stream mapping --------------------------------------------------------------------------

STREAM_GOLDEN = [
    {"text": " Hello", "finish_reason": None},
    {"text": ", wörld", "finish_reason": None},
    {"text": "!", "finish_reason": None},
    {"text": "", "finish_reason": "stop"},
]


def test_stream_golden() -> None:
    events = run_stream([fixture("stream.ndjson")], ctx(stream=True))
    assert [
        {"text": e["choices"][0]["text"], "finish_reason": e["choices"][0]["finish_reason"]}
        for e in events
    ] == STREAM_GOLDEN
    assert events[0] == {
        "id": "cmpl-test",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": "command",
        "provider": "cohere",
        "choices": [{"text": " Hello", "index": 0, "logprobs": None, "finish_reason": None}],
    }
    assert events[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert all("usage" not in e for e in events[:-1])


def test_stream_split_anywhere_and_crlf() -> None:
    payload = fixture("stream.ndjson")
    whole = run_stream([payload], ctx(stream=True))
    for cut in range(1, len(payload)):
        assert run_stream([payload[:cut], payload[cut:]], ctx(stream=True)) == whole
    assert run_stream([bytes([b]) for b in payload], ctx(stream=True)) == whole
    crlf = payload.replace(b"\n", b"\r\n")
    for cut in range(1, len(crlf), 7):
        assert run_stream([crlf[:cut], crlf[cut:]], ctx(stream=True)) == whole


def test_stream_with_n_gives_a_final_reason_per_generation() -> None:
    events = run_stream([fixture("stream_n2.ndjson")], ctx(stream=True, n=2))
    texts = [(e["choices"][0]["index"], e["choices"][0]["text"]) for e in events]
    assert texts == [(0, " A"), (1, " B"), (1, " and more"), (0, ""), (1, "")]
    finals = {e["choices"][0]["index"]: e["choices"][0]["finish_reason"] for e in events[-2:]}
    assert finals == {0: "stop", 1: "length"}
    assert "usage" not in events[-2]
    assert events[-1]["usage"]["total_tokens"] == 5


def test_stream_include_usage_adds_the_usage_chunk() -> None:
    events = run_stream(
        [fixture("stream.ndjson")], ctx(stream=True, stream_options={"include_usage": True})
    )
    assert events[-1]["choices"] == []
    assert events[-1]["usage"]["completion_tokens"] == 4


def test_stream_error_event_raises() -> None:
    with pytest.raises(StreamFailure, match="internal server error while generating"):
        run_stream([fixture("stream_error.ndjson")], ctx(stream=True))


def test_stream_cut_before_the_final_event_raises() -> None:
    cut = fixture("stream.ndjson").rsplit(b"\n", 2)[0] + b"\n"
    with pytest.raises(StreamFailure, match="ended before"):
        run_stream([cut], ctx(stream=True))


async def test_stream_through_the_gateway_ends_with_done() -> None:
    client, upstream = gateway(
        lambda r: httpx.Response(
            200,
            content=fixture("stream.ndjson"),
            headers={"content-type": "application/stream+json"},
        )
    )
    response = await client.post(
        "/v1/completions",
        json={"model": "command", "prompt": "Say hello", "stream": True},
        headers=HEADERS,
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == " Hello, wörld!"
    assert upstream.json()["stream"] is True


async def _pieces(payload: bytes) -> AsyncIterator[bytes]:
    for line in payload.splitlines(keepends=True):
        yield line


async def test_stream_error_midway_becomes_an_sse_error_event() -> None:
    payload = fixture("stream_error.ndjson")
    client, _ = gateway(
        lambda r: httpx.Response(
            200, content=_pieces(payload), headers={"content-type": "application/x-ndjson"}
        )
    )
    body = {"model": "command", "prompt": "p", "stream": True}
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    events = sse_events(response.text)
    assert events[0]["choices"][0]["text"] == " Hel"
    assert "internal server error" in events[1]["error"]["message"]
    assert events[-1] == "[DONE]"
    assert len(events) == 3


async def test_stream_error_before_the_first_chunk_is_a_502() -> None:
    payload = fixture("stream_error.ndjson").split(b"\n", 1)[1]
    client, _ = gateway(
        lambda r: httpx.Response(
            200, content=payload, headers={"content-type": "application/x-ndjson"}
        )
    )
    body = {"model": "command", "prompt": "p", "stream": True}
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    assert response.status_code == 502
    assert "internal server error" in response.json()["error"]["message"]


# --- error mapping ---------------------------------------------------------------------------


async def test_error_message_keeps_status() -> None:
    client, _ = gateway(lambda r: httpx.Response(429, content=fixture("error_429.json")))
    response = await client.post(
        "/v1/completions", json={"model": "command", "prompt": "p"}, headers=HEADERS
    )
    assert response.status_code == 429
    assert response.json() == {
        "error": {
            "message": "cohere error: You are using a Trial key, which is limited to 10 API "
            "calls / minute.",
            "type": None,
            "param": None,
            "code": None,
        },
        "provider": "cohere",
    }


# --- integration: a loopback fake Cohere and the openai SDK ----------------------------------


def _fake_cohere(seen: list[dict[str, Any]]) -> Starlette:
    async def generate(request: Request) -> Response:
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        if not body.get("stream"):
            return JSONResponse(json.loads(fixture("generate.json")))

        async def lines() -> AsyncIterator[bytes]:
            for line in fixture("stream.ndjson").splitlines(keepends=True):
                yield line

        return StreamingResponse(lines(), media_type="application/stream+json")

    return Starlette(routes=[Route("/v1/generate", generate, methods=["POST"])])


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[openai.OpenAI, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    app = PortkeyMiddleware(not_found_app, allowed_custom_hosts=["127.0.0.1"])
    with serve(_fake_cohere(seen)) as fake, serve(app) as gw:
        yield (
            openai.OpenAI(
                base_url=f"{gw}/v1",
                api_key="co-loopback",
                max_retries=0,
                default_headers={"x-portkey-provider": "cohere", "x-portkey-custom-host": fake},
            ),
            seen,
        )


def test_openai_sdk_through_a_loopback_cohere(
    loopback: tuple[openai.OpenAI, list[dict[str, Any]]],
) -> None:
    client, seen = loopback
    result = client.completions.create(model="command", prompt="Say hello", n=2, stop="\n")
    assert [c.finish_reason for c in result.choices] == ["stop", "length"]
    assert result.usage is not None
    assert result.usage.total_tokens == 9
    assert seen[-1]["body"]["num_generations"] == 2
    assert seen[-1]["auth"] == "Bearer co-loopback"
    chunks = list(client.completions.create(model="command", prompt="Say hello", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == " Hello, wörld!"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert seen[-1]["body"]["stream"] is True
