"""Bedrock streams: AWS event-stream frames (real CRCs) → OpenAI SSE for each family, split at
any byte; exceptions, corrupt and cut streams; AI21's emulated stream; and one loopback
integration test (a fake Bedrock that verifies SigV4 itself) through the openai SDK."""

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
from tests.providers.test_bedrock_wire import (
    KEY_ID,
    SECRET,
    chunk_frame,
    exception_frame,
    no_aws_environment,
    verify_sigv4,
)

__all__ = ["no_aws_environment"]

FIXTURES = Path(__file__).parent / "fixtures" / "bedrock"
PROVIDER = REGISTRY["bedrock"]
AWS = {
    "x-portkey-provider": "bedrock",
    "x-portkey-aws-access-key-id": KEY_ID,
    "x-portkey-aws-secret-access-key": SECRET,
}
EVENTSTREAM = {"content-type": "application/vnd.amazon.eventstream"}


@pytest.fixture(autouse=True)
def _clean_aws(no_aws_environment: None) -> None:
    return None


def chunks(family: str) -> list[Any]:
    loaded: list[Any] = json.loads((FIXTURES / f"stream_{family}.json").read_bytes())
    return loaded


def stream_bytes(family: str) -> bytes:
    return b"".join(chunk_frame(c) for c in chunks(family))


def ctx(model: str, **params: Any) -> ResponseContext:
    return ResponseContext(
        provider="bedrock",
        params={"model": model, "stream": True, **params},
        clock=lambda: 1_700_000_000,
        new_id=lambda: "cmpl-test",
    )


def run_stream(pieces: list[bytes], context: ResponseContext) -> list[Any]:
    return map_stream(PROVIDER, pieces, context)


# --- per family ----------------------------------------------------------------------------------

FAMILIES = [
    ("anthropic.claude-v2:1", "anthropic", " Hello, wörld!", "stop", (12, 5)),
    ("cohere.command-text-v14", "cohere", " Hello, wörld!", "stop", (3, 4)),
    ("amazon.titan-text-express-v1", "amazon", " Hello, wörld!", "stop", (3, 5)),
    ("us.meta.llama3-8b-instruct-v1:0", "meta", " Hello, wörld!", "length", (5, 4)),
    ("mistral.mistral-7b-instruct-v0:2", "mistral", " Hello, wörld!", "stop", (6, 4)),
]


@pytest.mark.parametrize(("model", "family", "text", "finish", "usage"), FAMILIES)
def test_family_stream_golden(
    model: str, family: str, text: str, finish: str, usage: tuple[int, int]
) -> None:
    events = run_stream([stream_bytes(family)], ctx(model))
    assert "".join(e["choices"][0]["text"] for e in events) == text
    # finish_reason is null on every chunk but the last, which carries the usage.
    assert [e["choices"][0]["finish_reason"] for e in events[:-1]] == [None] * (len(events) - 1)
    assert events[-1]["choices"][0] == {
        "text": "",
        "index": 0,
        "logprobs": None,
        "finish_reason": finish,
    }
    assert events[-1]["usage"] == {
        "prompt_tokens": usage[0],
        "completion_tokens": usage[1],
        "total_tokens": sum(usage),
    }
    assert {(e["id"], e["model"], e["provider"], e["object"]) for e in events} == {
        ("cmpl-test", model, "bedrock", "text_completion")
    }


def test_split_at_every_byte_boundary() -> None:
    raw = stream_bytes("anthropic")
    whole = run_stream([raw], ctx("anthropic.claude-v2:1"))
    for cut in range(1, len(raw)):
        assert run_stream([raw[:cut], raw[cut:]], ctx("anthropic.claude-v2:1")) == whole, cut
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    assert run_stream(pieces, ctx("anthropic.claude-v2:1")) == whole


def test_include_usage_adds_a_usage_chunk() -> None:
    events = run_stream(
        [stream_bytes("meta")],
        ctx("meta.llama3-8b-instruct-v1:0", stream_options={"include_usage": True}),
    )
    assert events[-1]["choices"] == []
    assert events[-1]["usage"]["total_tokens"] == 9


def test_exception_frame_raises_with_its_type() -> None:
    raw = chunk_frame(chunks("anthropic")[0]) + exception_frame(
        "modelStreamErrorException", "The model stopped."
    )
    with pytest.raises(StreamFailure, match=r"modelStreamErrorException: The model stopped\."):
        run_stream([raw], ctx("anthropic.claude-v2:1"))


def test_corrupt_and_cut_streams_fail() -> None:
    raw = bytearray(stream_bytes("anthropic"))
    raw[40] ^= 0x01
    with pytest.raises(StreamFailure, match="corrupt"):
        run_stream([bytes(raw)], ctx("anthropic.claude-v2:1"))
    cut = stream_bytes("anthropic")[:-3]
    with pytest.raises(StreamFailure, match="ended inside a message"):
        run_stream([cut], ctx("anthropic.claude-v2:1"))


# --- through the gateway -------------------------------------------------------------------------

