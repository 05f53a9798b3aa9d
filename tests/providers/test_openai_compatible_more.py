"""The smaller OpenAI-compatible providers (providers.md §3): azure-ai, github, huggingface,
lepton, featherless-ai, lambda, nebius, nextbit, x-ai and modal.

Parametrised golden tests of request mapping (URL, auth headers, body whitelist, dropped
params), response rebuild with ``provider``, stream rebuild (1-byte chunks, LF and CRLF) ending
in one ``[DONE]``, and error mapping with the ``<id> error:`` prefix; then each provider's
particulars, and one integration test (huggingface) through real loopback servers and the
``openai`` SDK.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
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
from portkey_mw.providers.base import Target
from tests.helpers import gateway as _gateway
from tests.helpers import not_found_app, serve, sse_events

# Client-set provider URLs (Foundry, HF endpoints) must be hosts the operator allows.
VENDOR_HOSTS = [
    "res.services.ai.azure.com",
    "ep.eastus.models.ai.azure.com",
    "abc.us-east-1.aws.endpoints.huggingface.cloud",
]


def gateway(handler: Any, **settings: Any) -> Any:
    settings["allowed_custom_hosts"] = [*settings.get("allowed_custom_hosts", []), *VENDOR_HOSTS]
    return _gateway(handler, **settings)


FIXTURES = Path(__file__).parent / "fixtures" / "compatible"
FOUNDRY = "https://res.services.ai.azure.com/models"

# Every OpenAI completions param, plus the extras some of these providers take.
PARAMS: dict[str, Any] = {
    "model": "org/model",
    "prompt": "Say hi",
    "max_tokens": 16,
    "temperature": 0.5,
    "top_p": 0.9,
    "n": 1,
    "stream": False,
    "logprobs": 2,
    "echo": False,
    "stop": "\n",
    "presence_penalty": 0.1,
    "frequency_penalty": 0.2,
    "best_of": 1,
    "logit_bias": {"50256": -100},
    "user": "u1",
    "seed": 7,
    "suffix": "!",
    "stream_options": {"include_usage": True},
    "top_k": 40,
    "min_p": 0.05,
    "repetition_penalty": 1.1,
    "service_tier": "auto",
}
OPENAI_SET = (
    "model prompt max_tokens temperature top_p n stream logprobs echo stop presence_penalty "
    "frequency_penalty best_of logit_bias user seed suffix"
)


@dataclass(frozen=True)
class Case:
    name: str
    url: str
    sent: str  # params forwarded, space-separated
    drops: str  # params dropped (and reported), space-separated
    headers: dict[str, str] = field(default_factory=dict)  # client x-portkey-* headers
    upstream: dict[str, str] = field(default_factory=lambda: {"authorization": "Bearer key"})
    native: str = "completion.json"
    stream: str = "stream.sse"
    error: str = "openai_error.json"

    @property
    def options(self) -> dict[str, str]:
        names = {
            "x-portkey-azure-foundry-url": "azure_foundry_url",
            "x-portkey-azure-api-version": "api_version",
        }
        return {names[k]: v for k, v in self.headers.items()}


AZURE_SENT = (
    "model prompt max_tokens temperature top_p stream stop presence_penalty frequency_penalty user"
)
AZURE_DROPS = (
    "n logprobs echo best_of logit_bias seed suffix stream_options "
    "top_k min_p repetition_penalty service_tier"
)
AZURE_AUTH = {"authorization": "Bearer key", "extra-parameters": "drop"}
NO_EXTRAS = "top_k min_p repetition_penalty service_tier"

CASES = [
    Case(
        "azure-ai",
        f"{FOUNDRY}/completions?api-version=2024-05-01-preview",
        AZURE_SENT,
        AZURE_DROPS,
        headers={
            "x-portkey-azure-foundry-url": FOUNDRY,
            "x-portkey-azure-api-version": "2024-05-01-preview",
        },
        upstream=AZURE_AUTH,
        error="azure_error.json",
    ),
    Case(
        "github",
        "https://models.inference.ai.azure.com/completions",
        AZURE_SENT,
        AZURE_DROPS,
        upstream=AZURE_AUTH,
        error="azure_error.json",
    ),
    Case(
        "huggingface",
        "https://api-inference.huggingface.co/models/org/model/v1/completions",
        "model prompt max_tokens temperature top_p stream seed suffix frequency_penalty "
        "repetition_penalty stop",
        "n logprobs echo presence_penalty best_of logit_bias user stream_options top_k min_p "
        "service_tier",
        native="tgi_completion.json",
        stream="tgi_stream.sse",
        error="tgi_error.json",
    ),
    Case(
        "lepton",
        "https://api.lepton.ai/api/v1/completions",
        "model prompt suffix temperature n max_tokens stop stream stream_options top_p logprobs "
        "echo presence_penalty frequency_penalty logit_bias user seed repetition_penalty top_k "
        "min_p",
        "best_of service_tier",
    ),
    Case(
        "featherless-ai",
        "https://api.featherless.ai/v1/completions",
        "model prompt max_tokens temperature top_p stream stop presence_penalty "
        "frequency_penalty seed repetition_penalty top_k min_p",
        "n logprobs echo best_of logit_bias user suffix stream_options service_tier",
        error="fastapi_error.json",
    ),
    Case(
        "lambda", "https://api.lambda.ai/v1/completions", f"{OPENAI_SET} stream_options", NO_EXTRAS
    ),
    Case(
        "nebius",
        "https://api.tokenfactory.nebius.com/v1/completions",
        "model prompt stream stream_options max_tokens temperature top_p n logprobs echo stop "
        "presence_penalty frequency_penalty logit_bias user service_tier",
        "best_of seed suffix top_k min_p repetition_penalty",
    ),
    Case(
        "nextbit",
        "https://api.nextbit256.com/v1/completions",
        OPENAI_SET,
        f"stream_options {NO_EXTRAS}",
    ),
    Case(
        "x-ai",
        "https://api.x.ai/v1/completions",
        "model prompt max_tokens temperature top_p n stream logprobs echo stop presence_penalty "
        "user seed stream_options",
        f"frequency_penalty best_of logit_bias suffix {NO_EXTRAS}",
        error="xai_error.json",
    ),
    Case(
        "modal", "https://api.modal.com/v1/completions", f"{OPENAI_SET} stream_options", NO_EXTRAS
    ),
]
IDS = [c.name for c in CASES]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def client_headers(case: Case, **extra: str) -> dict[str, str]:
    return {"x-portkey-provider": case.name, "authorization": "Bearer key", **case.headers, **extra}


def expected_body(case: Case) -> dict[str, Any]:
    body = {k: PARAMS[k] for k in case.sent.split()}
    if case.name == "huggingface":
        body["stop"] = ["\n"]  # TGI takes stop as a list only
    return body


class Chunked(httpx.AsyncByteStream):
    """An upstream body delivered in ``size``-byte pieces (every boundary a split)."""

    def __init__(self, data: bytes, size: int = 1) -> None:
        self.data, self.size = data, size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.size):
            yield self.data[start : start + self.size]


def sse_response(data: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _r: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=Chunked(data)
    )


# --- request mapping -------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_request_mapping(case: Case) -> None:
    provider = REGISTRY[case.name]
    request, dropped = provider.build_request(Target(provider, "key", case.options), PARAMS)
    assert request.url == case.url
    assert {k: request.headers[k] for k in case.upstream} == case.upstream
    assert json.loads(request.body) == expected_body(case)
    assert sorted(dropped) == sorted(case.drops.split())
    assert not request.stream


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_response_is_rebuilt_with_provider(case: Case) -> None:
    client, upstream = gateway(
        lambda _r: httpx.Response(
            200, content=fixture(case.native), headers={"content-type": "application/json"}
        )
    )
    response = await client.post("/v1/completions", json=PARAMS, headers=client_headers(case))
    assert response.status_code == 200, response.text
    sent = upstream.requests[0]
    assert str(sent.url) == case.url
    assert {k: sent.headers[k] for k in case.upstream} == case.upstream
    assert upstream.json() == expected_body(case)
    body = response.json()
    if case.name == "huggingface":
        # TGI's id is empty: one is made up; eos_token is OpenAI's stop.
        assert body.pop("id").startswith("cmpl-")
        assert body.pop("system_fingerprint") == "2.4.0-native"
        finish = "stop"
    else:
        assert body.pop("id") == "cmpl-7f3a"
        assert body.pop("system_fingerprint") == "fp_1"  # kept, unlike the Portkey gateway
        finish = "length"
    assert body == {
        "object": "text_completion",
        "created": 1717000000,
        "model": "org/model",
        "provider": case.name,
        "choices": [
            {"text": " Hello there", "index": 0, "logprobs": None, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


# --- streams ---------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_stream_is_rebuilt_and_ends_with_done(case: Case, newline: str) -> None:
    native = fixture(case.stream).replace(b"\n", newline.encode())
    client, upstream = gateway(sse_response(native))
    response = await client.post(
        "/v1/completions", json={**PARAMS, "stream": True}, headers=client_headers(case)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert upstream.json()["stream"] is True
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    chunks = events[:-1]
    assert all(c["provider"] == case.name and c["object"] == "text_completion" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["id"]
    texts = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    reasons = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert texts == [" Hello", " there"]
    assert reasons == [None, "stop" if case.name == "huggingface" else "length"]
    if case.name != "huggingface":
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"] == {
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "total_tokens": 5,
        }


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_error_inside_stream_becomes_an_error_event(case: Case) -> None:
    first = next(b for b in fixture(case.stream).split(b"\n\n") if b.startswith(b"data: {"))
    native = (
        first
        + b'\n\ndata: {"error":{"message":"The server is overloaded","type":"server_error"}}\n\n'
    )
    client, _ = gateway(sse_response(native))
    response = await client.post(
        "/v1/completions", json={**PARAMS, "stream": True}, headers=client_headers(case)
    )
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["message"] == "The server is overloaded"
    assert events[-2]["error"]["type"] == "server_error"


# --- errors ----------------------------------------------------------------------------------

ERRORS = {
    "openai_error.json": (
        "The model `org/nope` does not exist.",
        "invalid_request_error",
        "model",
        "model_not_found",
    ),
    "azure_error.json": (
        "Access denied due to invalid subscription key or wrong API endpoint.",
        None,
        None,
        "Unauthorized",
    ),
    "tgi_error.json": (
        "Input validation error: `temperature` must be strictly positive",
        "validation",
        None,
        None,
    ),
    "fastapi_error.json": (
        "body.max_tokens: ensure this value is greater than 0",
        "value_error",
        None,
        None,
    ),
    "xai_error.json": (
        "Incorrect API key provided: xa***ey. You can obtain an API key from https://console.x.ai.",
        None,
        None,
        "Client specified an invalid argument",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_error_is_mapped_with_prefix(case: Case) -> None:
    client, _ = gateway(
        lambda _r: httpx.Response(
            422, content=fixture(case.error), headers={"content-type": "application/json"}
        )
    )
    response = await client.post("/v1/completions", json=PARAMS, headers=client_headers(case))
    assert response.status_code == 422
    message, kind, param, code = ERRORS[case.error]
    assert response.json() == {
        "error": {
            "message": f"{case.name} error: {message}",
            "type": kind,
            "param": param,
            "code": code,
        },
        "provider": case.name,
    }


# --- particulars -----------------------------------------------------------------------------


async def test_no_default_model_is_filled() -> None:
    client, upstream = gateway(lambda _r: httpx.Response(200, json={}))
    response = await client.post(
        "/v1/completions",
        json={"prompt": "hi"},
        headers={"x-portkey-provider": "x-ai", "authorization": "Bearer k"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"
    assert upstream.requests == []


async def test_azure_ai_ad_token_deployment_and_extra_params() -> None:
    client, upstream = gateway(lambda _r: httpx.Response(200, content=fixture("completion.json")))
    headers = {
        "x-portkey-provider": "azure-ai",
        "x-portkey-azure-foundry-url": "https://ep.eastus.models.ai.azure.com/",
        "x-portkey-azure-ad-token": "Bearer ad-token",
        "x-portkey-azure-extra-params": "pass-through",
        "x-portkey-azure-deployment-name": "llama-blue",
    }
    response = await client.post(
        "/v1/completions", json={"model": "m", "prompt": "p"}, headers=headers
    )
    assert response.status_code == 200, response.text
    sent = upstream.requests[0]
    assert str(sent.url) == "https://ep.eastus.models.ai.azure.com/completions"  # no api-version
    assert sent.headers["authorization"] == "Bearer ad-token"
    assert sent.headers["extra-parameters"] == "pass-through"
    assert sent.headers["azureml-model-deployment"] == "llama-blue"


@pytest.mark.parametrize(
    ("headers", "param"),
    [
        ({}, "x-portkey-azure-foundry-url"),
        (
            {"x-portkey-azure-foundry-url": "https://attacker.example/models"},
            "x-portkey-azure-foundry-url",
        ),
        (
            {"x-portkey-azure-foundry-url": "http://res.services.ai.azure.com"},
            "x-portkey-azure-foundry-url",
        ),
        ({"x-portkey-azure-foundry-url": "https://evil-azure.com"}, "x-portkey-azure-foundry-url"),
        (
            {"x-portkey-azure-foundry-url": "https://myvm.eastus.cloudapp.azure.com"},
            "x-portkey-azure-foundry-url",
        ),
        (
            {"x-portkey-azure-foundry-url": FOUNDRY, "x-portkey-azure-extra-params": "keep"},
            "x-portkey-azure-extra-params",
        ),
    ],
    ids=["missing", "foreign-host", "plain-http", "lookalike", "azure-vm", "bad-extra-params"],
)
async def test_azure_ai_rejects_bad_options(headers: dict[str, str], param: str) -> None:
    client, upstream = gateway(lambda _r: httpx.Response(200, json={}))
    response = await client.post(
        "/v1/completions",
        json={"model": "m", "prompt": "p"},
        headers={"x-portkey-provider": "azure-ai", "authorization": "Bearer k", **headers},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert upstream.requests == []


async def test_azure_ai_custom_host_replaces_the_foundry_url() -> None:
    client, upstream = gateway(
        lambda _r: httpx.Response(200, content=fixture("completion.json")),
        allowed_custom_hosts=["proxy.local"],
    )
    response = await client.post(
        "/v1/completions",
        json={"model": "m", "prompt": "p"},
        headers={
            "x-portkey-provider": "azure-ai",
            "authorization": "Bearer k",
            "x-portkey-custom-host": "https://proxy.local/az",
        },
    )
    assert response.status_code == 200, response.text
    assert str(upstream.requests[0].url) == "https://proxy.local/az/completions"


@pytest.mark.parametrize(
    ("headers", "url"),
    [
        (
            {
                "x-portkey-huggingface-base-url": "https://abc.us-east-1.aws.endpoints.huggingface.cloud/"
            },
            "https://abc.us-east-1.aws.endpoints.huggingface.cloud/v1/completions",
        ),
        (
            {"x-portkey-custom-host": "http://tgi.local:8080"},
            "http://tgi.local:8080/v1/completions",
        ),
    ],
    ids=["base-url", "custom-host"],
)
async def test_huggingface_dedicated_endpoints_serve_at_their_root(
    headers: dict[str, str], url: str
) -> None:
    client, upstream = gateway(
        lambda _r: httpx.Response(200, content=fixture("tgi_completion.json")),
        allowed_custom_hosts=["tgi.local:8080"],
    )
    response = await client.post(
        "/v1/completions",
        json={"model": "tgi", "prompt": "p"},
        headers={"x-portkey-provider": "huggingface", "authorization": "Bearer hf", **headers},
    )
    assert response.status_code == 200, response.text
    assert str(upstream.requests[0].url) == url


async def test_huggingface_base_url_must_be_a_hugging_face_host() -> None:
    client, upstream = gateway(lambda _r: httpx.Response(200, json={}))
    response = await client.post(
        "/v1/completions",
        json={"model": "m", "prompt": "p"},
        headers={
            "x-portkey-provider": "huggingface",
            "authorization": "Bearer hf",
            "x-portkey-huggingface-base-url": "https://169.254.169.254/latest",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-portkey-huggingface-base-url"
    assert upstream.requests == []


async def test_huggingface_fans_out_n_and_rejects_token_prompts() -> None:
    client, upstream = gateway(
        lambda _r: httpx.Response(200, content=fixture("tgi_completion.json"))
    )
    headers = {"x-portkey-provider": "huggingface", "authorization": "Bearer hf"}
    response = await client.post(
        "/v1/completions", json={"model": "m", "prompt": "p", "n": 2}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert len(upstream.requests) == 2
    assert "n" not in upstream.json()
    assert [c["index"] for c in response.json()["choices"]] == [0, 1]
    assert response.json()["usage"]["total_tokens"] == 10
    tokens = await client.post(
        "/v1/completions", json={"model": "m", "prompt": [1, 2]}, headers=headers
    )
    assert tokens.status_code == 400
    assert tokens.json()["error"]["param"] == "prompt"


async def test_huggingface_keeps_a_real_id() -> None:
    native = json.loads(fixture("tgi_completion.json"))
    client, _ = gateway(lambda _r: httpx.Response(200, json={**native, "id": "tgi-42"}))
    response = await client.post(
        "/v1/completions",
        json={"model": "m", "prompt": "p"},
        headers={"x-portkey-provider": "huggingface", "authorization": "Bearer hf"},
    )
    assert response.json()["id"] == "tgi-42"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"x-portkey-modal-key": "wk-1", "x-portkey-modal-secret": "ws-1"},
            {"modal-key": "wk-1", "modal-secret": "ws-1"},
        ),
        (
            {"modal-key": "wk-2", "modal-secret": "ws-2"},
            {"modal-key": "wk-2", "modal-secret": "ws-2"},
        ),
        (
            {
                "authorization": "Bearer vllm",
                "x-portkey-modal-key": "wk",
                "x-portkey-modal-secret": "ws",
            },
            {"authorization": "Bearer vllm", "modal-key": "wk", "modal-secret": "ws"},
        ),
    ],
    ids=["proxy-auth", "plain-headers", "both"],
)
async def test_modal_proxy_auth(headers: dict[str, str], expected: dict[str, str]) -> None:
    client, upstream = gateway(
        lambda _r: httpx.Response(200, content=fixture("completion.json")),
        allowed_custom_hosts=["app.modal.run"],
    )
    response = await client.post(
        "/v1/completions",
        json={"model": "m", "prompt": "p"},
        headers={
            "x-portkey-provider": "modal",
            "x-portkey-custom-host": "https://app.modal.run/v1",
            **headers,
        },
    )
    assert response.status_code == 200, response.text
    sent = upstream.requests[0]
    assert str(sent.url) == "https://app.modal.run/v1/completions"
    assert {k: sent.headers.get(k) for k in ("authorization", "modal-key", "modal-secret")} == {
        "authorization": None,
        "modal-key": None,
        "modal-secret": None,
        **expected,
    }


async def test_modal_without_credentials_is_a_401() -> None:
    client, upstream = gateway(lambda _r: httpx.Response(200, json={}))
    response = await client.post(
        "/v1/completions",
        json={"model": "m", "prompt": "p"},
        headers={"x-portkey-provider": "modal"},
    )
    assert response.status_code == 401
    assert "x-portkey-modal-key" in response.json()["error"]["message"]
    assert upstream.requests == []


# --- integration: a fake TGI server, the gateway, the openai SDK --------------------------


def fake_tgi(seen: list[dict[str, Any]]) -> Starlette:
    """Speaks TGI's /v1/completions: empty ids, eos_token, pings, stop as a list only."""

    async def completions(request: Request) -> Response:
        body = await request.json()
        seen.append({"auth": request.headers.get("authorization"), "body": body})
        if not isinstance(body.get("stop", []), list):
            return JSONResponse({"error": "stop: invalid type", "error_type": "validation"}, 422)
        if body.get("temperature") == 0:
            return JSONResponse(
                {
                    "error": "Input validation error: `temperature` must be strictly positive",
                    "error_type": "validation",
                },
                422,
            )
        if not body.get("stream"):
            return Response(fixture("tgi_completion.json"), media_type="application/json")

        async def events() -> AsyncIterator[bytes]:
            for block in fixture("tgi_stream.sse").split(b"\n\n"):
                if block:
                    yield block + b"\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/completions", completions, methods=["POST"])])


