"""Streams: relayed frame by frame, [DONE] always once, include_usage, mid-stream failures
as SSE error events, client disconnects cancel the upstream call."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import msgspec
from asgiref.testing import ApplicationCommunicator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from portkey_mw import PortkeyMiddleware
from tests.helpers import gateway, not_found_app, serve, sse_events

HEADERS = {"x-portkey-provider": "openai", "authorization": "Bearer sk-test"}
BODY = {"model": "m", "prompt": "p", "stream": True}


def chunk(text: str, finish: str | None = None) -> bytes:
    data = {
        "id": "c1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def sse_response(parts: Any) -> httpx.Response:
    return httpx.Response(200, content=parts, headers={"content-type": "text/event-stream"})


async def test_frames_are_relayed_before_the_upstream_finishes() -> None:
    release = asyncio.Event()

    async def parts() -> Any:
        yield chunk("first")
        await release.wait()
        yield chunk("second", "stop")
        yield b"data: [DONE]\n\n"

    upstream = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: sse_response(parts())))
    app = PortkeyMiddleware(not_found_app, http_client=upstream)
    headers = [
        (k.encode(), v.encode()) for k, v in {**HEADERS, "content-type": "application/json"}.items()
    ]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/completions",
        "root_path": "",
        "headers": headers,
        "query_string": b"",
        "http_version": "1.1",
    }
    comm = ApplicationCommunicator(app, scope)
    await comm.send_input({"type": "http.request", "body": json.dumps(BODY).encode()})
    start = await comm.receive_output(timeout=5)
    assert start["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    first = await comm.receive_output(timeout=5)
    assert b"first" in first["body"]  # arrived while the upstream is still open
    release.set()
    second = await comm.receive_output(timeout=5)
    done = await comm.receive_output(timeout=5)
    assert b"second" in second["body"]
    assert done == {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False}


async def test_done_is_added_once_even_when_upstream_omits_it_or_sends_it_twice() -> None:
    for tail in (b"", b"data: [DONE]\n\ndata: [DONE]\n\n"):
        client, _ = gateway(lambda r, t=tail: sse_response(chunk("a", "stop") + t))
        response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
        assert sse_events(response.text).count("[DONE]") == 1
        assert response.text.endswith("data: [DONE]\n\n")


async def test_crlf_framing_and_split_frames_are_relayed_intact() -> None:
    raw = (chunk("one") + chunk("two", "stop")).replace(b"\n", b"\r\n")

    async def tiny_pieces() -> Any:
        for i in range(0, len(raw), 7):
            yield raw[i : i + 7]

    client, _ = gateway(lambda r: sse_response(tiny_pieces()))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    events = sse_events(response.text)
    assert [e["choices"][0]["text"] for e in events[:-1]] == ["one", "two"]


async def test_include_usage_chunk_is_relayed() -> None:
    usage = {
        "id": "c1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
    }
    client, upstream = gateway(
        lambda r: sse_response(
            chunk("a", "stop")
            + b"data: "
            + json.dumps(usage).encode()
            + b"\n\n"
            + b"data: [DONE]\n\n"
        )
    )
    body = {**BODY, "stream_options": {"include_usage": True}}
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    events = sse_events(response.text)
    assert events[-2]["usage"] == usage["usage"]
    assert upstream.json()["stream_options"] == {"include_usage": True}


async def test_mid_stream_failure_is_an_error_event_then_done() -> None:
    async def broken() -> Any:
        yield chunk("partial")
        raise httpx.ReadError("connection reset by 10.0.0.7")

    client, _ = gateway(lambda r: sse_response(broken()))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    events = sse_events(response.text)
    assert events[0]["choices"][0]["text"] == "partial"
    assert events[1]["error"]["type"] == "upstream_error"
    assert "10.0.0.7" not in response.text
    assert events[-1] == "[DONE]"


async def test_error_event_from_provider_mid_stream() -> None:
    error = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'

    async def parts() -> Any:
        yield chunk("a")
        yield error

    client, _ = gateway(lambda r: sse_response(parts()))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    events = sse_events(response.text)
    assert events[1]["error"]["message"] == "overloaded"
    assert events[-1] == "[DONE]"


async def test_error_event_before_anything_was_sent_is_still_an_http_error() -> None:
    """Nothing reached the client yet, so retries and fallbacks still apply: a JSON 502."""
    error = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    client, _ = gateway(lambda r: sse_response(error))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "overloaded"


async def test_stream_error_before_first_byte_is_a_json_error() -> None:
    client, _ = gateway(lambda r: httpx.Response(429, json={"error": {"message": "slow down"}}))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.status_code == 429
    assert response.json()["error"]["message"] == "openai error: slow down"


def test_client_disconnect_cancels_the_upstream_request() -> None:
    """A real provider on loopback sees its stream closed soon after the client leaves."""
    closed = threading.Event()

    async def endless(request: Request) -> StreamingResponse:
        async def parts() -> Any:
            try:
                for i in range(10_000):
                    yield chunk(f"t{i}")
                    await asyncio.sleep(0.01)
            finally:
                closed.set()

        return StreamingResponse(parts(), media_type="text/event-stream")

    provider = Starlette(routes=[Route("/v1/completions", endless, methods=["POST"])])
    with serve(provider) as provider_url:
        app = PortkeyMiddleware(not_found_app, allowed_custom_hosts=["127.0.0.1"])
        with serve(app) as gateway_url, httpx.Client(timeout=10) as client:
            headers = {**HEADERS, "x-portkey-custom-host": provider_url + "/v1"}
            with client.stream(
                "POST", gateway_url + "/v1/completions", json=BODY, headers=headers
            ) as response:
                lines = response.iter_lines()
                assert next(lines).startswith("data: ")
            # The client is gone; the gateway must close the provider stream promptly.
            assert closed.wait(timeout=5)


async def test_stream_requested_but_answered_as_json_is_replayed_as_sse() -> None:
    completion = {
        "id": "c9",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"text": "whole", "index": 0, "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    client, _ = gateway(lambda r: httpx.Response(200, json=completion))
    body = {**BODY, "stream_options": {"include_usage": True}}
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[0]["choices"][0] == {
        "text": "whole",
        "index": 0,
        "logprobs": None,
        "finish_reason": "length",
    }
    assert events[1]["usage"] == completion["usage"]
    assert events[-1] == "[DONE]"
    assert msgspec.json.decode(msgspec.json.encode(events[0]))["object"] == "text_completion"


async def test_an_event_without_end_is_cut_at_the_cap_not_held_forever() -> None:
    """A provider that streams one line without a separator would grow memory (and the
    copying of it) without bound: past 8 MiB it is an error event, then [DONE]."""

    async def endless_line() -> Any:
        yield chunk("a")
        yield b"data: " + b"x" * 1_000_000
        for _ in range(20):  # 20 MB more, never a newline
            yield b"x" * 1_000_000

    client, _ = gateway(lambda r: sse_response(endless_line()))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    events = sse_events(response.text)
    assert events[0]["choices"][0]["text"] == "a"
    assert "larger than 8 MiB" in events[1]["error"]["message"]
    assert events[-1] == "[DONE]"


def _fed_until_failure(decoder: Any, read: bytes) -> int:
    """Bytes fed, read after read, until the decoder refuses (bounded: 64 MiB at most)."""
    from portkey_mw.errors import StreamFailure

    fed = 0
    while fed < 64 * 1024 * 1024:
        fed += len(read)
        try:
            decoder.feed(read)
        except StreamFailure:
            return fed
    raise AssertionError("no cap")


def test_decoders_cap_what_they_hold_for_one_event() -> None:
    import pytest

    from portkey_mw.errors import StreamFailure
    from portkey_mw.framing import MAX_EVENT_BYTES, NDJSONDecoder, SSEDecoder

    line = b"y" * (MAX_EVENT_BYTES + 1)
    with pytest.raises(StreamFailure):
        NDJSONDecoder().feed(line)
    with pytest.raises(StreamFailure):
        SSEDecoder().feed(b"data: " + line)
    # One event of many data lines and no blank line: cut at the cap and not before...
    megabyte_line = b"data: " + b"z" * (1024 * 1024) + b"\n"
    assert MAX_EVENT_BYTES < _fed_until_failure(SSEDecoder(), megabyte_line) <= 9 * 1024 * 1024
    # ...and empty ones, which hold little data but an entry each, cut by what they hold.
    assert _fed_until_failure(SSEDecoder(), b"data:\n" * 10_000) < MAX_EVENT_BYTES
    # An endless line costs one pass, not a growing copy per read: 4 KiB reads to the cap.
    assert _fed_until_failure(NDJSONDecoder(), b"q" * 4096) > MAX_EVENT_BYTES - 4096
    # Events a read completed before the one too large still go out; the failure follows.
    decoder = SSEDecoder()
    events = decoder.feed(b"data: keep\n\ndata: " + b"k" * (MAX_EVENT_BYTES + 1))
    assert events == [(None, b"keep")]
    with pytest.raises(StreamFailure):
        decoder.close()
    # Up to the cap, an event is whole, however it came.
    assert SSEDecoder().feed(b"data: " + b"w" * 1_000_000 + b"\n\n") == [(None, b"w" * 1_000_000)]
