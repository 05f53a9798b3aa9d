"""One ``completion`` event per intercepted request, with the documented fields, trace id in
contextvars, and no secrets or prompt text."""

from __future__ import annotations

import json
from typing import Any

import httpx
import structlog
from structlog.testing import capture_logs

from tests.helpers import gateway

OK = {
    "id": "c",
    "object": "text_completion",
    "created": 1,
    "model": "m-served",
    "choices": [
        {"text": "SECRET-COMPLETION-TEXT", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
}
SECRET = "sk-very-secret-provider-key"


async def test_one_event_with_fields_and_no_secret_or_prompt() -> None:
    client, _ = gateway(lambda r: httpx.Response(200, json=OK))
    with capture_logs() as logs:
        response = await client.post(
            "/v1/completions",
            json={"model": "m", "prompt": "SECRET-PROMPT-TEXT", "user": "body-user", "foo": 1},
            headers={
                "x-portkey-provider": "openai",
                "authorization": f"Bearer {SECRET}",
                "x-portkey-trace-id": "t-1",
                "x-portkey-metadata": '{"env": "test"}',
            },
        )
    assert response.status_code == 200
    events = [e for e in logs if e["event"] == "completion"]
    assert len(events) == 1
    event = events[0]
    assert event["log_level"] == "info"
    assert event["trace_id"] == "t-1"
    assert event["metadata"] == {"env": "test"}
    assert event["user"] == "body-user"
    assert event["provider"] == "openai"
    assert event["model"] == "m-served"
    assert event["target"] == "config"
    assert event["status"] == 200
    assert event["stream"] is False
    assert event["usage"] == OK["usage"]
    assert event["dropped_params"] == ["foo"]
    assert event["retry_count"] == 0
    assert event["cache_status"] == "DISABLED"
    assert event["latency_ms"] >= 0
    assert event["attempts"][0]["status"] == 200
    durations = [event[k] for k in ("latency_ms", "upstream_ms", "overhead_ms")]
    durations.append(event["attempts"][0]["upstream_ms"])
    assert all(d == round(d, 3) for d in durations)  # to the microsecond, every one
    text = json.dumps(logs, default=str)
    assert SECRET not in text
    assert "SECRET-PROMPT-TEXT" not in text
    assert "SECRET-COMPLETION-TEXT" not in text


async def test_levels_follow_status() -> None:
    client, _ = gateway(lambda r: httpx.Response(500, json={"error": {"message": "boom"}}))
    with capture_logs() as logs:
        await client.post(
            "/v1/completions",
            json={"model": "m", "prompt": "p"},
            headers={"x-portkey-provider": "openai", "authorization": "Bearer k"},
        )
        await client.post(
            "/v1/completions",
            json={"model": "m"},
            headers={"x-portkey-provider": "openai", "authorization": "Bearer k"},
        )
    levels = [(e["status"], e["log_level"]) for e in logs if e["event"] == "completion"]
    assert levels == [(500, "error"), (400, "warning")]


async def test_trace_id_is_in_contextvars_while_the_request_runs() -> None:
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(structlog.contextvars.get_contextvars().get("trace_id"))
        return httpx.Response(200, json=OK)

    client, _ = gateway(handler)
    await client.post(
        "/v1/completions",
        json={"model": "m", "prompt": "p"},
        headers={
            "x-portkey-provider": "openai",
            "authorization": "Bearer k",
            "x-portkey-trace-id": "ctx-trace",
        },
    )
    assert seen == ["ctx-trace"]
    assert "trace_id" not in structlog.contextvars.get_contextvars()
