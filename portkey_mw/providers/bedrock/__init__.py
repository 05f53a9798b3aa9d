"""AWS Bedrock through InvokeModel, for six text-completion model families.

* :mod:`.families`: family detection (region prefixes of cross-region inference profiles and
  ARNs understood) and each family's documented request body;
* :mod:`.readers`: each family's answer and stream chunk;
* :mod:`.signing`: SigV4 via botocore (or a Bedrock API key), credentials and region;
* :mod:`.eventstream` / :mod:`.stream`: AWS event-stream framing → OpenAI SSE.

URL: ``https://bedrock-runtime.{region}.amazonaws.com/model/{model id, URL-encoded}/invoke``, or
``/invoke-with-response-stream`` for ``stream: true`` (AI21 Jurassic does not stream on
Bedrock: its streams are emulated from one ``/invoke`` answer replayed as SSE). A custom host
replaces the whole base. Usage comes from the ``x-amzn-bedrock-*-token-count`` headers, else
the body's counts; finish reasons are mapped to OpenAI's (the gateway relays them raw).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from portkey_mw.errors import ErrorDetail
from portkey_mw.providers.base import (
    JSONDict,
    Params,
    Provider,
    ResponseContext,
    ResponseUnreadable,
    Target,
    UpstreamRequest,
    Usage,
    choice,
    completion,
    map_finish_reason,
    message_of,
)
from portkey_mw.providers.bedrock.eventstream import EventStreamDecoder
from portkey_mw.providers.bedrock.families import FAMILIES, Family, family_of, model_id
from portkey_mw.providers.bedrock.readers import counted
from portkey_mw.providers.bedrock.signing import region_of, sign
from portkey_mw.providers.bedrock.stream import BedrockStream


def _base(target: Target) -> str:
    return f"https://bedrock-runtime.{region_of(target)}.amazonaws.com"


def _endpoint(_target: Target, params: Params) -> str:
    model = model_id(params)
    streamed = params.get("stream") is True and family_of(model).streams
    action = "invoke-with-response-stream" if streamed else "invoke"
    return f"/model/{quote(model, safe='')}/{action}"


def _no_auth_headers(_target: Target) -> dict[str, str]:
    return {}  # the sign hook adds SigV4 or the API key, after the body exists


def _header_usage(ctx: ResponseContext) -> Usage | None:
    def count(name: str) -> int | None:
        value = ctx.headers.get(f"x-amzn-bedrock-{name}-token-count")
        return int(value) if value is not None and value.strip().isdigit() else None

    return counted(count("input"), count("output"))


def map_response(body: Any, ctx: ResponseContext) -> JSONDict:
    if not isinstance(body, dict):
        raise ResponseUnreadable("the answer is not a JSON object")
    reading = family_of(model_id(ctx.params)).read_body(body)
    choices = [
        choice(text, index, map_finish_reason(reason))
        for index, (text, reason) in enumerate(reading.choices)
    ]
    usage = _header_usage(ctx) or reading.usage
    return completion(ctx, reading.id or ctx.new_id(), choices, usage)


def map_error(body: Any, _ctx: ResponseContext) -> ErrorDetail:
    """Bedrock errors are ``{"message": ...}`` (``Message`` from some front ends). Like the
    recorded gateway, ``type`` and ``code`` stay null."""
    if isinstance(body, dict):
        for key in ("message", "Message"):
            if isinstance(body.get(key), str) and body[key]:
                return ErrorDetail(body[key])
    return ErrorDetail(message_of(body))


class BedrockProvider(Provider):
    """A provider whose parameter table depends on the model family: each request is built
    by that family's variant of this provider (same URL, signing and mapping hooks)."""

    __slots__ = ()

    def build_request(self, target: Target, params: Params) -> tuple[UpstreamRequest, list[str]]:
        family = family_of(model_id(params))
        return _VARIANTS[family.name].build_request(target, params)


def _provider(family: Family | None) -> Provider:
    return (BedrockProvider if family is None else Provider)(
        name="bedrock",
        base_url=_base,
        endpoint=_endpoint,
        # The registered provider's table is unused: see FAMILIES for each family's.
        params={} if family is None else family.params,
        auth_headers=_no_auth_headers,
        map_error=map_error,
        stream_mapper=BedrockStream,
        map_response=map_response,
        stream_decoder=EventStreamDecoder,
        sign=sign,
        prompt_mode="text",
        option_names=(
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_session_token",
            "aws_region",
        ),
        finalize_body=None if family is None else family.finalize,
    )


_VARIANTS: dict[str, Provider] = {name: _provider(f) for name, f in FAMILIES.items()}

PROVIDER = _provider(None)
