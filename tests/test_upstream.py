"""Provider errors keep their status in the OpenAI shape; unreachable, unreadable and
oversized answers are 502s; nothing internal reaches the client."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.helpers import gateway

HEADERS = {"x-portkey-provider": "openai", "authorization": "Bearer sk-secret-test-key"}
BODY = {"model": "m", "prompt": "p"}


async def test_provider_error_keeps_status_with_provider_and_relayed_headers() -> None:
    error = {
        "error": {
            "message": "Rate limit",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    client, _ = gateway(
        lambda r: httpx.Response(
            429,
            json=error,
            headers={
                "retry-after": "3",
                "x-request-id": "req-1",
                "set-cookie": "s=1",
                "server": "edge",
                "x-portkey-provider": "spoofed",
                "connection": "close",
            },
        )
    )
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.status_code == 429
    assert response.json() == {
        "error": {
            "message": "openai error: Rate limit",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        },
        "provider": "openai",
    }
    assert response.headers["retry-after"] == "3"
    assert response.headers["x-request-id"] == "req-1"
    assert response.headers["x-portkey-provider"] == "openai"
    assert "set-cookie" not in response.headers
    assert "server" not in response.headers


async def test_html_error_body_becomes_a_message() -> None:
    client, _ = gateway(
        lambda r: httpx.Response(
            503, text="<html>Service Unavailable</html>", headers={"content-type": "text/html"}
        )
    )
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "openai error: <html>Service Unavailable</html>"


async def test_unreachable_provider_is_502_without_the_address() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connect ECONNREFUSED 10.1.2.3:443 (internal-llm.corp)")

    client, _ = gateway(refuse)
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.status_code == 502
    text = response.text
    assert "10.1.2.3" not in text
    assert "internal-llm" not in text
    assert "sk-secret" not in text
    assert response.json()["error"]["code"] == "upstream_unreachable"


@pytest.mark.parametrize(
    "content", [b"not json", b"", b'{"a":', b"[1,", b'"text', b"5 x", b'{"model": "m"} {}']
)
async def test_2xx_that_cannot_be_read_is_502(content: bytes) -> None:
    client, _ = gateway(lambda r: httpx.Response(200, content=content))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreadable"


@pytest.mark.parametrize("content", [b"[1]", b'"text"', b'{"model": 5, "usage": "many"}'])
async def test_relayed_2xx_json_of_any_shape_is_relayed_as_it_came(content: bytes) -> None:
    client, _ = gateway(lambda r: httpx.Response(200, content=content))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.status_code == 200
    assert response.content == content


async def test_rebuilt_provider_answer_without_choices_is_502() -> None:
    client, _ = gateway(lambda r: httpx.Response(200, json={"unexpected": True}))
    response = await client.post(
        "/v1/completions", json=BODY, headers={**HEADERS, "x-portkey-provider": "together-ai"}
    )
    assert response.status_code == 502


async def test_oversized_answer_is_502() -> None:
    client, _ = gateway(
        lambda r: httpx.Response(200, content=b"[" + b"1," * 5000 + b"1]"), max_response_bytes=1000
    )
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_too_large"


async def test_request_timeout_header_is_408_timeout_error() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(2)
        return httpx.Response(200, json={})

    client, _ = gateway(slow)
    response = await client.post(
        "/v1/completions", json=BODY, headers={**HEADERS, "x-portkey-request-timeout": "50"}
    )
    assert response.status_code == 408
    assert response.json()["error"] == {
        "message": "Request exceeded the timeout sent in the request: 50ms",
        "type": "timeout_error",
        "param": None,
        "code": None,
    }
    bad = await client.post(
        "/v1/completions", json=BODY, headers={**HEADERS, "x-portkey-request-timeout": "soon"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "x-portkey-request-timeout"


async def test_compatible_error_shapes() -> None:
    shapes = [
        (
            {"detail": [{"loc": ["body", "max_tokens"], "msg": "too big", "type": "value_error"}]},
            "anyscale error: body.max_tokens: too big",
        ),
        ({"detail": "Model not found"}, "anyscale error: Model not found"),
        ({"error": "plain text error"}, "anyscale error: plain text error"),
        ({"message": "top-level message"}, "anyscale error: top-level message"),
        ([1, 2], "anyscale error: [1,2]"),
    ]
    for body, message in shapes:
        client, _ = gateway(lambda r, b=body: httpx.Response(400, json=b))
        response = await client.post(
            "/v1/completions", json=BODY, headers={**HEADERS, "x-portkey-provider": "anyscale"}
        )
        assert response.status_code == 400
        assert response.json()["error"]["message"] == message
        assert response.json()["provider"] == "anyscale"


async def test_an_injected_clients_cookie_jar_never_reaches_later_requests() -> None:
    """httpx clients keep the cookies answers set; a gateway's requests must not carry them
    from one user to the next (a cookie the request forwards itself still goes)."""
    client, upstream = gateway(
        lambda r: httpx.Response(
            200,
            json={"id": "c", "object": "text_completion", "model": "m", "choices": []},
            headers={"set-cookie": "session=tenant-a; Path=/; Max-Age=3600"},
        )
    )
    for _ in range(2):
        response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
        assert response.status_code == 200
    assert [r.headers.get("cookie") for r in upstream.requests] == [None, None]
    forwarded = {**HEADERS, "x-portkey-forward-headers": "cookie", "cookie": "mine=1"}
    response = await client.post("/v1/completions", json=BODY, headers=forwarded)
    assert response.status_code == 200
    assert upstream.requests[-1].headers.get("cookie") == "mine=1"
