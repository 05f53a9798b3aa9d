"""Config sources and strict validation: JSON paths in errors, camelCase accepted,
registered configs and virtual keys."""

from __future__ import annotations

import json
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


async def _post(client: httpx.AsyncClient, config: Any, **headers: str) -> httpx.Response:
    value = config if isinstance(config, str) else json.dumps(config)
    return await client.post(
        "/v1/completions", json=BODY, headers={"x-portkey-config": value, **headers}
    )


@pytest.mark.parametrize(
    ("config", "param"),
    [
        ({"provider": "openai", "api_key": "k", "colour": "red"}, "x-portkey-config"),
        (
            {
                "strategy": {"mode": "fallback"},
                "targets": [
                    {"provider": "openai", "api_key": "k"},
                    {"provider": "openai", "weght": 1},
                ],
            },
            "x-portkey-config.targets[1]",
        ),
        (
            {
                "strategy": {"mode": "loadbalance"},
                "targets": [{"provider": "openai", "weight": "0.5"}],
            },
            "x-portkey-config.targets[0].weight",
        ),
        ({"strategy": {"mode": "fallback"}, "targets": []}, "x-portkey-config.targets"),
        (
            {"strategy": {"mode": "loadbalance"}, "targets": [{"provider": "openai", "weight": 0}]},
            "x-portkey-config.targets",
        ),
        (
            {"strategy": {"mode": "roundrobin"}, "targets": [{"provider": "openai"}]},
            "x-portkey-config.strategy.mode",
        ),
        ({"provider": "openai", "retry": {"attempts": 6}}, "x-portkey-config.retry.attempts"),
        ({"provider": "openai", "retry": {"attempts": "3"}}, "x-portkey-config.retry.attempts"),
        ({"provider": "openai", "request_timeout": 0}, "x-portkey-config.request_timeout"),
        ({"provider": "openai", "cache": {"mode": "exact"}}, "x-portkey-config.cache.mode"),
        ({"provider": "nope", "api_key": "k"}, "x-portkey-config.provider"),
        (
            {"strategy": {"mode": "fallback"}, "targets": [{"api_key": "k"}]},
            "x-portkey-config.targets[0].provider",
        ),
        ({"targets": [{"provider": "openai"}]}, "x-portkey-config.strategy"),
        ({"mode": "single", "options": [{"provider": "openai"}]}, "x-portkey-config"),
        (
            {"provider": "openai", "forward_headers": ["x-portkey-forward-headers"]},
            "x-portkey-config",
        ),
        (
            {
                "strategy": {"mode": "conditional", "conditions": [{"query": {}, "then": "ghost"}]},
                "targets": [{"name": "a", "provider": "openai"}],
            },
            "x-portkey-config.strategy.conditions[0].then",
        ),
        (
            {"provider": "openai", "custom_host": "http://169.254.169.254/v1"},
            "x-portkey-config.custom_host",
        ),
    ],
)
async def test_invalid_configs_are_400_with_the_json_path(
    config: dict[str, Any], param: str
) -> None:
    client, upstream = _gw()
    response = await _post(client, config)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"].startswith(param), response.json()
    assert upstream.requests == []


