"""Cloudflare Workers AI text generation: ``POST .../accounts/{account}/ai/run/{model}``.

The account id comes from the ``workers_ai_account_id`` option (``x-portkey-workers-ai-account-
id``); a custom host replaces the whole base, account included. The model is the path (its
``@cf/...`` slashes kept, each segment URL-encoded), never the body. Unlike the Portkey
gateway, the prompt is sent as given (no Anthropic ``Human:/Assistant:`` template: Workers AI
applies the model's own template unless ``raw`` is set) and the sampling parameters Workers
AI takes are forwarded. Their ranges differ per model, so Cloudflare validates them (its
``5006`` error is relayed with its status). Answers get a finish reason (``stop``, or
``length`` when the completion used every allowed token) and the usage Cloudflare reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import msgspec

from portkey_mw.errors import ErrorDetail
from portkey_mw.providers._openai_compatible import bearer_auth, map_compatible_error
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
    model_path,
    require_option,
    text_chunk,
    usage_chunk,
    usage_from,
)

_ANY = msgspec.json.Decoder()


def _drop(_value: Any, _params: Params) -> Any:
    """Handled by the gateway (model in the path, ``stream_options``): not sent, not dropped."""
    return DROP


PARAMS: ParamTable = {
    "model": ParamSpec("model", _drop),
    "prompt": ParamSpec("prompt"),
    "stream": ParamSpec("stream"),
    "stream_options": ParamSpec("stream_options", _drop),
    "raw": ParamSpec("raw"),
    "max_tokens": ParamSpec("max_tokens"),
    "temperature": ParamSpec("temperature"),
    "top_p": ParamSpec("top_p"),
    "top_k": ParamSpec("top_k"),
    "seed": ParamSpec("seed"),
    "repetition_penalty": ParamSpec("repetition_penalty"),
    "frequency_penalty": ParamSpec("frequency_penalty"),
    "presence_penalty": ParamSpec("presence_penalty"),
    "lora": ParamSpec("lora"),
}


def _base(target: Target) -> str:
    account = require_option(target, "workers_ai_account_id")
    return f"https://api.cloudflare.com/client/v4/accounts/{quote(account, safe='')}/ai/run"


def _path(_target: Target, params: Params) -> str:
    return model_path(params, "Workers AI", keep="@")  # Cloudflare ids look like @cf/meta/...


def _finish_reason(raw: Any, usage: Usage | None, params: Params) -> str:
    """Cloudflare's own reason when it gives one; else ``length`` if every allowed token was
    used (Workers AI says nothing more), else ``stop``."""
    if isinstance(raw, str) and raw:
        return map_finish_reason(raw)
    limit = params.get("max_tokens")
    if usage is not None and isinstance(limit, int) and 0 < limit <= usage.completion_tokens:
        return "length"
    return "stop"


def map_response(body: Any, ctx: ResponseContext) -> JSONDict:
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, dict):
        raise ResponseUnreadable("the answer has no 'result' object")
    text = result.get("response")
    if text is not None and not isinstance(text, str):
        raise ResponseUnreadable("the answer's 'result.response' is not text")
    usage = usage_from(result.get("usage"))
    reason = _finish_reason(result.get("finish_reason"), usage, ctx.params)
    return completion(ctx, ctx.new_id(), [choice(text or "", 0, reason)], usage)


def _errors_message(errors: list[Any]) -> str:
    # "Error <code>:<message>", joined by ", ": the Portkey gateway's wording, kept as is.
    parts = []
    for item in errors:
        if isinstance(item, dict):
            code, message = item.get("code"), item.get("message") or ""
            parts.append(f"Error {code}:{message}" if code is not None else str(message))
        else:
            parts.append(str(item))
    return ", ".join(parts)


def map_error(body: Any, ctx: ResponseContext) -> ErrorDetail:
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        return ErrorDetail(_errors_message(errors))
    return map_compatible_error(body, ctx)


class WorkersAIStream:
    """``data: {"response": "..."}`` events become chunks; a usage-only event is kept for the
    final chunk, which ``finish`` writes with the finish reason."""

    def __init__(self, ctx: ResponseContext) -> None:
        self.ctx = ctx
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._raw_reason: Any = None
        self._id = ctx.new_id()

    def on_event(self, event: str | None, data: bytes) -> Iterable[bytes]:
        try:
            raw = _ANY.decode(data)
        except msgspec.DecodeError:
            if event == "error":
                raise StreamFailure(data.decode("utf-8", "replace")) from None
            raise StreamFailure("Workers AI sent a stream event that is not JSON.") from None
        if not isinstance(raw, dict):
            return ()
        if event == "error" or raw.get("errors") or raw.get("error"):
            errors = raw.get("errors")
            message = _errors_message(errors) if isinstance(errors, list) and errors else None
            raise StreamFailure(message or map_compatible_error(raw, self.ctx).message)
        usage = usage_from(raw.get("usage"))
        if usage is not None:
            self.usage = usage
        if raw.get("finish_reason"):
            self._raw_reason = raw["finish_reason"]
        text = raw.get("response")
        if isinstance(text, str) and text:
            return (text_chunk(self.ctx, self._id, text),)
        return ()

    def finish(self) -> Iterable[bytes]:
        self.finish_reason = _finish_reason(self._raw_reason, self.usage, self.ctx.params)
        frames = [
            text_chunk(self.ctx, self._id, "", finish_reason=self.finish_reason, usage=self.usage)
        ]
        if self.usage is not None and self.ctx.include_usage:
            frames.append(usage_chunk(self.ctx, self._id, self.usage))
        return frames


PROVIDER = Provider(
    name="workers-ai",
    base_url=_base,
    endpoint=_path,
    params=PARAMS,
    auth_headers=bearer_auth,
    map_error=map_error,
    map_response=map_response,
    stream_mapper=WorkersAIStream,
    prompt_mode="text",
    option_names=("workers_ai_account_id",),
)
