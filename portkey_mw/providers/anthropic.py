"""Anthropic: the legacy Text Completions API (``POST /v1/complete``).

One prompt per call (``prompt_mode="text"``: prompt lists and ``n`` are fanned out by the
pipeline). The prompt is wrapped in Anthropic's ``"\\n\\nHuman: ...\\n\\nAssistant:"`` turns
unless it already has them; ``stop`` becomes the ``stop_sequences`` list the API takes (the
Portkey gateway forwards a string as is); ``user`` becomes ``metadata.user_id``.

``max_tokens_to_sample`` is required by the API, so when the client gave no ``max_tokens`` we
send :data:`DEFAULT_MAX_TOKENS` = 16, OpenAI's own documented default for ``/v1/completions``:
a client speaking OpenAI's API gets what that API promises for an omitted ``max_tokens``.

Streams are SSE (LF or CRLF framed): ``event: completion`` chunks, ``event: ping`` skipped, a
mid-stream ``event: error`` becomes an SSE error event; the relay always ends with ``[DONE]``.
The Bedrock provider reuses this module's Claude body building for its ``anthropic`` family.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from portkey_mw.providers._openai_compatible import fixed_base, fixed_endpoint
from portkey_mw.providers._openai_compatible import map_compatible_error as map_error
from portkey_mw.providers.base import (
    DROP,
    JSONDict,
    Params,
    ParamSpec,
    ParamTable,
    Provider,
    ResponseContext,
    ResponseUnreadable,
    StreamFailure,
    Target,
    Usage,
    choice,
    completion,
    map_finish_reason,
    require_key,
    text_chunk,
    usage_chunk,
)

DEFAULT_MAX_TOKENS = 16
DEFAULT_VERSION = "2023-06-01"
# The Portkey gateway sends this beta flag on every Anthropic call; we keep its wire behaviour
# (Anthropic accepts it on /v1/complete) unless the client names its own beta flags.
DEFAULT_BETA = "messages-2023-12-15"

_ANY = msgspec.json.Decoder()


def wrap_prompt(prompt: str) -> str:
    """The prompt in Anthropic's turn format; a prompt that already has the turns is kept
    (only its leading whitespace normalised to the ``\\n\\n`` the API insists on)."""
    stripped = prompt.lstrip()
    if stripped.startswith("Human:") and "\n\nAssistant:" in stripped:
        return "\n\n" + stripped
    return f"\n\nHuman: {prompt}\n\nAssistant:"


def _prompt(value: Any, _params: Params) -> Any:
    if isinstance(value, list) and len(value) == 1:  # the pipeline fans lists out; be lenient
        value = value[0]
    return wrap_prompt(value) if isinstance(value, str) else value


def stop_list(value: Any, _params: Params) -> Any:
    """OpenAI's ``stop`` (a string or a list) as the list Anthropic and Bedrock want."""
    return [value] if isinstance(value, str) else value


def _fanned_out(_value: Any, _params: Params) -> Any:
    return DROP  # n > 1 is fanned out by the pipeline; n = 1 is what every call does anyway


CLAUDE_TEXT_PARAMS: ParamTable = {
    "prompt": ParamSpec("prompt", _prompt),
    "max_tokens": ParamSpec("max_tokens_to_sample", minimum=1),
    "temperature": ParamSpec("temperature", minimum=0, maximum=1),
    "top_p": ParamSpec("top_p", minimum=0, maximum=1),
    "top_k": ParamSpec("top_k", minimum=0),
    "stop": ParamSpec("stop_sequences", stop_list),
    "n": ParamSpec("n", _fanned_out),
}
"""The Claude Text Completions body shared with Bedrock's ``anthropic`` family."""


def finalize_claude_body(body: JSONDict, _params: Params) -> JSONDict:
    """Fill the two fields the API requires: a prompt and ``max_tokens_to_sample``."""
    body.setdefault("prompt", wrap_prompt(""))  # OpenAI's null prompt: an empty document
    body.setdefault("max_tokens_to_sample", DEFAULT_MAX_TOKENS)
    return body


