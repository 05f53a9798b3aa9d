"""The completion event as a product surface: schema for every kind of request, host logging
integration (stdlib handlers and structlog defaults), W3C trace context, OpenTelemetry
spans, the overhead header, redaction and opt-in prompt logging."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import msgspec
import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from portkey_mw.events import CompletionEvent, mask, redact_secrets
from tests.fakes import COMPLETION
from tests.helpers import gateway

SECRETS = ["sk-observability-secret-0001", "sk-config-secret-0002", "gw-access-secret-0003"]
BODY = {"model": "m", "prompt": "p"}


def stream_body() -> bytes:
    chunk = {
        **COMPLETION,
        "choices": [{"text": " hi", "index": 0, "logprobs": None, "finish_reason": "stop"}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"


def upstream(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if body["model"] == "fail":
        return httpx.Response(500, json={"error": {"message": "boom"}})
    if body.get("stream"):
        return httpx.Response(
            200, content=stream_body(), headers={"content-type": "text/event-stream"}
        )
    return httpx.Response(200, json=COMPLETION)


async def test_every_kind_of_request_emits_one_event_matching_the_schema() -> None:
    client, _ = gateway(upstream, api_keys=[SECRETS[2]])
    base = {
        "x-portkey-api-key": SECRETS[2],
        "x-portkey-provider": "openai",
        "authorization": f"Bearer {SECRETS[0]}",
        "x-portkey-metadata": '{"_user": "u9"}',
    }
    retry = {"provider": "openai", "api_key": SECRETS[1], "retry": {"attempts": 1}}
    fallback = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "openai", "api_key": SECRETS[1], "override_params": {"model": "fail"}},
            {"provider": "openai", "api_key": SECRETS[1]},
        ],
    }
    cached = {"provider": "openai", "api_key": SECRETS[1], "cache": {"mode": "simple"}}
    requests: list[tuple[dict[str, Any], dict[str, str], int]] = [
        (BODY, base, 200),  # success
        ({**BODY, "stream": True}, base, 200),  # stream
        ({"model": "fail", "prompt": "p"}, base, 500),  # provider error
        ({"model": 1}, base, 400),  # bad input
        ({"model": "fail", "prompt": "p"}, {**base, "x-portkey-config": json.dumps(retry)}, 500),
        (BODY, {**base, "x-portkey-config": json.dumps(fallback)}, 200),  # fallback
        (BODY, {**base, "x-portkey-config": json.dumps(cached)}, 200),  # cache miss
        (BODY, {**base, "x-portkey-config": json.dumps(cached)}, 200),  # cache hit
        (BODY, {**base, "x-portkey-api-key": "wrong"}, 401),  # rejected gateway key
    ]
    bodies: list[str] = []
    with capture_logs() as logs:
        for body, headers, status in requests:
            response = await client.post("/v1/completions", json=body, headers=headers)
            assert response.status_code == status, response.text
            bodies.append(response.text + json.dumps(dict(response.headers)))
            await asyncio.sleep(0)
    events = [e for e in logs if e["event"] == "completion"]
    assert len(events) == len(requests)
    for event in events:
        fields = {k: v for k, v in event.items() if k != "log_level"}
        msgspec.convert(fields, CompletionEvent, strict=True)  # raises on a schema drift
        assert len(event["span_id"]) == 16
    assert [e["cache_status"] for e in events[6:8]] == ["MISS", "HIT"]
    assert events[4]["retry_count"] == -1
    assert [a["status"] for a in events[4]["attempts"]] == [500, 500]
    assert events[5]["target"] == "config.targets[1]"
    assert events[0]["user"] == "u9"
    assert events[0]["overhead_ms"] >= 0
    assert "ttft_ms" in events[1]
    text = json.dumps(logs, default=str) + "".join(bodies)
    for secret in SECRETS:
        assert secret not in text


async def test_attempts_are_debug_events() -> None:
    client, _ = gateway(upstream)
    config = {"provider": "openai", "api_key": "k", "retry": {"attempts": 1}}
    with capture_logs() as logs:
        await client.post(
            "/v1/completions",
            json={"model": "fail", "prompt": "p"},
            headers={"x-portkey-config": json.dumps(config)},
        )
    attempts = [e for e in logs if e["event"] == "completion_attempt"]
    assert [(e["attempt"], e["status"], e["log_level"]) for e in attempts] == [
        (0, 500, "debug"),
        (1, 500, "debug"),
    ]


async def test_host_routing_structlog_through_stdlib_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            redact_secrets,
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    try:
        client, _ = gateway(upstream)
        with caplog.at_level(logging.INFO, logger="portkey_mw"):
            await client.post(
                "/v1/completions",
                json=BODY,
                headers={
                    "x-portkey-provider": "openai",
                    "authorization": "Bearer k",
                    "x-portkey-trace-id": "t-std",
                },
            )
        records = [
            r for r in caplog.records if r.name == "portkey_mw" and r.getMessage() == "completion"
        ]
        assert len(records) == 1
        assert records[0].levelno == logging.INFO
        assert records[0].trace_id == "t-std"  # type: ignore[attr-defined]
    finally:
        structlog.reset_defaults()


async def test_structlog_defaults_print_the_event(capsys: pytest.CaptureFixture[str]) -> None:
    structlog.reset_defaults()
    client, _ = gateway(upstream)
    await client.post(
        "/v1/completions",
        json=BODY,
        headers={
            "x-portkey-provider": "openai",
            "authorization": "Bearer k",
            "x-portkey-trace-id": "t-default",
        },
    )
    out = capsys.readouterr().out
    assert "completion" in out
    assert "t-default" in out


async def test_traceparent_is_sent_upstream_as_a_child_span() -> None:
    client, recorder = gateway(upstream)
    parent = f"00-{'ab' * 16}-{'cd' * 8}-01"
    response = await client.post(
        "/v1/completions",
        json=BODY,
        headers={
            "x-portkey-provider": "openai",
            "authorization": "Bearer k",
            "traceparent": parent,
            "tracestate": "vendor=1",
        },
    )
    assert response.headers["x-portkey-trace-id"] == "ab" * 16
    sent = recorder.requests[0].headers
    version, trace_id, span_id, flags = sent["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", "ab" * 16, "01")
    assert span_id != "cd" * 8
    assert sent["tracestate"] == "vendor=1"
    await client.post(
        "/v1/completions",
        json=BODY,
        headers={"x-portkey-provider": "openai", "authorization": "Bearer k"},
    )
    assert "traceparent" not in recorder.requests[1].headers  # "auto": only continue a trace


async def test_always_propagate_starts_a_trace_from_the_generated_id() -> None:
    client, recorder = gateway(upstream, propagate_trace_context="always")
    response = await client.post(
        "/v1/completions",
        json=BODY,
        headers={"x-portkey-provider": "openai", "authorization": "Bearer k"},
    )
    trace_id = response.headers["x-portkey-trace-id"].replace("-", "")
    assert recorder.requests[0].headers["traceparent"].split("-")[1] == trace_id


async def test_opentelemetry_spans_per_request_and_attempt() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder_client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    from portkey_mw import PortkeyMiddleware
    from tests.helpers import Upstream, not_found_app

    recorder = Upstream(upstream)
    recorder_client = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    app = PortkeyMiddleware(not_found_app, http_client=recorder_client, tracer_provider=provider)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    response = await client.post(
        "/v1/completions",
        json=BODY,
        headers={"x-portkey-provider": "openai", "authorization": "Bearer k"},
    )
    assert response.status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    request_span, attempt_span = spans["portkey_mw completion"], spans["text_completion m"]
    assert attempt_span.parent.span_id == request_span.context.span_id
    assert attempt_span.attributes["gen_ai.system"] == "openai"
    assert attempt_span.attributes["gen_ai.usage.input_tokens"] == 1
    assert request_span.attributes["http.response.status_code"] == 200
    trace_hex = format(request_span.context.trace_id, "032x")
    assert response.headers["x-portkey-trace-id"] == trace_hex
    traceparent = recorder.requests[0].headers["traceparent"]
    assert traceparent.split("-")[2] == format(attempt_span.context.span_id, "016x")


async def test_overhead_header_is_opt_in() -> None:
    client, _ = gateway(upstream)
    headers = {"x-portkey-provider": "openai", "authorization": "Bearer k"}
    plain = await client.post("/v1/completions", json=BODY, headers=headers)
    assert "x-portkey-overhead-ms" not in plain.headers
    client, _ = gateway(upstream, overhead_header=True)
    timed = await client.post("/v1/completions", json=BODY, headers=headers)
    assert float(timed.headers["x-portkey-overhead-ms"]) >= 0


async def test_prompts_and_completions_are_logged_only_when_opted_in() -> None:
    headers = {"x-portkey-provider": "openai", "authorization": "Bearer k"}
    client, _ = gateway(upstream)
    with capture_logs() as logs:
        await client.post(
            "/v1/completions", json={"model": "m", "prompt": "PROMPT-TEXT"}, headers=headers
        )
    assert "PROMPT-TEXT" not in json.dumps(logs)
    client, _ = gateway(upstream, log_prompts=True, log_text_max_chars=5)
    with capture_logs() as logs:
        await client.post(
            "/v1/completions", json={"model": "m", "prompt": "PROMPT-TEXT"}, headers=headers
        )
        await client.post(
            "/v1/completions", json={"model": "m", "prompt": "x", "stream": True}, headers=headers
        )
    events = [e for e in logs if e["event"] == "completion"]
    assert events[0]["prompt"] == "PROMP"
    assert events[0]["completion"] == " ok"
    assert events[1]["completion"] == " hi"


def test_redaction_processor_masks_secret_named_keys_anywhere() -> None:
    event = {
        "event": "x",
        "headers": {
            "Authorization": "Bearer sk-abcdefghijklmnop",
            "x-api-key": "short",
            "accept": "*/*",
        },
        "options": [{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG"}],
        "api_key": None,
    }
    out = redact_secrets(None, "info", event)
    assert out["headers"]["Authorization"] == "sk********nop"
    assert out["headers"]["x-api-key"] == "********"
    assert out["headers"]["accept"] == "*/*"
    assert out["options"][0]["aws_secret_access_key"] == "wJ********ENG"
    assert mask("Bearer sk-1234567890xyz") == "sk********xyz"


@pytest.mark.parametrize("bad", ["a=1\r\nx-injected: 1", "a=1\nb", "vendor=\x00", "välue=1"])
def test_a_tracestate_that_cannot_be_sent_is_dropped(bad: str) -> None:
    """An ASGI host may hand over any str; a header line must never be smuggled upstream."""
    from portkey_mw.tracing import Tracer

    parent = f"00-{'ab' * 16}-{'cd' * 8}-01"
    trace = Tracer("auto").start("ab" * 16, "cd" * 8, {"traceparent": parent, "tracestate": bad})
    assert trace.tracestate is None
    assert "tracestate" not in trace.upstream_headers(None)
    for good in ("vendor=1,other=x", "congo=t61rcWkgMzE,\trojo=00f067aa0ba902b7"):
        kept = Tracer("auto").start("ab" * 16, "cd" * 8, {"tracestate": good})
        assert kept.tracestate == good
