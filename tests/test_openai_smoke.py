"""A first end-to-end check through the in-process gateway (MockTransport upstream)."""

from __future__ import annotations

import httpx

from tests.helpers import gateway, sse_events

COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1,
    "model": "gpt-3.5-turbo-instruct",
    "choices": [{"text": " hi", "index": 0, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
HEADERS = {"x-portkey-provider": "openai", "authorization": "Bearer sk-test"}
BODY = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 5}


async def test_completion_is_relayed_verbatim() -> None:
    client, upstream = gateway(lambda r: httpx.Response(200, json=COMPLETION))
    response = await client.post("/v1/completions", json=BODY, headers=HEADERS)
    assert response.status_code == 200
    assert response.json() == COMPLETION
    assert str(upstream.requests[0].url) == "https://api.openai.com/v1/completions"
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-test"
    assert response.headers["x-portkey-provider"] == "openai"


async def test_stream_ends_with_done() -> None:
    sse = b'data: {"id":"c","object":"text_completion","created":1,"model":"m","choices":[{"text":"a","index":0,"logprobs":null,"finish_reason":null}]}\n\n'
    client, _ = gateway(
        lambda r: httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})
    )
    response = await client.post("/v1/completions", json={**BODY, "stream": True}, headers=HEADERS)
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["text"] == "a"
