"""Bad input gets a clear 4xx in the OpenAI error shape, naming the field; nothing reaches
the provider and nothing is clamped or defaulted."""

from __future__ import annotations

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
HEADERS = {"x-portkey-provider": "openai", "authorization": "Bearer sk-test"}


def _gateway(**settings: Any) -> tuple[httpx.AsyncClient, Any]:
    return gateway(lambda r: httpx.Response(200, json=OK), **settings)


def _assert_error(response: httpx.Response, status: int, param: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert body["error"]["param"] == param
    assert response.headers["x-portkey-trace-id"]
    return body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "p"}, "model"),
        ({"model": "m"}, "prompt"),
        ({"model": 3, "prompt": "p"}, "model"),
        ({"model": "m", "prompt": "p", "temperature": 2.5}, "temperature"),
        ({"model": "m", "prompt": "p", "temperature": "hot"}, "temperature"),
        ({"model": "m", "prompt": "p", "top_p": 1.5}, "top_p"),
        ({"model": "m", "prompt": "p", "max_tokens": -1}, "max_tokens"),
        ({"model": "m", "prompt": "p", "max_tokens": 1.5}, "max_tokens"),
        ({"model": "m", "prompt": "p", "n": 0}, "n"),
        ({"model": "m", "prompt": "p", "n": 129}, "n"),
        ({"model": "m", "prompt": "p", "logprobs": 6}, "logprobs"),
        ({"model": "m", "prompt": "p", "best_of": 21}, "best_of"),
        ({"model": "m", "prompt": "p", "presence_penalty": -2.5}, "presence_penalty"),
        ({"model": "m", "prompt": "p", "frequency_penalty": 3}, "frequency_penalty"),
        ({"model": "m", "prompt": "p", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "m", "prompt": "p", "stop": [1]}, "stop"),
        ({"model": "m", "prompt": "p", "logit_bias": {"50256": 101}}, "logit_bias"),
        ({"model": "m", "prompt": "p", "logit_bias": {"50256": "x"}}, "logit_bias"),
        ({"model": "m", "prompt": "p", "stream": "yes"}, "stream"),
        ({"model": "m", "prompt": "p", "stream_options": {"include_usage": 1}}, "stream_options"),
        ({"model": "m", "prompt": "p", "stream_options": {"bogus": True}}, "stream_options"),
        ({"model": "m", "prompt": "p", "echo": 1}, "echo"),
        ({"model": "m", "prompt": [], "max_tokens": 1}, "prompt"),
        ({"model": "m", "prompt": [[]]}, "prompt"),
        ({"model": "m", "prompt": [1, "a"]}, "prompt"),
        ({"model": "m", "prompt": {"text": "p"}}, "prompt"),
        ({"model": "m", "prompt": [True]}, "prompt"),
        ({"model": "m", "prompt": "p", "seed": "1"}, "seed"),
        ({"model": "m", "prompt": "p", "suffix": 1}, "suffix"),
        ({"model": "m", "prompt": "p", "user": 5}, "user"),
    ],
)
async def test_bad_fields_are_400_naming_the_field(body: dict[str, Any], param: str) -> None:
    client, upstream = _gateway()
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    _assert_error(response, 400, param)
    assert upstream.requests == []


@pytest.mark.parametrize("prompt", ["text", ["a", "b"], [1, 2, 3], [[1, 2], [3]], None, ""])
async def test_every_documented_prompt_shape_is_accepted(prompt: Any) -> None:
    client, upstream = _gateway()
    body = {
        "model": "m",
        "prompt": prompt,
        "stop": "\n",
        "logit_bias": {"1": -100},
        "stream_options": {"include_usage": True},
        "seed": -5,
        "best_of": 0,
    }
    response = await client.post("/v1/completions", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    assert upstream.json()["prompt"] == prompt if prompt is not None else True


async def test_values_are_never_clamped_or_defaulted() -> None:
    client, upstream = _gateway()
    body = {"model": "m", "prompt": "p", "temperature": 2, "top_p": 0, "logprobs": 5}
    assert (await client.post("/v1/completions", json=body, headers=HEADERS)).status_code == 200
    assert upstream.json() == body  # exactly what was sent: no clamp, no default model


@pytest.mark.parametrize(
    ("content", "message_part"),
    [
        (b'{"model": "m", "prompt": ', "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
async def test_body_that_is_not_a_json_object_is_400(content: bytes, message_part: str) -> None:
    client, _ = _gateway()
    response = await client.post("/v1/completions", content=content, headers=HEADERS)
    body = _assert_error(response, 400, None)
    assert message_part in body["error"]["message"]


async def test_unknown_fields_are_dropped_and_not_sent() -> None:
    client, upstream = _gateway()
    body = {"model": "m", "prompt": "p", "foo": 1, "api_base": "http://evil"}
    assert (await client.post("/v1/completions", json=body, headers=HEADERS)).status_code == 200
    assert upstream.json() == {"model": "m", "prompt": "p"}


async def test_non_json_content_type_is_415_and_missing_is_read_as_json() -> None:
    client, upstream = _gateway()
    response = await client.post(
        "/v1/completions", content=b"model=m", headers={**HEADERS, "content-type": "text/plain"}
    )
    _assert_error(response, 415, "content-type")
    raw = httpx.Request(
        "POST", "http://gw/v1/completions", content=b'{"model":"m","prompt":"p"}', headers=HEADERS
    )
    raw.headers.pop("content-type", None)
    response = await client.send(raw)
    assert response.status_code == 200
    charset = await client.post(
        "/v1/completions",
        content=b'{"model":"m","prompt":"p"}',
        headers={**HEADERS, "content-type": "application/json; charset=utf-8"},
    )
    assert charset.status_code == 200
    assert len(upstream.requests) == 2


async def test_body_over_the_cap_is_413() -> None:
    client, upstream = _gateway(max_body_bytes=1000)
    response = await client.post(
        "/v1/completions", json={"model": "m", "prompt": "x" * 2000}, headers=HEADERS
    )
    _assert_error(response, 413, None)
    assert upstream.requests == []


async def test_body_over_the_cap_without_content_length_is_413() -> None:
    client, _ = _gateway(max_body_bytes=1000)

    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 200

    response = await client.post("/v1/completions", content=chunks(), headers=HEADERS)
    _assert_error(response, 413, None)
