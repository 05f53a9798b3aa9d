"""The shared base of the providers that speak OpenAI's completions API.

They differ only in data: base URL, endpoint path, which OpenAI params (and extras) they take,
extra headers, and whether their answers are relayed verbatim (OpenAI, Azure) or rebuilt in
OpenAI's shape with ``provider`` and normalised finish reasons (everyone else).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from portkey_mw.errors import ErrorDetail
from portkey_mw.providers.base import (
    JSONDict,
    Params,
    ParamSpec,
    ParamTable,
    PromptMode,
    Provider,
    ResponseContext,
    ResponseUnreadable,
    StreamFailure,
    Target,
    Usage,
    as_str,
    encode_chunk,
    map_finish_reason,
    message_of,
    require_key,
    usage_from,
)

# OpenAI's own completions parameters, in the schema's order.
OPENAI_PARAMS: tuple[str, ...] = (
    "model",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stream",
    "logprobs",
    "echo",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "best_of",
    "logit_bias",
    "user",
    "seed",
    "suffix",
    "stream_options",
)


def same_name_table(
    names: Iterable[str], **ranges: tuple[float | None, float | None]
) -> ParamTable:
    """A table that forwards each name unchanged, with optional provider ranges."""
    table: dict[str, ParamSpec] = {}
    for name in names:
        low, high = ranges.get(name, (None, None))
        table[name] = ParamSpec(name, minimum=low, maximum=high)
    return table


def bearer_auth(target: Target) -> dict[str, str]:
    return {"authorization": f"Bearer {require_key(target)}"}


def fixed_base(url: str) -> Callable[[Target], str]:
    return lambda _target: url


def fixed_endpoint(path: str) -> Callable[[Target, Params], str]:
    return lambda _target, _params: path


# --- errors -------------------------------------------------------------------------------


def map_compatible_error(body: Any, ctx: ResponseContext) -> ErrorDetail:
    """Errors of OpenAI-compatible servers, in every shape they come in.

    ``{"error": {...}}`` (OpenAI), ``{"error": "text"}``, FastAPI's ``{"detail": [...]}`` or
    ``{"detail": "text"}``, Apigee's ``{"fault": {...}}`` and a top-level ``message``.
    """
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return ErrorDetail(
                str(error.get("message") or message_of(error)),
                as_str(error.get("type")),
                as_str(error.get("param")),
                as_str(error.get("code")),
            )
        if isinstance(error, str) and error:
            return ErrorDetail(error)
        fault = body.get("fault")
        if isinstance(fault, dict):
            detail = fault.get("detail")
            code = detail.get("errorcode") if isinstance(detail, dict) else None
            return ErrorDetail(
                str(fault.get("faultstring") or message_of(fault)), code=as_str(code)
            )
        detail = body.get("detail")
        if isinstance(detail, list) and detail:
            return ErrorDetail(_describe_validation(detail), as_str(_first_type(detail)))
        if isinstance(detail, str) and detail:
            return ErrorDetail(detail)
        if isinstance(body.get("message"), str) and body["message"]:
            return ErrorDetail(body["message"], as_str(body.get("type")))
    return ErrorDetail(message_of(body))


def _describe_validation(detail: list[Any]) -> str:
    parts = []
    for item in detail:
        if isinstance(item, dict):
            loc = ".".join(str(p) for p in item.get("loc") or ())
            msg = str(item.get("msg") or "")
            parts.append(f"{loc}: {msg}" if loc else msg)
        else:
            parts.append(str(item))
    return "; ".join(parts)


def _first_type(detail: list[Any]) -> Any:
    return detail[0].get("type") if isinstance(detail[0], dict) else None


# --- responses ------------------------------------------------------------------------------


def _rebuild_choice(raw: Any, position: int, final: bool) -> JSONDict:
    item = raw if isinstance(raw, dict) else {}
    index = item.get("index")
    reason = item.get("finish_reason")
    text = item.get("text")
    return {
        "text": text if isinstance(text, str) else "",
        "index": index if isinstance(index, int) else position,
        "logprobs": item.get("logprobs"),
        "finish_reason": map_finish_reason(reason) if (final or reason) else None,
    }


def rebuild_response(body: Any, ctx: ResponseContext) -> JSONDict:
    """An OpenAI-compatible answer in OpenAI's exact shape, with ``provider``."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise ResponseUnreadable("the answer has no 'choices' list")
    given_id = body.get("id")
    out: JSONDict = {
        "id": given_id if isinstance(given_id, str) and given_id else ctx.new_id(),
        "object": "text_completion",
        "created": body.get("created") if isinstance(body.get("created"), int) else ctx.now(),
        "model": body.get("model") if isinstance(body.get("model"), str) else ctx.model,
        "provider": ctx.provider,
        "choices": [_rebuild_choice(c, i, True) for i, c in enumerate(body["choices"])],
    }
    usage = usage_from(body.get("usage"))
    if usage is not None:
        out["usage"] = usage.as_dict()
    if isinstance(body.get("system_fingerprint"), str):
        out["system_fingerprint"] = body["system_fingerprint"]
    return out


