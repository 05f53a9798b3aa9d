"""No secret in any log line or any answer: a suite-wide check.

A representative run (success, stream, provider error, bad input, retry, fallback, Bedrock
with AWS keys and a session token, a rejected gateway access key, a refused custom host, a
timeout, an unreachable provider, virtual keys and inline-config keys) with distinctive
secret values. Everything the run produced is collected: every structlog event (as dicts
and as the JSON lines a production config renders, tracebacks included), every stdlib log
record, every response body and header, and what was printed. No secret may appear, nor any
8-character piece of one (so no prefix, suffix or middle either).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import httpx
import pytest
import structlog

from portkey_mw import PortkeyMiddleware
from portkey_mw.providers.bedrock.signing import reset_credential_cache
from tests.faults_fakes import COMPLETION
from tests.helpers import free_port, gateway, not_found_app

_RNG = random.Random(8)
_ALPHABET = "GHJKMNPQRSTVWXYZ"  # not hex: no 8-character piece can look like a trace id


def _secret(prefix: str) -> str:
    """A distinctive secret: a public prefix (< 8 characters) and 28 random letters."""
    return prefix + "".join(_RNG.choice(_ALPHABET) for _ in range(28))


PROVIDER_KEY = _secret("sk-pv-")
X_PORTKEY_KEY = _secret("sk-xk-")  # a provider key sent as x-portkey-api-key
GATEWAY_KEY = _secret("pk-gw-")
WRONG_GATEWAY_KEY = _secret("pk-bd-")
VIRTUAL_KEY_SECRET = _secret("sk-vk-")
CONFIG_KEY_A = _secret("sk-ca-")
CONFIG_KEY_B = _secret("sk-cb-")
ANTHROPIC_KEY = _secret("sk-an-")
AZURE_AD_TOKEN = _secret("eyJ-a-")
AWS_SECRET = _secret("aws/s+")
AWS_SESSION_TOKEN = _secret("FwoG/")
SECRETS = {
    "provider key": PROVIDER_KEY,
    "x-portkey-api-key provider key": X_PORTKEY_KEY,
    "gateway access key": GATEWAY_KEY,
    "rejected gateway access key": WRONG_GATEWAY_KEY,
    "virtual key secret": VIRTUAL_KEY_SECRET,
    "config key A": CONFIG_KEY_A,
    "config key B": CONFIG_KEY_B,
    "anthropic key": ANTHROPIC_KEY,
    "azure AD token": AZURE_AD_TOKEN,
    "AWS secret access key": AWS_SECRET,
    "AWS session token": AWS_SESSION_TOKEN,
}
AWS_KEY_ID = "AKIAFAKEACCESSKEY001"  # an id, not a secret
BODY = {"model": "m", "prompt": "p", "max_tokens": 4}
ERROR = {"error": {"message": "Rate limited, slow down.", "type": "rate_limit", "code": "429"}}


def leaks(haystack: str) -> list[str]:
    """Which secrets (or 8-character pieces of them) appear in ``haystack``."""
    found = []
    for name, secret in SECRETS.items():
        pieces = {secret[i : i + 8] for i in range(len(secret) - 7)}
        hits = sorted(p for p in pieces if p in haystack)
        if hits:
            found.append(f"{name}: {hits[:3]}")
    return found


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=COMPLETION)


def stream_ok(request: httpx.Request) -> httpx.Response:
    chunk = {**COMPLETION, "choices": [{"text": " hi", "index": 0, "finish_reason": "stop"}]}
    body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


def sequence(*statuses: int) -> Any:
    queue = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        return ok(request) if status == 200 else httpx.Response(status, json=ERROR)

    return handler


async def slow(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(2)
    return ok(request)


def bedrock_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"completion": " Hello!", "stop_reason": "stop_sequence"})


class Collected:
    """Everything the run produced that a client or an operator could read."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def response(self, response: httpx.Response) -> httpx.Response:
        self.parts.append(response.text)
        self.parts.append(json.dumps(list(response.headers.multi_items())))
        return response


@pytest.fixture
def _no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reset_credential_cache()
    yield
    reset_credential_cache()