def test_huggingface_through_real_servers_with_the_openai_sdk() -> None:
    seen: list[dict[str, Any]] = []
    app = PortkeyMiddleware(not_found_app, allowed_custom_hosts=["127.0.0.1"], retry_backoff_ms=1)
    with serve(fake_tgi(seen)) as fake_url, serve(app) as gw:
        client = openai.OpenAI(
            base_url=gw + "/v1",
            api_key="hf_token",
            max_retries=0,
            default_headers={
                "x-portkey-provider": "huggingface",
                "x-portkey-custom-host": fake_url,
            },
        )
        done = client.completions.create(
            model="tgi", prompt="Say hi", max_tokens=8, stop="\n", logprobs=1
        )
        assert done.choices[0].text == " Hello there"
        assert done.choices[0].finish_reason == "stop"
        assert done.id.startswith("cmpl-")
        assert done.usage is not None
        assert done.usage.total_tokens == 5
        assert done.model_extra is not None
        assert done.model_extra["provider"] == "huggingface"
        assert seen[0]["auth"] == "Bearer hf_token"
        assert seen[0]["body"] == {
            "model": "tgi",
            "prompt": "Say hi",
            "max_tokens": 8,
            "stop": ["\n"],
        }

        chunks = list(client.completions.create(model="tgi", prompt="Say hi", stream=True))
        assert "".join(c.choices[0].text for c in chunks) == " Hello there"
        assert [c.choices[0].finish_reason for c in chunks] == [None, "stop"]
        assert len({c.id for c in chunks}) == 1

        with pytest.raises(openai.UnprocessableEntityError) as caught:
            client.completions.create(model="tgi", prompt="Say hi", temperature=0)
        error = caught.value.body
        assert isinstance(error, dict)
        assert error["message"].startswith("huggingface error: Input validation error")
        assert error["type"] == "validation"


async def test_client_set_provider_urls_need_an_allowed_host() -> None:
    """A Foundry URL sent by a client receives the provider key: only allowed hosts."""
    client, upstream = _gateway(lambda _r: httpx.Response(200, json={}))
    response = await client.post(
        "/v1/completions",
        json={"model": "m", "prompt": "p"},
        headers={
            "x-portkey-provider": "azure-ai",
            "authorization": "Bearer key",
            "x-portkey-azure-foundry-url": "https://evil.services.ai.azure.com/models",
            "x-portkey-azure-api-version": "2024-05-01-preview",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-portkey-azure-foundry-url"
    assert upstream.requests == []