@pytest.mark.parametrize("value", ["{not json", "[1,2]", "pc-unknown", '"string"'])
async def test_config_header_that_is_neither_an_object_nor_a_known_id(value: str) -> None:
    client, _ = _gw()
    response = await _post(
        client, value, **{"x-portkey-provider": "openai", "authorization": "Bearer k"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-portkey-config"


async def test_camel_case_keys_are_accepted() -> None:
    client, upstream = _gw()
    config = {
        "provider": "openai",
        "apiKey": "sk-camel",
        "overrideParams": {"max_tokens": 3},
        "requestTimeout": 5000,
        "retry": {"attempts": 1, "onStatusCodes": [500]},
    }
    response = await _post(client, config)
    assert response.status_code == 200, response.text
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-camel"
    assert upstream.json()["max_tokens"] == 3  # inner keys of override_params stay as given


async def test_registered_config_by_id() -> None:
    config = {"provider": "openai", "api_key": "sk-registered", "override_params": {"user": "u"}}
    client, upstream = _gw(configs={"pc-prod": config})
    response = await _post(client, "pc-prod")
    assert response.status_code == 200
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-registered"
    assert upstream.json()["user"] == "u"


async def test_config_without_provider_adds_to_header_mode() -> None:
    client, upstream = _gw()
    response = await _post(
        client,
        {"override_params": {"max_tokens": 9}},
        **{"x-portkey-provider": "openai", "authorization": "Bearer sk-h"},
    )
    assert response.status_code == 200
    assert upstream.json()["max_tokens"] == 9
    assert response.headers["x-portkey-last-used-option-index"] == "config"


async def test_override_params_are_validated() -> None:
    client, _ = _gw()
    response = await _post(
        client, {"provider": "openai", "api_key": "k", "override_params": {"temperature": 9}}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "temperature"


async def test_virtual_keys_from_header_and_config() -> None:
    keys = {
        "azure-east": {
            "provider": "azure-openai",
            "api_key": "az-key",
            "options": {
                "resource_name": "res",
                "deployment_id": "dep",
                "api_version": "2024-02-01",
            },
        },
        "openai-prod": {"provider": "openai", "api_key": "sk-vk"},
    }
    client, upstream = _gw(virtual_keys=keys)
    response = await client.post(
        "/v1/completions", json=BODY, headers={"x-portkey-virtual-key": "azure-east"}
    )
    assert response.status_code == 200
    assert str(upstream.requests[0].url).startswith(
        "https://res.openai.azure.com/openai/deployments/dep/"
    )
    assert upstream.requests[0].headers["api-key"] == "az-key"
    response = await _post(client, {"virtual_key": "openai-prod"})
    assert response.status_code == 200
    assert upstream.requests[1].headers["authorization"] == "Bearer sk-vk"
    unknown = await client.post(
        "/v1/completions", json=BODY, headers={"x-portkey-virtual-key": "nope"}
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "x-portkey-virtual-key"
    unknown_in_config = await _post(client, {"virtual_key": "nope"})
    assert unknown_in_config.status_code == 400


async def test_config_targets_do_not_inherit_the_client_key() -> None:
    """A key sent for one provider must never travel to another provider's target."""
    client, upstream = _gw()
    response = await _post(
        client, {"provider": "together-ai"}, authorization="Bearer sk-openai-only"
    )
    assert response.status_code == 401
    assert upstream.requests == []


async def test_forward_headers_skip_hop_by_hop_host_and_portkey_headers() -> None:
    client, upstream = _gw()
    config = {
        "provider": "openai",
        "api_key": "k",
        "forward_headers": ["x-team", "host", "connection", "x-portkey-trace-id", "X-Other"],
    }
    response = await _post(
        client, config, **{"x-team": "search", "x-other": "o", "x-portkey-trace-id": "t"}
    )
    assert response.status_code == 200
    sent = upstream.requests[0].headers
    assert sent["x-team"] == "search"
    assert sent["x-other"] == "o"
    assert "x-portkey-trace-id" not in sent
    assert sent["host"] == "api.openai.com"
    header_self = await client.post(
        "/v1/completions",
        json=BODY,
        headers={
            "x-portkey-provider": "openai",
            "authorization": "Bearer k",
            "x-portkey-forward-headers": "x-a, x-portkey-forward-headers",
        },
    )
    assert header_self.status_code == 400
    assert header_self.json()["error"]["param"] == "x-portkey-forward-headers"


async def test_an_inline_config_is_parsed_once_and_stays_the_same_for_every_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from portkey_mw import config as config_module
    from portkey_mw import plan

    calls: list[str] = []
    real = config_module.parse_config

    def counting(raw: Any, options: Any) -> Any:
        calls.append(raw)
        return real(raw, options)

    monkeypatch.setattr(plan, "parse_config", counting)
    client, upstream = _gw()
    config = {"provider": "openai", "api_key": "sk-one", "override_params": {"max_tokens": 3}}
    for _ in range(3):
        response = await _post(client, config)
        assert response.status_code == 200, response.text
    assert len(calls) == 1
    assert [r.headers["authorization"] for r in upstream.requests] == ["Bearer sk-one"] * 3
    assert all(json.loads(r.content)["max_tokens"] == 3 for r in upstream.requests)
    # A different config is its own entry; an invalid one is refused every time.
    other = {"provider": "openai", "api_key": "sk-two"}
    assert (await _post(client, other)).status_code == 200
    assert upstream.requests[-1].headers["authorization"] == "Bearer sk-two"
    for _ in range(2):
        assert (await _post(client, {"provider": "openai", "colour": "red"})).status_code == 400
