"""Real servers, real clients: a host app with the middleware under uvicorn on loopback, the
examples' fake OpenAI provider on another loopback port, and the openai / portkey-ai SDKs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from portkey_ai import AsyncPortkey, Portkey

from portkey_mw import PortkeyMiddleware
from tests.helpers import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import fake_provider


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str, list[dict[str, object]]]]:
    provider = fake_provider.create_app()
    host = FastAPI()

    @host.get("/own")
    def own() -> dict[str, str]:
        return {"own": "route"}

    host.add_middleware(PortkeyMiddleware, allowed_custom_hosts=["127.0.0.1"])
    with serve(provider) as provider_url, serve(host) as gateway_url:
        yield provider_url, gateway_url, provider.state.requests


def _client(servers: tuple[str, str, list[dict[str, object]]]) -> openai.OpenAI:
    provider_url, gateway_url, _ = servers
    return openai.OpenAI(
        base_url=f"{gateway_url}/v1",
        api_key="sk-integration",
        max_retries=0,
        default_headers={
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": f"{provider_url}/v1",
        },
    )


def test_openai_sdk_sync_completion_and_stream(
    servers: tuple[str, str, list[dict[str, object]]],
) -> None:
    client = _client(servers)
    completion = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="hi", max_tokens=5
    )
    assert completion.choices[0].text == " Hello from the fake provider."
    assert completion.usage is not None
    assert completion.usage.total_tokens == 9
    request = servers[2][-1]
    assert request["headers"]["authorization"] == "Bearer sk-integration"  # type: ignore[index]
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="hi",
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == " word0 word1 word2"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


async def test_openai_sdk_async_completion_and_stream(
    servers: tuple[str, str, list[dict[str, object]]],
) -> None:
    provider_url, gateway_url, _ = servers
    client = openai.AsyncOpenAI(
        base_url=f"{gateway_url}/v1",
        api_key="sk-integration",
        max_retries=0,
        default_headers={
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": f"{provider_url}/v1",
        },
    )
    completion = await client.completions.create(model="m", prompt="hi")
    assert completion.choices[0].finish_reason == "stop"
    stream = await client.completions.create(model="m", prompt="hi", stream=True)
    texts = [c.choices[0].text async for c in stream if c.choices]
    assert texts[:3] == [" word0", " word1", " word2"]
    await client.close()


def test_openai_sdk_sees_provider_errors_with_status(
    servers: tuple[str, str, list[dict[str, object]]],
) -> None:
    client = _client(servers)
    with pytest.raises(openai.RateLimitError) as info:
        client.completions.create(model="error-429", prompt="hi")
    assert info.value.status_code == 429
    assert "openai error: fake provider error 429" in str(info.value)
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="m", prompt="hi", temperature=5)
    assert bad.value.body["param"] == "temperature"  # type: ignore[index]


def test_portkey_sdk(servers: tuple[str, str, list[dict[str, object]]]) -> None:
    provider_url, gateway_url, _ = servers
    client = Portkey(
        base_url=f"{gateway_url}/v1",
        provider="openai",
        Authorization="Bearer sk-pk-sdk",
        custom_host=f"{provider_url}/v1",
        trace_id="trace-sdk",
        metadata={"_user": "u1"},
    )
    completion = client.completions.create(model="m", prompt="hi", max_tokens=3)
    assert completion.choices[0].text == " Hello from the fake provider."
    stream = client.completions.create(model="m", prompt="hi", stream=True)
    assert next(c.choices[0].text for c in stream if c.choices) == " word0"


async def test_async_portkey_sdk(servers: tuple[str, str, list[dict[str, object]]]) -> None:
    provider_url, gateway_url, _ = servers
    client = AsyncPortkey(
        base_url=f"{gateway_url}/v1",
        provider="openai",
        Authorization="Bearer sk-pk-sdk",
        custom_host=f"{provider_url}/v1",
    )
    completion = await client.completions.create(model="m", prompt="hi", max_tokens=3)
    assert completion.choices[0].text.strip() == "Hello from the fake provider."


def test_host_routes_still_served(servers: tuple[str, str, list[dict[str, object]]]) -> None:
    import httpx

    assert httpx.get(servers[1] + "/own").json() == {"own": "route"}