_PARAMS: ParamTable = {
    "model": ParamSpec("model"),
    **CLAUDE_TEXT_PARAMS,
    "stream": ParamSpec("stream"),
    "user": ParamSpec("metadata.user_id"),
}


def _auth(target: Target) -> dict[str, str]:
    return {
        "x-api-key": require_key(target),
        "anthropic-version": target.option("anthropic_version") or DEFAULT_VERSION,
        "anthropic-beta": target.option("anthropic_beta") or DEFAULT_BETA,
    }


def _usage(raw: Any) -> Usage | None:
    """Usage in Anthropic's names, where an answer carries it (the legacy API usually not)."""
    if not isinstance(raw, dict):
        return None
    prompt, output = raw.get("input_tokens"), raw.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(output, int):
        return None
    return Usage(prompt, output, prompt + output)


def _id(body: dict[str, Any]) -> str | None:
    for key in ("id", "log_id"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    return None


def map_response(body: Any, ctx: ResponseContext) -> JSONDict:
    if not isinstance(body, dict) or not isinstance(body.get("completion"), str):
        raise ResponseUnreadable("the answer has no 'completion' text")
    model = body.get("model") if isinstance(body.get("model"), str) else None
    reason = map_finish_reason(body.get("stop_reason"))
    choices = [choice(body["completion"], 0, reason)]
    return completion(ctx, _id(body) or ctx.new_id(), choices, _usage(body.get("usage")), model)


class AnthropicStream:
    """``event: completion`` deltas → OpenAI chunks; the chunk with a ``stop_reason`` is final."""

    def __init__(self, ctx: ResponseContext) -> None:
        self.ctx = ctx
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._id: str | None = None

    def on_event(self, event: str | None, data: bytes) -> Iterable[bytes]:
        try:
            raw = _ANY.decode(data)
        except msgspec.DecodeError:
            raise StreamFailure("the provider sent a stream event that is not JSON") from None
        kind = raw.get("type") if isinstance(raw, dict) else None
        if event == "error" or kind == "error":
            detail = map_error(raw, self.ctx)
            raise StreamFailure(detail.message, detail.type or "upstream_error")
        if not isinstance(raw, dict) or (kind or event) != "completion":
            return ()  # ping, and event types this mapping does not know yet
        self._id = self._id or _id(raw) or self.ctx.new_id()
        reason = raw.get("stop_reason")
        finish = map_finish_reason(reason) if reason else None
        if finish is not None:
            self.finish_reason = finish
        usage = _usage(raw.get("usage"))
        if usage is not None:
            self.usage = usage
        text = raw.get("completion")
        model = raw.get("model") if isinstance(raw.get("model"), str) else None
        return (
            text_chunk(
                self.ctx,
                self._id,
                text if isinstance(text, str) else "",
                finish_reason=finish,
                model=model,
                usage=usage if finish is not None else None,
            ),
        )

    def finish(self) -> Iterable[bytes]:
        if self.ctx.include_usage and self.usage is not None and self._id is not None:
            return (usage_chunk(self.ctx, self._id, self.usage),)
        return ()


PROVIDER = Provider(
    name="anthropic",
    base_url=fixed_base("https://api.anthropic.com/v1"),
    endpoint=fixed_endpoint("/complete"),
    params=_PARAMS,
    auth_headers=_auth,
    map_error=map_error,
    stream_mapper=AnthropicStream,
    map_response=map_response,
    prompt_mode="text",
    option_names=("anthropic_version", "anthropic_beta"),
    header_aliases={
        "anthropic_version": ("anthropic-version",),
        "anthropic_beta": ("anthropic-beta",),
    },
    # Anthropic's own SDKs send the key as x-api-key.
    key_headers=("x-api-key",),
    finalize_body=finalize_claude_body,
)