# --- streams ---------------------------------------------------------------------------------

_ANY = msgspec.json.Decoder()


class _ChoiceView(msgspec.Struct):
    finish_reason: str | None = None


class _UsageView(msgspec.Struct):
    """Only what the log needs from a relayed chunk: msgspec skips everything else."""

    usage: Usage | None = None
    choices: list[_ChoiceView] | None = None


_VIEW = msgspec.json.Decoder(_UsageView)


def _may_carry_news(data: bytes, start: int = 0, end: int | None = None) -> bool:
    """False only for a chunk (or its ``start:end`` part: no copy) that surely has no usage
    and no finish reason (every ``finish_reason`` is ``null``, spelt with or without a
    space): most chunks of a stream, skipped without decoding them. Any other spelling is
    decoded, so nothing is missed."""
    end = len(data) if end is None else end
    if data.find(b'"usage"', start, end) >= 0:
        return True
    reasons = data.count(b'"finish_reason"', start, end)
    if not reasons:
        return False
    nulls = data.count(b'"finish_reason":null', start, end)  # compact JSON (OpenAI, Azure)
    if nulls < reasons:
        nulls += data.count(b'"finish_reason": null', start, end)  # json.dumps, some proxies
    return reasons != nulls


def _needs_a_look(data: bytes, start: int, end: int) -> bool:
    """Whether ``data[start:end]`` (whole events) holds an error, the upstream ``[DONE]``,
    usage or a finish reason: what a verbatim relay must hand to the mapper."""
    return (
        data.find(b'"error"', start, end) >= 0
        or data.find(b"[DONE]", start, end) >= 0
        or _may_carry_news(data, start, end)
    )


def _stream_error(data: bytes) -> StreamFailure | None:
    if b'"error"' not in data:
        return None
    try:
        decoded = _ANY.decode(data)
    except msgspec.DecodeError:
        return None
    if isinstance(decoded, dict) and "error" in decoded and "choices" not in decoded:
        detail = map_compatible_error(decoded, ResponseContext(provider="", params={}))
        return StreamFailure(detail.message, detail.type or "upstream_error")
    return None


class VerbatimStream:
    """OpenAI and Azure: frames relayed byte for byte; usage and finish reason noted for logs."""

    def __init__(self, ctx: ResponseContext) -> None:
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def on_event(self, event: str | None, data: bytes) -> Iterable[bytes]:
        failure = _stream_error(data)
        if failure is not None:
            raise failure
        if _may_carry_news(data):
            self._note(data)
        if event is not None:
            return (b"event: " + event.encode() + b"\ndata: " + data + b"\n\n",)
        return (b"data: " + data + b"\n\n",)

    def verbatim_prefix(self, chunk: bytes) -> int:
        """How much of a read of whole ``data:`` events goes out as it came: all of it when
        nothing in it needs a look (an error, usage or a finish reason to note, the upstream
        ``[DONE]``), else all but its last two events when only those hold what needs the
        look (where providers put it), else nothing. Each byte of the read is scanned once
        per pattern (ranges, not copies: a read is often a whole 10 KB stream)."""
        start = len(chunk)
        for _ in range(2):  # back to the start of the second-to-last event
            boundary = chunk.rfind(b"\n\n", 0, start - 2) if start > 2 else -1
            start = boundary + 2 if boundary >= 0 else 0
        if start and _needs_a_look(chunk, 0, start):
            return 0
        if not _needs_a_look(chunk, start, len(chunk)):
            return len(chunk)
        return start

    def _note(self, data: bytes) -> None:
        try:
            view = _VIEW.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if view.usage is not None:
            self.usage = view.usage
        for item in view.choices or ():
            if item.finish_reason:
                self.finish_reason = item.finish_reason

    def finish(self) -> Iterable[bytes]:
        return ()