BODY = {"model": "anthropic.claude-v2:1", "prompt": "Say hello", "max_tokens": 16, "stream": True}


async def test_stream_through_the_gateway() -> None:
    client, upstream = gateway(
        lambda r: httpx.Response(200, content=stream_bytes("anthropic"), headers=EVENTSTREAM)
    )
    response = await client.post("/v1/completions", json=BODY, headers=AWS)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == " Hello, wörld!"
    sent = upstream.requests[0]
    assert sent.url.raw_path == b"/model/anthropic.claude-v2%3A1/invoke-with-response-stream"
    assert json.loads(sent.content) == {
        "prompt": "\n\nHuman: Say hello\n\nAssistant:",
        "max_tokens_to_sample": 16,
    }
    assert verify_sigv4(sent.url.raw_path.decode(), sent.headers, sent.content)


async def test_exception_mid_stream_is_an_error_event_then_done() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield chunk_frame(chunks("anthropic")[0])
        yield exception_frame("throttlingException", "Too many tokens, please wait.")

    client, _ = gateway(lambda r: httpx.Response(200, content=body(), headers=EVENTSTREAM))
    response = await client.post("/v1/completions", json=BODY, headers=AWS)
    events = sse_events(response.text)
    assert events[0]["choices"][0]["text"] == " Hello"
    assert "Too many tokens" in events[1]["error"]["message"]
    assert events[-1] == "[DONE]"
    assert len(events) == 3


async def test_ai21_stream_is_emulated_from_invoke() -> None:
    client, upstream = gateway(
        lambda r: httpx.Response(
            200,
            content=(FIXTURES / "invoke_ai21.json").read_bytes(),
            headers={"content-type": "application/json"},
        )
    )
    response = await client.post(
        "/v1/completions", json={**BODY, "model": "ai21.j2-mid-v1"}, headers=AWS
    )
    events = sse_events(response.text)
    assert upstream.requests[0].url.raw_path == b"/model/ai21.j2-mid-v1/invoke"
    assert events[0]["choices"][0]["text"] == " Hello!"
    assert events[0]["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == "[DONE]"


# --- integration: a loopback fake Bedrock (checking SigV4 itself) and the openai SDK ------------


def _fake_bedrock(seen: list[dict[str, Any]]) -> Starlette:
    async def invoke(request: Request) -> Response:
        body = await request.body()
        path = request.scope["raw_path"].decode()
        valid = verify_sigv4(path, dict(request.headers), body)
        seen.append({"path": path, "body": json.loads(body), "signed": valid})
        if not valid:
            return JSONResponse(
                {"message": "The request signature we calculated does not match"}, status_code=403
            )
        if path.endswith("/invoke"):
            return JSONResponse(
                {"completion": " Hi!", "stop_reason": "stop_sequence", "stop": "\n\nHuman:"},
                headers={
                    "x-amzn-bedrock-input-token-count": "4",
                    "x-amzn-bedrock-output-token-count": "2",
                },
            )

        async def frames() -> AsyncIterator[bytes]:
            for item in chunks("anthropic"):
                yield chunk_frame(item)

        return StreamingResponse(frames(), media_type=EVENTSTREAM["content-type"])

    return Starlette(
        routes=[
            Route("/model/{model}/invoke", invoke, methods=["POST"]),
            Route("/model/{model}/invoke-with-response-stream", invoke, methods=["POST"]),
        ]
    )


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with serve(_fake_bedrock(seen)) as fake:
        yield fake, seen


def _sdk(gw: str, fake: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gw}/v1",
        api_key="unused",
        max_retries=0,
        # The SDK's Authorization (an API key) loses to the explicit AWS keys: SigV4.
        default_headers={**AWS, "x-portkey-custom-host": fake},
    )


@pytest.mark.parametrize("transport", ["httpx", "default"])
def test_openai_sdk_through_a_loopback_bedrock(
    loopback: tuple[str, list[dict[str, Any]]], transport: str
) -> None:
    fake, seen = loopback
    client = httpx.AsyncClient() if transport == "httpx" else None
    app = PortkeyMiddleware(not_found_app, allowed_custom_hosts=["127.0.0.1"], http_client=client)
    with serve(app) as gw:
        sdk = _sdk(gw, fake)
        result = sdk.completions.create(model="anthropic.claude-v2:1", prompt="Say hello")
        assert seen[-1]["signed"]
        assert seen[-1]["path"].endswith("claude-v2%3A1/invoke")
        assert result.choices[0].text == " Hi!"
        assert result.choices[0].finish_reason == "stop"
        assert result.usage is not None
        assert result.usage.total_tokens == 6
        stream = sdk.completions.create(
            model="anthropic.claude-v2:1", prompt="Say hello", stream=True
        )
        pieces = list(stream)
        assert seen[-1]["signed"]
        assert seen[-1]["body"]["max_tokens_to_sample"] == 16
        assert "".join(c.choices[0].text for c in pieces) == " Hello, wörld!"
        assert pieces[-1].choices[0].finish_reason == "stop"
