"""Strategies, retries and timeouts against fakes that fail on cue: MockTransport sequences
for the logic, and real loopback servers for refused connections, resets and delays."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from structlog.testing import capture_logs

from portkey_mw import PortkeyMiddleware
from tests.fakes import COMPLETION, ResettingServer, ScriptedProvider
from tests.helpers import free_port, gateway, not_found_app, serve, sse_events

BODY = {"model": "m", "prompt": "p"}


def sequence(*statuses: int, headers: dict[str, str] | None = None) -> Any:
    queue = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        if 200 <= status < 300:
            return httpx.Response(status, json=COMPLETION)
        return httpx.Response(
            status, json={"error": {"message": f"e{status}"}}, headers=headers or {}
        )

    return handler


def target(key: str = "", **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "api_key": f"sk-{key or 'k'}", **extra}


async def post(client: httpx.AsyncClient, config: dict[str, Any], **headers: str) -> httpx.Response:
    return await client.post(
        "/v1/completions", json=BODY, headers={"x-portkey-config": json.dumps(config), **headers}
    )


def keys(upstream: Any) -> list[str]:
    return [r.headers["authorization"].removeprefix("Bearer sk-") for r in upstream.requests]


async def test_fallback_moves_on_from_a_failure_and_reports_the_target() -> None:
    client, upstream = gateway(sequence(500, 200))
    config = {"strategy": {"mode": "fallback"}, "targets": [target("a"), target("b")]}
    response = await post(client, config)
    assert response.status_code == 200
    assert keys(upstream) == ["a", "b"]
    assert response.headers["x-portkey-last-used-option-index"] == "config.targets[1]"


async def test_fallback_on_status_codes_limits_when_to_move_on() -> None:
    client, upstream = gateway(sequence(400, 200))
    config = {
        "strategy": {"mode": "fallback", "on_status_codes": [429, 500]},
        "targets": [target("a"), target("b")],
    }
    response = await post(client, config)
    assert response.status_code == 400
    assert keys(upstream) == ["a"]


async def test_all_fallbacks_fail_returns_the_last_error() -> None:
    client, _ = gateway(sequence(500, 429))
    config = {"strategy": {"mode": "fallback"}, "targets": [target("a"), target("b")]}
    response = await post(client, config)
    assert response.status_code == 429
    assert response.json()["error"]["message"] == "openai error: e429"
    assert response.headers["x-portkey-last-used-option-index"] == "config.targets[1]"


async def test_nested_fallback_over_loadbalance_and_provider_header() -> None:
    client, upstream = gateway(sequence(503, 200))
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"strategy": {"mode": "loadbalance"}, "targets": [target("a", weight=0), target("b")]},
            {"provider": "together-ai", "api_key": "sk-c"},
        ],
    }
    response = await post(client, config)
    assert response.status_code == 200
    assert keys(upstream) == ["b", "c"]
    assert response.headers["x-portkey-provider"] == "together-ai"
    assert response.headers["x-portkey-last-used-option-index"] == "config.targets[1]"


async def test_loadbalance_is_weighted_and_weight_zero_drains() -> None:
    client, upstream = gateway(sequence(200))
    config = {
        "strategy": {"mode": "loadbalance"},
        "targets": [target("a", weight=3), target("b", weight=1), target("c", weight=0)],
    }
    for _ in range(400):
        assert (await post(client, config)).status_code == 200
    counts = {k: keys(upstream).count(k) for k in "abc"}
    assert counts["c"] == 0
    assert 240 <= counts["a"] <= 360  # expected 300; bounds are > 6 standard deviations


async def test_conditional_routing_on_metadata_and_params() -> None:
    client, upstream = gateway(sequence(200))
    config = {
        "strategy": {
            "mode": "conditional",
            "conditions": [
                {"query": {"metadata.tier": {"$eq": "paid"}}, "then": "paid"},
                {
                    "query": {
                        "$or": [
                            {"params.max_tokens": {"$gt": 100}},
                            {"params.model": {"$in": ["big"]}},
                        ]
                    },
                    "then": "big",
                },
            ],
            "default": "free",
        },
        "targets": [
            target("paid", name="paid"),
            target("big", name="big"),
            target("free", name="free"),
        ],
    }
    await post(client, config, **{"x-portkey-metadata": '{"tier": "paid"}'})
    await client.post(
        "/v1/completions",
        json={**BODY, "max_tokens": 500},
        headers={"x-portkey-config": json.dumps(config)},
    )
    await post(client, config, **{"x-portkey-metadata": '{"tier": "free"}'})
    assert keys(upstream) == ["paid", "big", "free"]


async def test_conditional_without_match_or_default_is_400() -> None:
    client, _ = gateway(sequence(200))
    config = {
        "strategy": {
            "mode": "conditional",
            "conditions": [{"query": {"metadata.tier": "paid"}, "then": "paid"}],
        },
        "targets": [target(name="paid")],
    }
    response = await post(client, config)
    assert response.status_code == 400
    bad = {
        "strategy": {
            "mode": "conditional",
            "conditions": [{"query": {"metadata.tier": {"$like": "x"}}, "then": "paid"}],
        },
        "targets": [target(name="paid")],
    }
    assert (await post(client, bad)).status_code == 400


async def test_retries_on_default_codes_and_counts_them() -> None:
    client, upstream = gateway(sequence(429, 503, 200))
    response = await post(client, target(retry={"attempts": 3}))
    assert response.status_code == 200
    assert len(upstream.requests) == 3
    assert response.headers["x-portkey-retry-attempt-count"] == "2"


async def test_retries_exhausted_is_minus_one_and_non_retriable_is_not_retried() -> None:
    client, upstream = gateway(sequence(500))
    response = await post(client, target(retry={"attempts": 2}))
    assert response.status_code == 500
    assert len(upstream.requests) == 3
    assert response.headers["x-portkey-retry-attempt-count"] == "-1"
    client, upstream = gateway(sequence(400))
    response = await post(client, target(retry={"attempts": 2}))
    assert len(upstream.requests) == 1
    assert response.headers["x-portkey-retry-attempt-count"] == "0"


async def test_on_status_codes_replace_the_defaults() -> None:
    client, upstream = gateway(sequence(429, 200))
    await post(client, target(retry={"attempts": 2, "on_status_codes": [500]}))
    assert len(upstream.requests) == 1
    client, upstream = gateway(sequence(418, 200))
    response = await post(client, target(retry={"attempts": 2, "on_status_codes": [418]}))
    assert response.status_code == 200
    assert len(upstream.requests) == 2


async def test_retry_after_is_honoured_and_capped() -> None:
    client, upstream = gateway(sequence(429, 200, headers={"retry-after-ms": "300"}))
    started = time.monotonic()
    response = await post(client, target(retry={"attempts": 1, "use_retry_after_headers": True}))
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
    client, upstream = gateway(
        sequence(429, 200, headers={"retry-after": "120"}), retry_after_cap_s=5
    )
    started = time.monotonic()
    response = await post(client, target(retry={"attempts": 3}))
    assert response.status_code == 429  # asked for longer than we may wait: answered at once
    assert response.headers["retry-after"] == "120"
    assert len(upstream.requests) == 1
    assert time.monotonic() - started < 2


async def test_backoff_grows_exponentially() -> None:
    client, _ = gateway(sequence(500, 500, 500, 200), retry_backoff_ms=100)
    started = time.monotonic()
    response = await post(client, target(retry={"attempts": 3}))
    assert response.status_code == 200
    # equal jitter: waits of at least 50 + 100 + 200 ms
    assert time.monotonic() - started >= 0.35


async def test_log_event_records_target_path_and_attempts() -> None:
    client, _ = gateway(sequence(500, 503, 200))
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [target("a"), target("b", retry={"attempts": 1})],
    }
    with capture_logs() as logs:
        await post(client, config)
    event = next(e for e in logs if e["event"] == "completion")
    assert event["target"] == "config.targets[1]"
    assert [(a["target"], a["status"]) for a in event["attempts"]] == [
        ("config.targets[0]", 500),
        ("config.targets[1]", 503),
        ("config.targets[1]", 200),
    ]
    assert event["retry_count"] == 1


# --- real loopback servers -------------------------------------------------------------


@pytest.fixture
def provider() -> Iterator[tuple[ScriptedProvider, str]]:
    fake = ScriptedProvider()
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
def live_gateway() -> Iterator[str]:
    app = PortkeyMiddleware(not_found_app, allowed_custom_hosts=["127.0.0.1"], retry_backoff_ms=10)
    with serve(app) as url:
        yield url


def live_target(url: str, name: str = "k", **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "api_key": f"sk-{name}", "custom_host": url + "/v1", **extra}


def test_timeout_is_408_per_attempt_and_fallback_moves_past_it(
    provider: tuple[ScriptedProvider, str], live_gateway: str
) -> None:
    fake, url = provider
    fake.script({"delay": 1.0}, {"status": 200})
    config = {
        "strategy": {"mode": "fallback"},
        "request_timeout": 200,
        "targets": [live_target(url, "slow"), live_target(url, "fast")],
    }
    started = time.monotonic()
    response = httpx.post(
        live_gateway + "/v1/completions",
        json=BODY,
        headers={"x-portkey-config": json.dumps(config)},
        timeout=10,
    )
    assert response.status_code == 200
    assert time.monotonic() - started < 0.9
    assert response.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    fake.script({"delay": 1.0})
    only = httpx.post(
        live_gateway + "/v1/completions",
        json=BODY,
        timeout=10,
        headers={
            "x-portkey-config": json.dumps(live_target(url)),
            "x-portkey-request-timeout": "100",
        },
    )
    assert only.status_code == 408
    assert only.json()["error"]["type"] == "timeout_error"


def test_reset_connections_are_retried(live_gateway: str) -> None:
    with ResettingServer(resets=1) as url:
        response = httpx.post(
            live_gateway + "/v1/completions",
            json=BODY,
            timeout=10,
            headers={"x-portkey-config": json.dumps(live_target(url, retry={"attempts": 2}))},
        )
        assert response.status_code == 200
        assert response.headers["x-portkey-retry-attempt-count"] == "1"
    with ResettingServer(resets=100) as url:
        failed = httpx.post(
            live_gateway + "/v1/completions",
            json=BODY,
            timeout=10,
            headers={"x-portkey-config": json.dumps(live_target(url))},
        )
        assert failed.status_code == 502
        assert "127.0.0.1" not in failed.text


def test_stream_deadline_covers_only_the_first_byte(
    provider: tuple[ScriptedProvider, str], live_gateway: str
) -> None:
    fake, url = provider
    fake.script({"stream": 5, "interval": 0.1})
    config = live_target(url, request_timeout=250)
    response = httpx.post(
        live_gateway + "/v1/completions",
        json={**BODY, "stream": True},
        timeout=10,
        headers={"x-portkey-config": json.dumps(config)},
    )
    events = sse_events(response.text)
    assert [e["choices"][0]["text"] for e in events[:-1]] == [f" t{i}" for i in range(5)]
    assert events[-1] == "[DONE]"


def test_stream_stalled_before_first_byte_falls_back(
    provider: tuple[ScriptedProvider, str], live_gateway: str
) -> None:
    fake, url = provider
    fake.script({"stream": 3, "stall_after": 0}, {"stream": 2})
    config = {
        "strategy": {"mode": "fallback"},
        "request_timeout": 300,
        "targets": [live_target(url, "a"), live_target(url, "b")],
    }
    response = httpx.post(
        live_gateway + "/v1/completions",
        json={**BODY, "stream": True},
        timeout=10,
        headers={"x-portkey-config": json.dumps(config)},
    )
    assert response.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    assert sse_events(response.text)[-1] == "[DONE]"


def test_fallback_from_refused_connection_through_the_openai_sdk(
    provider: tuple[ScriptedProvider, str], live_gateway: str
) -> None:
    fake, url = provider
    dead = f"http://127.0.0.1:{free_port()}"
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [live_target(dead, "dead"), live_target(url, "alive")],
    }
    client = openai.OpenAI(
        base_url=live_gateway + "/v1",
        api_key="unused",
        max_retries=0,
        default_headers={"x-portkey-config": json.dumps(config)},
    )
    raw = client.completions.with_raw_response.create(model="m", prompt="p")
    assert raw.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    assert raw.headers["x-portkey-provider"] == "openai"
    assert raw.parse().choices[0].text == " ok"
    fake.script({"stream": 3})
    with client.completions.with_streaming_response.create(
        model="m", prompt="p", stream=True
    ) as streamed:
        assert streamed.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
        texts = [c.choices[0].text for c in streamed.parse() if c.choices]
    assert texts == [" t0", " t1", " t2"]
    assert fake.seen[-1]["headers"]["authorization"] == "Bearer sk-alive"


async def test_n_is_fanned_out_in_openai_order_for_providers_without_n() -> None:
    """github takes prompt lists but not n: one call per sample, indexes prompt-major."""
    calls: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sample = len(calls)
        calls.append(body)
        choices = [
            {"text": f"{p}-s{sample}", "index": i, "logprobs": None, "finish_reason": "stop"}
            for i, p in enumerate(body["prompt"])
        ]
        usage = {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
        return httpx.Response(200, json={**COMPLETION, "choices": choices, "usage": usage})

    client, _ = gateway(handler)
    response = await client.post(
        "/v1/completions",
        json={"model": "m", "prompt": ["a", "b"], "n": 2},
        headers={"x-portkey-provider": "github", "authorization": "Bearer k"},
    )
    assert response.status_code == 200
    assert all("n" not in c for c in calls)
    body = response.json()
    assert [(c["index"], c["text"][0]) for c in body["choices"]] == [
        (0, "a"),
        (1, "a"),
        (2, "b"),
        (3, "b"),
    ]
    assert body["usage"]["total_tokens"] == 8
    stream = await client.post(
        "/v1/completions",
        json={"model": "m", "prompt": "a", "n": 2, "stream": True},
        headers={"x-portkey-provider": "github", "authorization": "Bearer k"},
    )
    assert stream.status_code == 400
    assert stream.json()["error"]["param"] == "n"