class RebuiltStream:
    """Compatible providers: each chunk rebuilt in OpenAI's shape with ``provider``.

    Finish reasons are mapped (Together's ``eos`` is ``stop``), ``null`` until the provider
    gives one; usage is relayed where the provider gives it.
    """

    def __init__(self, ctx: ResponseContext) -> None:
        self.ctx = ctx
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._id: str | None = None  # one made-up id for the whole stream, if the provider has none

    def on_event(self, event: str | None, data: bytes) -> Iterable[bytes]:
        if event == "ping":  # keep-alives (TGI) carry no completion
            return ()
        failure = _stream_error(data)
        if failure is not None:
            raise failure
        try:
            raw = _ANY.decode(data)
        except msgspec.DecodeError:
            raise StreamFailure("the provider sent a stream event that is not JSON") from None
        if not isinstance(raw, dict):
            return ()
        raw_choices = raw.get("choices")
        choices: list[Any] = raw_choices if isinstance(raw_choices, list) else []
        top_reason = raw.get("finish_reason")
        if top_reason and len(choices) == 1 and isinstance(choices[0], dict):
            # Together documents the chunk's finish reason at the top level.
            choices = [
                {
                    "finish_reason": top_reason,
                    **{k: v for k, v in choices[0].items() if v is not None},
                }
            ]
        chunk: JSONDict = {
            "id": self._chunk_id(raw.get("id")),
            "object": "text_completion",
            "created": raw.get("created")
            if isinstance(raw.get("created"), int)
            else self.ctx.now(),
            "model": raw.get("model") if isinstance(raw.get("model"), str) else self.ctx.model,
            "provider": self.ctx.provider,
            "choices": [_rebuild_choice(c, i, False) for i, c in enumerate(choices)],
        }
        for item in chunk["choices"]:
            if item["finish_reason"] is not None:
                self.finish_reason = item["finish_reason"]
        usage = usage_from(raw.get("usage"))
        if usage is not None:
            self.usage = usage
            chunk["usage"] = usage.as_dict()
        return (encode_chunk(chunk),)

    def _chunk_id(self, given: Any) -> str:
        if isinstance(given, str) and given:
            return given
        if self._id is None:
            self._id = self.ctx.new_id()
        return self._id

    def finish(self) -> Iterable[bytes]:
        return ()


def compatible(
    name: str,
    base_url: str,
    endpoint: str,
    params: ParamTable,
    *,
    verbatim: bool = False,
    option_names: tuple[str, ...] = (),
    header_aliases: Mapping[str, tuple[str, ...]] | None = None,
    default_headers: Mapping[str, str] | None = None,
    auth: Callable[[Target], dict[str, str]] = bearer_auth,
    base: Callable[[Target], str] | None = None,
    path: Callable[[Target, Params], str] | None = None,
    prompt_mode: PromptMode = "any",
    native_n: bool = False,
    map_error: Callable[[Any, ResponseContext], ErrorDetail] = map_compatible_error,
    map_response: Callable[[Any, ResponseContext], JSONDict] = rebuild_response,
    url_options: tuple[str, ...] = (),
) -> Provider:
    """Declare an OpenAI-compatible provider."""
    return Provider(
        name=name,
        base_url=base or fixed_base(base_url),
        endpoint=path or fixed_endpoint(endpoint),
        params=params,
        auth_headers=auth,
        map_error=map_error,
        stream_mapper=VerbatimStream if verbatim else RebuiltStream,
        map_response=None if verbatim else map_response,
        prompt_mode=prompt_mode,
        native_n=native_n,
        url_options=url_options,
        option_names=option_names,
        header_aliases=header_aliases or {},
        default_headers=default_headers or {},
    )