@pytest.fixture
def rendered_logs() -> Iterator[tuple[list[dict[str, Any]], io.StringIO]]:
    """structlog as a production host sets it up (JSON lines, tracebacks as text), plus a copy
    of every event dict; restored afterwards."""
    events: list[dict[str, Any]] = []
    stream = io.StringIO()

    def keep(logger: Any, method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        events.append(dict(event))
        return event

    previous = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            keep,
            structlog.processors.JSONRenderer(default=repr),
        ],
        logger_factory=structlog.WriteLoggerFactory(stream),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    try:
        yield events, stream
    finally:
        structlog.configure(**previous)


async def representative_run(collected: Collected) -> list[int]:
    """The requests; returns their statuses (so the test can check each path was taken)."""
    statuses: list[int] = []
    openai = {"x-portkey-provider": "openai", "authorization": f"Bearer {PROVIDER_KEY}"}

    async def send(
        handler: Any, headers: dict[str, str], body: Any = BODY, **settings: Any
    ) -> None:
        client, _ = gateway(handler, **settings)
        async with client:
            response = await client.post("/v1/completions", json=body, headers=headers)
        statuses.append(collected.response(response).status_code)

    await send(ok, openai)  # success
    await send(stream_ok, openai, {**BODY, "stream": True})  # stream
    await send(sequence(429), openai)  # provider error
    await send(ok, openai, {"model": "m", "prompt": "p", "temperature": 9})  # bad input
    await send(ok, {**openai, "authorization": f"Basic {PROVIDER_KEY}"})  # bad auth header
    await send(ok, {"x-portkey-provider": "openai", "x-portkey-api-key": X_PORTKEY_KEY})
    retry = {"retry": {"attempts": 2}}
    await send(sequence(500, 200), {**openai, "x-portkey-config": json.dumps(retry)})  # retry
    fallback = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "openai", "api_key": CONFIG_KEY_A},
            {"provider": "openai", "api_key": CONFIG_KEY_B},
        ],
    }
    await send(sequence(503, 200), {"x-portkey-config": json.dumps(fallback)})  # fallback
    fallback_all_fail = {**fallback, "strategy": {"mode": "fallback"}}
    await send(sequence(503), {"x-portkey-config": json.dumps(fallback_all_fail)})
    virtual = {"vk": {"provider": "openai", "api_key": VIRTUAL_KEY_SECRET}}
    await send(ok, {"x-portkey-virtual-key": "vk"}, virtual_keys=virtual)  # virtual key
    await send(sequence(401), {"x-portkey-virtual-key": "vk"}, virtual_keys=virtual)
    anthropic = {"x-portkey-provider": "anthropic", "x-api-key": ANTHROPIC_KEY}
    await send(sequence(401), anthropic)
    azure = {
        "x-portkey-provider": "azure-openai",
        "x-portkey-azure-resource-name": "res",
        "x-portkey-azure-deployment-id": "dep",
        "x-portkey-azure-api-version": "2024-02-01",
        "x-portkey-azure-ad-token": AZURE_AD_TOKEN,
    }
    await send(ok, azure)
    aws = {
        "x-portkey-provider": "bedrock",
        "x-portkey-aws-access-key-id": AWS_KEY_ID,
        "x-portkey-aws-secret-access-key": AWS_SECRET,
        "x-portkey-aws-session-token": AWS_SESSION_TOKEN,
        "x-portkey-aws-region": "us-east-1",
    }
    bedrock_body = {"model": "anthropic.claude-v2:1", "prompt": "p", "max_tokens": 4}
    await send(bedrock_ok, aws, bedrock_body)  # bedrock, signed with a session token
    await send(sequence(403), aws, bedrock_body)  # bedrock refuses
    await send(bedrock_ok, {**aws, "x-portkey-aws-region": "evil/x#"}, bedrock_body)
    rejected = {**openai, "x-portkey-api-key": WRONG_GATEWAY_KEY}
    await send(ok, rejected, api_keys=[GATEWAY_KEY])  # gateway access key rejected
    await send(ok, {**openai, "x-portkey-api-key": GATEWAY_KEY}, api_keys=[GATEWAY_KEY])
    refused = {**openai, "x-portkey-custom-host": "http://169.254.169.254/latest"}
    await send(ok, refused)  # custom host refused
    await send(slow, {**openai, "x-portkey-request-timeout": "50"})  # timeout
    # unreachable: the middleware's own client against a port nobody listens on
    app = PortkeyMiddleware(
        not_found_app,
        virtual_keys={
            "down": {
                "provider": "openai",
                "api_key": VIRTUAL_KEY_SECRET,
                "custom_host": f"http://127.0.0.1:{free_port()}",
            }
        },
        connect_timeout=1.0,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.post(
            "/v1/completions", json=BODY, headers={"x-portkey-virtual-key": "down"}
        )
        statuses.append(collected.response(response).status_code)
    await app.aclose()
    return statuses


@pytest.mark.usefixtures("_no_ambient_aws")
async def test_no_secret_in_any_log_line_answer_or_output(
    rendered_logs: tuple[list[dict[str, Any]], io.StringIO],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    collected = Collected()
    statuses = await representative_run(collected)
    # every path was taken, as intended
    assert statuses == [
        200, 200, 429, 400, 401, 200, 200, 200, 503, 200, 401, 401, 200, 200, 403, 400,
        401, 200, 400, 408, 502,
    ]  # fmt: skip
    events, lines = rendered_logs
    assert sum(e["event"] == "completion" for e in events) == len(statuses)
    output = capsys.readouterr()
    haystack = "\n".join(
        [
            *collected.parts,
            json.dumps(events, default=repr),
            lines.getvalue(),
            *(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records),
            output.out,
            output.err,
        ]
    )
    assert not leaks(haystack)
    assert AWS_KEY_ID not in lines.getvalue()  # not a secret, but not logged either


def test_the_leak_detector_finds_pieces() -> None:
    assert leaks(f"prefix {PROVIDER_KEY[:10]} suffix")
    assert leaks(f"x{AWS_SESSION_TOKEN[-9:]}x")
    assert leaks(f"..{VIRTUAL_KEY_SECRET[5:14]}..")
    assert not leaks("sk-pv- pk-gw- sk-vk- nothing else 0123456789abcdef")


# --- findings ---------------------------------------------------------------------------------


async def test_internal_error_traceback_carries_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug of ours mid-request (simulated): its traceback is logged as text, never with the
    frames' local variables (request headers, keys) that exc_info renderers may print."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr("portkey_mw.pipeline.describe_outcome", broken)
    stream = io.StringIO()
    previous = structlog.get_config()
    structlog.configure(
        processors=[structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()],
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    try:
        client, _ = gateway(ok)
        async with client:
            response = await client.post(
                "/v1/completions",
                json=BODY,
                headers={"x-portkey-provider": "openai", "authorization": f"Bearer {PROVIDER_KEY}"},
            )
    finally:
        structlog.configure(**previous)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "internal_error" in stream.getvalue()
    assert "simulated bug" in stream.getvalue()
    assert not leaks(stream.getvalue())
    assert not leaks(response.text)


async def test_provider_error_echoing_the_key_does_not_reveal_a_virtual_key() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        key = request.headers["authorization"].removeprefix("Bearer ")
        return httpx.Response(401, json={"error": {"message": f"Incorrect API key: {key}"}})

    virtual = {"vk": {"provider": "openai", "api_key": VIRTUAL_KEY_SECRET}}
    client, _ = gateway(echo, virtual_keys=virtual)
    async with client:
        response = await client.post(
            "/v1/completions", json=BODY, headers={"x-portkey-virtual-key": "vk"}
        )
    assert response.status_code == 401
    assert not leaks(response.text)


@pytest.mark.usefixtures("_no_ambient_aws")
async def test_debug_logging_does_not_reveal_the_aws_session_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client, _ = gateway(bedrock_ok)
    async with client:
        response = await client.post(
            "/v1/completions",
            json={"model": "anthropic.claude-v2:1", "prompt": "p"},
            headers={
                "x-portkey-provider": "bedrock",
                "x-portkey-aws-access-key-id": AWS_KEY_ID,
                "x-portkey-aws-secret-access-key": AWS_SECRET,
                "x-portkey-aws-session-token": AWS_SESSION_TOKEN,
                "x-portkey-aws-region": "us-east-1",
            },
        )
    assert response.status_code == 200
    assert not leaks("\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records))
