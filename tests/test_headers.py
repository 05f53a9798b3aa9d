"""x-portkey-* request headers: provider, keys, gateway access keys, trace ids, metadata,
provider options, custom hosts."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.helpers import gateway

OK = {
    "id": "c",
    "object": "text_completion",
    "created": 1,
    "model": "m",
    "choices": [{"text": "x", "index": 0, "logprobs": None, "finish_reason": "stop"}],
}
BODY = {"model": "m", "prompt": "p"}


def _gw(**settings: Any) -> tuple[httpx.AsyncClient, Any]:
    return gateway(lambda r: httpx.Response(200, json=OK), **settings)


async def _post(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/v1/completions", json=BODY, headers=headers)


async def test_no_provider_says_how_to_choose_one() -> None:
    client, _ = _gw()
    response = await _post(client, {"authorization": "Bearer k"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "x-portkey-provider"
    assert "x-portkey-provider: openai" in error["message"]


async def test_unknown_provider_is_400_listing_the_known_ones() -> None:
    client, _ = _gw()
    response = await _post(client, {"x-portkey-provider": "nope", "authorization": "Bearer k"})
    assert response.status_code == 400
    assert "openai" in response.json()["error"]["message"]


async def test_no_key_is_401() -> None:
    client, upstream = _gw()
    response = await _post(client, {"x-portkey-provider": "openai"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert upstream.requests == []


async def test_malformed_authorization_is_401() -> None:
    client, _ = _gw()
    response = await _post(client, {"x-portkey-provider": "openai", "authorization": "Basic abc"})
    assert response.status_code == 401
    assert response.json()["error"]["param"] == "authorization"


async def test_x_portkey_api_key_is_the_provider_key_without_authorization() -> None:
    client, upstream = _gw()
    # The portkey-ai SDK sends an empty x-portkey-api-key alongside Authorization.
    response = await _post(client, {"x-portkey-provider": "openai", "x-portkey-api-key": "sk-pk"})
    assert response.status_code == 200
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-pk"
    await _post(
        client,
        {
            "x-portkey-provider": "openai",
            "x-portkey-api-key": "",
            "authorization": "Bearer sk-auth",
        },
    )
    assert upstream.requests[1].headers["authorization"] == "Bearer sk-auth"


async def test_gateway_access_keys() -> None:
    client, upstream = _gw(api_keys=["gw-key-1", "gw-key-2"])
    base = {"x-portkey-provider": "openai", "authorization": "Bearer sk-provider"}
    for given in (None, "", "wrong", "gw-key-1x"):
        headers = dict(base) if given is None else {**base, "x-portkey-api-key": given}
        response = await _post(client, headers)
        assert response.status_code == 401
        assert response.json()["error"]["param"] == "x-portkey-api-key"
    response = await _post(client, {**base, "x-portkey-api-key": "gw-key-2"})
    assert response.status_code == 200
    sent = upstream.requests[0].headers
    assert sent["authorization"] == "Bearer sk-provider"
    assert "x-portkey-api-key" not in sent


async def test_trace_id_precedence() -> None:
    client, _ = _gw()
    base = {"x-portkey-provider": "openai", "authorization": "Bearer k"}
    given = await _post(
        client,
        {**base, "x-portkey-trace-id": "my-trace", "traceparent": f"00-{'a' * 32}-{'b' * 16}-01"},
    )
    assert given.headers["x-portkey-trace-id"] == "my-trace"
    parent = await _post(client, {**base, "traceparent": f"00-{'a' * 32}-{'b' * 16}-01"})
    assert parent.headers["x-portkey-trace-id"] == "a" * 32
    zeros = await _post(client, {**base, "traceparent": f"00-{'0' * 32}-{'b' * 16}-01"})
    uuid.UUID(zeros.headers["x-portkey-trace-id"])
    generated = await _post(client, base)
    uuid.UUID(generated.headers["x-portkey-trace-id"])
    bad = await _post(client, {**base, "x-portkey-trace-id": "x" * 300})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "x-portkey-trace-id"


@pytest.mark.parametrize("value", ["not json", "[1]", '{"a": 1}', '{"a": {"b": "c"}}', '"s"'])
async def test_invalid_metadata_is_400(value: str) -> None:
    client, _ = _gw()
    response = await _post(
        client,
        {"x-portkey-provider": "openai", "authorization": "Bearer k", "x-portkey-metadata": value},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-portkey-metadata"


async def test_openai_organization_project_and_beta_headers_are_forwarded() -> None:
    client, upstream = _gw()
    await _post(
        client,
        {
            "x-portkey-provider": "openai",
            "authorization": "Bearer k",
            "x-portkey-openai-organization": "org-1",
            "openai-project": "proj-1",
            "openai-beta": "assistants=v2",
            "x-custom": "never-forwarded",
        },
    )
    sent = upstream.requests[0].headers
    assert sent["openai-organization"] == "org-1"
    assert sent["openai-project"] == "proj-1"
    assert sent["openai-beta"] == "assistants=v2"
    assert "x-custom" not in sent
    assert not any(k.startswith("x-portkey") for k in sent)


async def test_azure_options_from_headers_and_ad_token() -> None:
    client, upstream = _gw()
    headers = {
        "x-portkey-provider": "azure-openai",
        "x-portkey-azure-resource-name": "res",
        "x-portkey-azure-deployment-id": "dep 1",
        "x-portkey-azure-api-version": "2024-02-01",
        "x-portkey-azure-ad-token": "Bearer ad-tok",
    }
    response = await client.post("/v1/completions", json={**BODY, "seed": 1}, headers=headers)
    assert response.status_code == 200
    sent = upstream.requests[0]
    assert (
        str(sent.url)
        == "https://res.openai.azure.com/openai/deployments/dep%201/completions?api-version=2024-02-01"
    )
    assert sent.headers["authorization"] == "Bearer ad-tok"
    assert "api-key" not in sent.headers
    assert "seed" in upstream.json()  # Azure's GA completions API takes seed
    missing = await _post(
        client, {"x-portkey-provider": "azure-openai", "authorization": "Bearer k"}
    )
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "x-portkey-azure-resource-name"


async def test_custom_host_is_refused_unless_allowed() -> None:
    client, upstream = _gw(allowed_custom_hosts=["llm.internal:8080"])
    base = {"x-portkey-provider": "openai", "authorization": "Bearer k"}
    for host in (
        "http://169.254.169.254/v1",
        "http://llm.internal/v1",
        "file:///etc/passwd",
        "http://user:pw@llm.internal:8080/v1",
        "http://llm.internal:8080/v1?x=1",
        "not a url",
    ):
        response = await _post(client, {**base, "x-portkey-custom-host": host})
        assert response.status_code == 400, host
        assert response.json()["error"]["param"] == "x-portkey-custom-host"
    assert upstream.requests == []
    allowed = await _post(client, {**base, "x-portkey-custom-host": "http://LLM.internal:8080/v1/"})
    assert allowed.status_code == 200
    assert str(upstream.requests[0].url) == "http://llm.internal:8080/v1/completions"
