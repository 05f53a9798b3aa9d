"""Bedrock (InvokeModel): per-family request bodies, URL encoding, region, SigV4 signing and
credentials (headers, API key, the AWS chain), response and error mapping, with Bedrock's
native payloads in fixtures/bedrock. Streams are in test_bedrock_stream.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from portkey_mw.providers import REGISTRY
from portkey_mw.providers.base import ResponseContext, Target
from tests.helpers import gateway
from tests.providers.test_bedrock_wire import (
    KEY_ID,
    SECRET,
    no_aws_environment,
    sigv4_scope,
    verify_sigv4,
)

__all__ = ["no_aws_environment"]  # the fixture, used through autouse below

FIXTURES = Path(__file__).parent / "fixtures" / "bedrock"
PROVIDER = REGISTRY["bedrock"]
AWS = {
    "x-portkey-provider": "bedrock",
    "x-portkey-aws-access-key-id": KEY_ID,
    "x-portkey-aws-secret-access-key": SECRET,
    "x-portkey-aws-region": "us-west-2",
}
BODY = {"model": "anthropic.claude-v2:1", "prompt": "Say hello", "max_tokens": 16}


@pytest.fixture(autouse=True)
def _clean_aws(no_aws_environment: None) -> None:
    return None


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def ok(name: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        200, content=fixture(name), headers={"content-type": "application/json", **headers}
    )


def raw_path(request: httpx.Request) -> str:
    return request.url.raw_path.decode()


def ctx(model: str, **headers: str) -> ResponseContext:
    return ResponseContext(
        provider="bedrock",
        params={"model": model},
        headers=headers,
        clock=lambda: 1_700_000_000,
        new_id=lambda: "cmpl-test",
    )


# --- request mapping, per family -----------------------------------------------------------------

REQUESTS = json.loads(fixture("requests.json"))


@pytest.mark.parametrize("case", REQUESTS["cases"], ids=lambda c: str(c["model"]))
async def test_family_request_golden(case: dict[str, Any]) -> None:
    client, upstream = gateway(lambda r: ok("invoke_anthropic.json"))
    params = {**REQUESTS["params"], "model": case["model"]}
    await client.post("/v1/completions", json=params, headers=AWS)
    sent = upstream.requests[0]
    assert sent.url.host == "bedrock-runtime.us-west-2.amazonaws.com"
    assert raw_path(sent) == case["path"]
    assert upstream.json() == case["body"]
    _, dropped = PROVIDER.build_request(Target(PROVIDER, options=_options()), params)
    assert sorted(dropped) == case["dropped"]


def _options(**extra: str) -> dict[str, str]:
    return {"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET, **extra}


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("us.anthropic.claude-v2:1", "/model/us.anthropic.claude-v2%3A1/invoke"),
        (
            "global.meta.llama3-8b-instruct-v1:0",
            "/model/global.meta.llama3-8b-instruct-v1%3A0/invoke",
        ),
        # Already URL-encoded by the client: encoded once, not twice.
        ("anthropic.claude-v2%3A1", "/model/anthropic.claude-v2%3A1/invoke"),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2:1",
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fanthropic.claude-v2%3A1/invoke",
        ),
    ],
)
def test_model_ids_in_the_path(model: str, path: str) -> None:
    request, _ = PROVIDER.build_request(
        Target(PROVIDER, options=_options()), {**BODY, "model": model}
    )
    assert request.url == "https://bedrock-runtime.us-east-1.amazonaws.com" + path
    # The family is read past the region prefix and out of the ARN.
    family_field = "max_gen_len" if ".meta." in model else "max_tokens_to_sample"
    assert family_field in json.loads(request.body)


async def test_unknown_family_and_bad_region_are_400s() -> None:
    client, upstream = gateway(lambda r: ok("invoke_anthropic.json"))
    unknown = await client.post(
        "/v1/completions", json={**BODY, "model": "deepseek.r1-v1:0"}, headers=AWS
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "model"
    region = await client.post(
        "/v1/completions", json=BODY, headers={**AWS, "x-portkey-aws-region": "evil.com/x#"}
    )
    assert region.status_code == 400
    assert region.json()["error"]["param"] == "x-portkey-aws-region"
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        ("anthropic.claude-v2", "temperature", 1.5),
        ("meta.llama3-8b-instruct-v1:0", "max_tokens", 4096),
        ("ai21.j2-mid-v1", "presence_penalty", -1),
        ("mistral.mistral-7b-instruct-v0:2", "top_k", 0),
    ],
)
async def test_out_of_family_range_is_a_400(model: str, field: str, value: Any) -> None:
    client, upstream = gateway(lambda r: ok("invoke_anthropic.json"))
    response = await client.post(
        "/v1/completions", json={**BODY, "model": model, field: value}, headers=AWS
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == field
    assert upstream.requests == []


async def test_claude_max_tokens_is_required_and_titan_keeps_zero_temperature() -> None:
    client, upstream = gateway(lambda r: ok("invoke_anthropic.json"))
    await client.post("/v1/completions", json={**BODY, "max_tokens": None}, headers=AWS)
    assert upstream.json()["max_tokens_to_sample"] == 16
    titan = {"model": "amazon.titan-text-lite-v1", "prompt": "p", "temperature": 0, "stop": "|"}
    await client.post("/v1/completions", json=titan, headers=AWS)
    assert upstream.json() == {
        "inputText": "p",
        "textGenerationConfig": {"temperature": 0, "stopSequences": ["|"]},
    }


# --- signing and credentials ----------------------------------------------------------------------


async def test_sigv4_signs_what_is_sent() -> None:
    client, upstream = gateway(lambda r: ok("invoke_anthropic.json"))
    await client.post("/v1/completions", json=BODY, headers=AWS)
    sent = upstream.requests[0]
    assert verify_sigv4(raw_path(sent), sent.headers, sent.content)
    assert sigv4_scope(sent.headers) == {
        "key_id": KEY_ID,
        "date": sent.headers["x-amz-date"][:8],
        "region": "us-west-2",
        "service": "bedrock",
        "signed": "content-type;host;x-amz-content-sha256;x-amz-date",
    }
    assert "stream" not in json.loads(sent.content)
    assert "model" not in json.loads(sent.content)


async def test_custom_host_port_and_session_token_are_signed() -> None:
    client, upstream = gateway(
        lambda r: ok("invoke_anthropic.json"), allowed_custom_hosts=["127.0.0.1"]
    )
    headers = {
        **AWS,
        "x-portkey-aws-session-token": "FwoGZXIvYXdzEJr//token",
        "x-portkey-custom-host": "http://127.0.0.1:18999/base",
    }
    await client.post("/v1/completions", json=BODY, headers=headers)
    sent = upstream.requests[0]
    assert str(sent.url) == "http://127.0.0.1:18999/base/model/anthropic.claude-v2%3A1/invoke"
    assert sent.headers["host"] == "127.0.0.1:18999"
    assert sent.headers["x-amz-security-token"] == "FwoGZXIvYXdzEJr//token"
    assert "x-amz-security-token" in sigv4_scope(sent.headers)["signed"].split(";")
    assert verify_sigv4(raw_path(sent), sent.headers, sent.content)


async def test_api_key_is_sent_as_bearer_unsigned() -> None:
    client, upstream = gateway(lambda r: ok("invoke_anthropic.json"))
    headers = {"x-portkey-provider": "bedrock", "authorization": "Bearer ABSK-bedrock-key"}
    response = await client.post("/v1/completions", json=BODY, headers=headers)
    assert response.status_code == 200
    sent = upstream.requests[0]
    assert sent.headers["authorization"] == "Bearer ABSK-bedrock-key"
    assert "x-amz-date" not in sent.headers
    assert sent.url.host == "bedrock-runtime.us-east-1.amazonaws.com"


async def test_explicit_aws_keys_win_over_an_api_key() -> None:
    client, upstream = gateway(lambda r: ok("invoke_anthropic.json"))
    await client.post(
        "/v1/completions", json=BODY, headers={**AWS, "authorization": "Bearer ABSK-x"}
    )
    assert upstream.requests[0].headers["authorization"].startswith("AWS4-HMAC-SHA256 ")


async def test_the_standard_credential_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envSecret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "envToken")
    client, upstream = gateway(lambda r: ok("invoke_anthropic.json"))
    await client.post("/v1/completions", json=BODY, headers={"x-portkey-provider": "bedrock"})
    sent = upstream.requests[0]
    assert sigv4_scope(sent.headers)["key_id"] == "AKIAENVIRONMENT00001"
    assert sent.headers["x-amz-security-token"] == "envToken"
    assert verify_sigv4(raw_path(sent), sent.headers, sent.content, "envSecret")
    # The operator can refuse to lend the server's own credentials to clients.
    client, upstream = gateway(lambda r: ok("invoke_anthropic.json"), ambient_credentials=False)
    refused = await client.post(
        "/v1/completions", json=BODY, headers={"x-portkey-provider": "bedrock"}
    )
    assert refused.status_code == 401
    assert upstream.requests == []


async def test_no_credentials_anywhere_is_a_401() -> None:
    client, upstream = gateway(lambda r: ok("invoke_anthropic.json"))
    response = await client.post(
        "/v1/completions", json=BODY, headers={"x-portkey-provider": "bedrock"}
    )
    assert response.status_code == 401
    assert "x-portkey-aws-access-key-id" in response.json()["error"]["message"]
    half = {"x-portkey-provider": "bedrock", "x-portkey-aws-access-key-id": KEY_ID}
    response = await client.post("/v1/completions", json=BODY, headers=half)
    assert response.status_code == 401
    assert response.json()["error"]["param"] == "x-portkey-aws-secret-access-key"
    assert upstream.requests == []


async def test_missing_botocore_is_a_clear_400(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "botocore" or m.startswith("botocore.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "botocore", None)
    client, upstream = gateway(lambda r: ok("invoke_anthropic.json"))
    response = await client.post("/v1/completions", json=BODY, headers=AWS)
    assert response.status_code == 400
    assert "portkey_mw[bedrock]" in response.json()["error"]["message"]
    assert upstream.requests == []


def test_botocore_is_not_imported_by_the_module() -> None:
    import subprocess

    code = "import sys, portkey_mw.providers; assert 'botocore' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- response mapping, per family ---------------------------------------------------------------

COUNTS = {"x-amzn-bedrock-input-token-count": "12", "x-amzn-bedrock-output-token-count": "5"}


@pytest.mark.parametrize(
    ("model", "name", "text", "finish", "usage", "completion_id"),
    [
        ("anthropic.claude-v2:1", "invoke_anthropic.json", " Hello!", "stop", (12, 5), None),
        (
            "cohere.command-text-v14",
            "invoke_cohere.json",
            " Hello, wörld",
            "length",
            (12, 5),
            "3fa2d8f1-0c6d-4a63-bd5c-27b0c0a1c9e2",
        ),
        ("ai21.j2-ultra-v1", "invoke_ai21.json", " Hello!", "stop", (2, 3), "1234"),
        (
            "amazon.titan-text-express-v1",
            "invoke_amazon.json",
            "Hello there!",
            "length",
            (3, 4),
            None,
        ),
        ("meta.llama3-8b-instruct-v1:0", "invoke_meta.json", " Hello!", "stop", (5, 3), None),
        (
            "mistral.mistral-7b-instruct-v0:2",
            "invoke_mistral.json",
            " Hello!",
            "length",
            (12, 5),
            None,
        ),
    ],
)
def test_family_response_golden(
    model: str,
    name: str,
    text: str,
    finish: str,
    usage: tuple[int, int],
    completion_id: str | None,
) -> None:
    assert PROVIDER.map_response is not None
    body = json.loads(fixture(name))
    # Families whose body has no counts read them from the headers; the others from the body.
    headers = COUNTS if usage == (12, 5) else {}
    mapped = PROVIDER.map_response(body, ctx(model, **headers))
    assert mapped == {
        "id": completion_id or "cmpl-test",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": model,
        "provider": "bedrock",
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }


async def test_response_through_the_gateway_uses_header_usage() -> None:
    client, _ = gateway(lambda r: ok("invoke_meta.json", **COUNTS))
    response = await client.post(
        "/v1/completions", json={**BODY, "model": "us.meta.llama3-8b-instruct-v1:0"}, headers=AWS
    )
    body = response.json()
    assert body["model"] == "us.meta.llama3-8b-instruct-v1:0"
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    assert response.headers["x-amzn-bedrock-input-token-count"] == "12"


async def test_prompt_list_fans_out_one_call_per_prompt() -> None:
    client, upstream = gateway(lambda r: ok("invoke_anthropic.json", **COUNTS))
    response = await client.post(
        "/v1/completions", json={**BODY, "prompt": ["A", "B"]}, headers=AWS
    )
    body = response.json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["total_tokens"] == 34
    assert len(upstream.requests) == 2
    assert all(verify_sigv4(raw_path(r), r.headers, r.content) for r in upstream.requests)


async def test_unreadable_answer_is_a_502() -> None:
    client, _ = gateway(lambda r: httpx.Response(200, json={"what": 1}))
    response = await client.post("/v1/completions", json=BODY, headers=AWS)
    assert response.status_code == 502


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "message"),
    [
        (429, "error_429.json", "Too many requests, please wait before trying again."),
        (
            400,
            "error_400.json",
            "Malformed input request: #: extraneous key [metadata] is not "
            "permitted, please reformat your input and try again.",
        ),
    ],
)
async def test_error_mapping(status: int, name: str, message: str) -> None:
    client, _ = gateway(
        lambda r: httpx.Response(
            status,
            content=fixture(name),
            headers={"content-type": "application/json", "x-amzn-errortype": "X:http://x/"},
        )
    )
    response = await client.post("/v1/completions", json=BODY, headers=AWS)
    assert response.status_code == status
    assert response.json() == {
        "error": {
            "message": f"bedrock error: {message}",
            "type": None,
            "param": None,
            "code": None,
        },
        "provider": "bedrock",
    }


def test_error_with_capital_message_and_unknown_shapes() -> None:
    detail = PROVIDER.map_error({"Message": "User: x is not authorized"}, ctx("anthropic.x"))
    assert detail.message == "User: x is not authorized"
    assert PROVIDER.map_error("<html>bad gateway</html>", ctx("anthropic.x")).message == (
        "<html>bad gateway</html>"
    )
