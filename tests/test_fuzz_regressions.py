"""Bugs the fuzzers found, each pinned as its minimal reproduction.

Each test states the behaviour the gateway promises (no 5xx for anything a client or a
provider can send, a stream always ends with ``data: [DONE]``, a request never blocks the
event loop) and is marked ``xfail(strict=True)`` while the bug is open: once the fix lands
the test passes, strict xfail turns that into a failure, and the marker comes off.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from portkey_mw.framing import SSEDecoder
from portkey_mw.providers.bedrock.signing import reset_credential_cache
from tests.faults_fakes import COMPLETION, assert_error_shape
from tests.helpers import gateway, sse_events

HEADERS = {"x-portkey-provider": "openai", "authorization": "Bearer sk-test"}
BODY = {"model": "m", "prompt": "p"}


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=COMPLETION)


async def post(
    content: bytes | None = None, /, *, json_body: Any = BODY, **headers: str | bytes
) -> httpx.Response:
    """POST to an in-process gateway; header values may be bytes (sent as they are)."""
    merged: dict[str, str | bytes] = {**HEADERS, "content-type": "application/json", **headers}
    raw = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in merged.items()]
    client, _ = gateway(ok)
    # Captured, not rendered: a default console renderer would spend seconds drawing the
    # RecursionError tracebacks some of these raise.
    with capture_logs():
        async with client:
            return await client.post(
                "/v1/completions",
                content=content if content is not None else json.dumps(json_body).encode(),
                headers=raw,
            )


def assert_client_error(response: httpx.Response, param: str | None = None) -> None:
    assert response.status_code == 400, response.text
    assert_error_shape(400, response.json())
    if param is not None:
        assert response.json()["error"]["param"] == param


def conditional(query: dict[str, Any]) -> str:
    return json.dumps(
        {
            "strategy": {
                "mode": "conditional",
                "conditions": [{"query": query, "then": "a"}],
                "default": "a",
            },
            "targets": [{"name": "a", "provider": "openai", "api_key": "sk-x"}],
        }
    )


# --- deep JSON nesting: msgspec raises RecursionError, which nobody catches -----------------

DEPTH = 1000  # ~2 KB of brackets; the body cap is 8 MiB


async def test_deeply_nested_body_is_a_400() -> None:
    body = b'{"model": "m", "prompt": ' + b"[" * DEPTH + b"]" * DEPTH + b"}"
    assert_client_error(await post(body))


async def test_deeply_nested_inline_config_is_a_400() -> None:
    config = '{"override_params": ' + '{"a": ' * DEPTH + "1" + "}" * DEPTH + "}"
    assert_client_error(await post(**{"x-portkey-config": config}), "x-portkey-config")


# --- non-ASCII header values that reach the upstream request -------------------------------


async def test_non_ascii_provider_key_is_a_4xx() -> None:
    response = await post(authorization="Bearer sk-\xe9".encode("latin-1"))
    assert 400 <= response.status_code < 500, response.text


async def test_non_ascii_provider_option_header_is_a_400() -> None:
    response = await post(**{"x-portkey-openai-organization": "org-\xe9".encode("latin-1")})
    assert_client_error(response)


async def test_non_ascii_forwarded_header_is_a_400() -> None:
    headers: dict[str, str | bytes] = {
        "x-portkey-forward-headers": "x-tenant",
        "x-tenant": "caf\xe9".encode("latin-1"),
    }
    response = await post(**headers)
    assert_client_error(response)


# --- conditional queries: errors other than re.error / ValueError escape ---------------------


async def test_regex_with_a_huge_repetition_count_is_a_400() -> None:
    config = conditional({"params.model": {"$regex": "a{99999999999}"}})
    assert_client_error(await post(**{"x-portkey-config": config}))


async def test_regex_with_deeply_nested_groups_is_a_400() -> None:
    config = conditional({"params.model": {"$regex": "(" * DEPTH + ")" * DEPTH}})
    assert_client_error(await post(**{"x-portkey-config": config}))


async def test_comparison_with_a_huge_integer_argument_is_answered() -> None:
    config = conditional({"params.max_tokens": {"$gt": 10**400}})
    response = await post(json_body={**BODY, "max_tokens": 5}, **{"x-portkey-config": config})
    assert response.status_code < 500, response.text


async def test_comparison_against_a_huge_integer_param_is_answered() -> None:
    config = conditional({"params.seed": {"$gt": 1}})
    body = b'{"model": "m", "prompt": "p", "seed": 1' + b"0" * 400 + b"}"
    response = await post(body, **{"x-portkey-config": config})
    assert response.status_code < 500, response.text


async def test_catastrophic_regex_does_not_block_the_event_loop() -> None:
    config = conditional({"metadata.x": {"$regex": "^(a+)+$"}})
    metadata = json.dumps({"x": "a" * 24 + "!"})
    started = time.perf_counter()
    await post(**{"x-portkey-config": config, "x-portkey-metadata": metadata})
    assert time.perf_counter() - started < 0.25


# --- provider input: AWS event-stream headers that are not UTF-8 ----------------------------


def _eventstream_message(headers: dict[bytes, bytes], payload: bytes) -> bytes:
    encoded = b"".join(
        bytes([len(k)]) + k + b"\x07" + len(v).to_bytes(2, "big") + v for k, v in headers.items()
    )
    prelude = (16 + len(encoded) + len(payload)).to_bytes(4, "big")
    prelude += len(encoded).to_bytes(4, "big")
    message = prelude + zlib.crc32(prelude).to_bytes(4, "big") + encoded + payload
    return message + zlib.crc32(message).to_bytes(4, "big")


GOOD_CHUNK = _eventstream_message(
    {b":event-type": b"chunk", b":message-type": b"event"},
    b'{"bytes": "eyJjb21wbGV0aW9uIjogIiBIZWxsbyJ9"}',  # {"completion": " Hello"}
)
BAD_HEADER = _eventstream_message({b":event-type": b"\x80chunk"}, b"{}")
AWS = {
    "x-portkey-provider": "bedrock",
    "x-portkey-aws-access-key-id": "AKIAFAKEACCESSKEY001",
    "x-portkey-aws-secret-access-key": "fakeSecretAccessKey/0123456789abcdefghij",
    "x-portkey-aws-region": "us-east-1",
}
STREAM_BODY = {"model": "anthropic.claude-v2:1", "prompt": "p", "max_tokens": 8, "stream": True}


@pytest.fixture
def _no_ambient_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reset_credential_cache()
    yield
    reset_credential_cache()


async def bedrock_stream(first: bytes, rest: bytes) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        yield first
        yield rest

    client, _ = gateway(
        lambda r: httpx.Response(
            200, content=body(), headers={"content-type": "application/vnd.amazon.eventstream"}
        )
    )
    async with client:
        return await client.post("/v1/completions", json=STREAM_BODY, headers=AWS)


@pytest.mark.usefixtures("_no_ambient_aws")
async def test_non_utf8_eventstream_header_first_is_a_502() -> None:
    with capture_logs() as logs:
        response = await bedrock_stream(BAD_HEADER, b"")
    assert response.status_code == 502, response.text
    assert not [e for e in logs if e["event"] == "internal_error"]


@pytest.mark.usefixtures("_no_ambient_aws")
async def test_non_utf8_eventstream_header_mid_stream_ends_with_error_and_done() -> None:
    response = await bedrock_stream(GOOD_CHUNK, BAD_HEADER)
    events = sse_events(response.text)
    assert events[-1] == "[DONE]", response.text
    assert "error" in events[-2]


# --- framing: an empty chunk between the CR and LF of a CRLF --------------------------------


def test_sse_decoder_ignores_empty_chunks() -> None:
    data = b"data: a\r\ndata: b\n\n"
    whole = SSEDecoder()
    expected = whole.feed(data) + whole.close()
    split = SSEDecoder()
    events = split.feed(b"data: a\r") + split.feed(b"") + split.feed(b"\ndata: b\n\n")
    assert events + split.close() == expected == [(None, b"a\nb")]
