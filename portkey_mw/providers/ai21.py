"""AI21 Jurassic-2: ``POST /{model}/complete`` with camelCase parameters, text prompts only.

The model goes in the path (each segment URL-encoded; ``j2-grande/<custom model>`` keeps its
slash), never in the body. Penalties take AI21's object shape (``{"scale": value}``); the
native ``presencePenalty`` / ``frequencyPenalty`` / ``countPenalty`` objects pass through and
win over the OpenAI names. ``logprobs`` is AI21's ``topKReturn`` and the token data comes back
in OpenAI's ``logprobs`` shape. Finish reasons are mapped (``endoftext`` is ``stop``) and the
requested model is reported.

AI21 has no streaming API, so ``stream: true`` is emulated: one upstream call without
``stream``, and the answer is relayed as OpenAI SSE chunks ending with ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from portkey_mw.errors import InvalidRequest
from portkey_mw.framing import Event
from portkey_mw.providers._openai_compatible import (
    bearer_auth,
    fixed_base,
    map_compatible_error,
)
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
)
from portkey_mw.streaming import completion_frames

_ANY = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
_MAX_BODY = 16 * 1024 * 1024


def _drop(_value: Any, _params: Params) -> Any:
    """Handled by the gateway (model in the path, stream emulated), so neither sent nor
    reported as dropped."""
    return DROP


def _as_list(value: Any, _params: Params) -> Any:
    return [value] if isinstance(value, str) else value


def _penalty(name: str, high: float) -> Callable[[Any, Params], Any]:
    """An OpenAI penalty as AI21's penalty object; AI21's scales start at 0."""

    def convert(value: Any, _params: Params) -> Any:
        if not 0 <= value <= high:
            raise InvalidRequest(
                f"Invalid value for '{name}': {value} is outside the provider's range "
                f"[0, {high:g}].",
                param=name,
            )
        return {"scale": value}

    return convert


PARAMS: ParamTable = {
    "model": ParamSpec("model", _drop),
    "prompt": ParamSpec("prompt"),
    "n": ParamSpec("numResults", minimum=1, maximum=16),
    "max_tokens": ParamSpec("maxTokens"),
    "minTokens": ParamSpec("minTokens"),
    "temperature": ParamSpec("temperature"),
    "top_p": ParamSpec("topP"),
    # OpenAI's logprobs is "top alternatives per token", which is AI21's topKReturn.
    "logprobs": ParamSpec("topKReturn", maximum=10),
    "stop": ParamSpec("stopSequences", _as_list),
    "presence_penalty": ParamSpec("presencePenalty", _penalty("presence_penalty", 5)),
    "frequency_penalty": ParamSpec("frequencyPenalty", _penalty("frequency_penalty", 500)),
    # AI21's native penalty objects, after the OpenAI names so that they win.
    "presencePenalty": ParamSpec("presencePenalty"),
    "frequencyPenalty": ParamSpec("frequencyPenalty"),
    "countPenalty": ParamSpec("countPenalty"),
    "stream": ParamSpec("stream", _drop),
    "stream_options": ParamSpec("stream_options", _drop),
}


def _path(_target: Target, params: Params) -> str:
    return model_path(params, "AI21") + "/complete"


def _token_text(token: Any) -> str:
    # AI21 tokens are SentencePiece pieces: '▁' is a space, '<|newline|>' a line break.
    text = token if isinstance(token, str) else ""
    return text.replace("\u2581", " ").replace("<|newline|>", "\n")


def _logprobs(tokens: list[Any]) -> JSONDict:
    out: JSONDict = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for raw in tokens:
        item = raw if isinstance(raw, dict) else {}
        generated = item.get("generatedToken") or {}
        top = item.get("topTokens")
        span = item.get("textRange") or {}
        out["tokens"].append(_token_text(generated.get("token")))
        out["token_logprobs"].append(generated.get("logprob"))
        out["top_logprobs"].append(
            {_token_text(t.get("token")): t.get("logprob") for t in top if isinstance(t, dict)}
            if isinstance(top, list)
            else None
        )
        out["text_offset"].append(span.get("start"))
    return out


def _tokens(container: Any) -> list[Any] | None:
    tokens = container.get("tokens") if isinstance(container, dict) else None
    return tokens if isinstance(tokens, list) else None


def map_response(body: Any, ctx: ResponseContext) -> JSONDict:
    completions = body.get("completions") if isinstance(body, dict) else None
    if not isinstance(completions, list):
        raise ResponseUnreadable("the answer has no 'completions' list")
    with_logprobs = ctx.params.get("logprobs") is not None
    choices = []
    counted: list[int] = []
    for index, raw in enumerate(completions):
        item = raw if isinstance(raw, dict) else {}
        data = item.get("data")
        data = data if isinstance(data, dict) else {}
        tokens = _tokens(data)
        if tokens is not None:
            counted.append(len(tokens))
        text = data.get("text")
        reason = item.get("finishReason")
        choices.append(
            choice(
                text if isinstance(text, str) else "",
                index,
                map_finish_reason(reason.get("reason") if isinstance(reason, dict) else None),
                _logprobs(tokens or []) if with_logprobs else None,
            )
        )
    # AI21 reports no counts, but every token of the prompt and of each completion is listed.
    prompt_tokens = _tokens(body.get("prompt"))
    usage = None
    if prompt_tokens is not None or counted:
        prompt = len(prompt_tokens or [])
        usage = Usage(prompt, sum(counted), prompt + sum(counted))
    response_id = body.get("id")
    return completion(
        ctx, response_id if isinstance(response_id, str) else ctx.new_id(), choices, usage
    )


class WholeBody:
    """AI21 never streams: should an answer arrive labelled as something other than JSON,
    it is still read whole and replayed as chunks."""

    __slots__ = ("_parts", "_size")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[Event]:
        self._size += len(chunk)
        if self._size > _MAX_BODY:
            raise StreamFailure("AI21's answer is larger than this gateway accepts.")
        self._parts.append(chunk)
        return []

    def close(self) -> list[Event]:
        body, self._parts = b"".join(self._parts), []
        return [(None, body)] if body.strip() else []


class EmulatedStream:
    """One whole AI21 answer replayed as OpenAI chunks (the same frames a JSON answer gets)."""

    def __init__(self, ctx: ResponseContext) -> None:
        self.ctx = ctx
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def on_event(self, event: str | None, data: bytes) -> Iterable[bytes]:
        try:
            mapped = map_response(_ANY.decode(data), self.ctx)
        except (msgspec.DecodeError, ResponseUnreadable):
            raise StreamFailure("AI21 sent an answer this gateway cannot read.") from None
        if "usage" in mapped:
            self.usage = Usage(**mapped["usage"])
        if mapped["choices"]:
            self.finish_reason = mapped["choices"][-1]["finish_reason"]
        return completion_frames(_ENCODER.encode(mapped), self.ctx.params)

    def finish(self) -> Iterable[bytes]:
        return ()


PROVIDER = Provider(
    name="ai21",
    base_url=fixed_base("https://api.ai21.com/studio/v1"),
    endpoint=_path,
    params=PARAMS,
    auth_headers=bearer_auth,
    # AI21 errors are {"detail": "..."} or FastAPI's {"detail": [{"loc", "msg"}]}, which the
    # shared mapper renders as "loc: msg; ...".
    map_error=map_compatible_error,
    map_response=map_response,
    stream_mapper=EmulatedStream,
    stream_decoder=WholeBody,
    prompt_mode="text",
    native_n=True,
)
