"""What a provider is: data (a parameter table, URLs, auth) plus a few small pure hooks.

A provider never does I/O. The pipeline asks it to turn OpenAI params into an
:class:`UpstreamRequest`, to map a provider answer back into an OpenAI ``text_completion``
object, to map a provider error into the OpenAI error shape, and, for streams, to turn the
provider's stream events into OpenAI chunks through a :class:`StreamMapper`.

Adding a provider is adding a module under ``portkey_mw/providers/`` that defines
``PROVIDER`` (or ``PROVIDERS``, a tuple); the registry finds it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

import msgspec

from portkey_mw.errors import AuthenticationFailed, ErrorDetail, InvalidRequest

# Re-exported: providers take it from here (it lives in errors so the decoders can raise it).
from portkey_mw.errors import StreamFailure as StreamFailure  # noqa: PLC0414
from portkey_mw.framing import FrameDecoder, SSEDecoder

# isinstance() against a tuple: ``int | float`` would build a union object on every call.
_NUMBERS = (int, float)

Params = Mapping[str, Any]
_SECRET_OPTION = re.compile(r"key|secret|token|password", re.IGNORECASE)
JSONDict = dict[str, Any]

_ENCODER = msgspec.json.Encoder()


class Target(msgspec.Struct, frozen=True, gc=False):
    """One resolved upstream target: who to call and with which credentials and options.

    ``options`` holds the provider's own settings under snake_case names (``resource_name``,
    ``deployment_id``, ``aws_region``, ``workers_ai_account_id`` ...), whether they came from
    ``x-portkey-*`` headers, a config target or a virtual key.
    """

    provider: Provider
    api_key: str | None = None
    options: Mapping[str, str] = msgspec.field(default_factory=dict)
    custom_host: str | None = None
    # May the provider fall back to the server's own credentials (the AWS credential chain)
    # when the request brings none? The operator decides (``ambient_credentials``).
    ambient_credentials: bool = True

    def option(self, name: str) -> str | None:
        value = self.options.get(name)
        return value or None

    def secrets(self) -> list[str]:
        """Credential values of this target (the key, and secret-named options)."""
        found = [self.api_key] if self.api_key else []
        found += [v for k, v in self.options.items() if v and _SECRET_OPTION.search(k)]
        return found


class UpstreamRequest(msgspec.Struct, frozen=True, gc=False):
    """A fully built provider request. ``body`` is exactly the bytes sent (and signed)."""

    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One row of a provider's parameter table.

    ``to`` is the provider's name for the parameter (dotted for nesting, e.g.
    ``metadata.user_id``). ``convert`` maps the OpenAI value (it also sees all params) to the
    provider's value; returning ``DROP`` leaves the parameter out. ``minimum``/``maximum`` are
    the provider's own accepted range: a value outside it is a 400 naming the parameter,
    never a silent clamp.
    """

    to: str
    convert: Callable[[Any, Params], Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    # Worked out once: most rows are a flat rename without a range (two calls fewer each).
    nested: bool = field(init=False, default=False)
    ranged: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nested", "." in self.to)
        object.__setattr__(self, "ranged", self.minimum is not None or self.maximum is not None)


DROP: Any = msgspec.UNSET
"""Returned by a :class:`ParamSpec` ``convert`` hook to leave the parameter out."""

ParamTable = Mapping[str, ParamSpec | tuple[ParamSpec, ...]]


class Usage(msgspec.Struct, gc=False):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


def usage_from(raw: Any) -> Usage | None:
    """OpenAI-shaped usage (``prompt_tokens``/``completion_tokens``/``total_tokens``), if any."""
    if not isinstance(raw, Mapping):
        return None
    prompt = raw.get("prompt_tokens")
    output = raw.get("completion_tokens")
    if not isinstance(prompt, int) and not isinstance(output, int):
        return None
    prompt = prompt if isinstance(prompt, int) else 0
    output = output if isinstance(output, int) else 0
    total = raw.get("total_tokens")
    return Usage(prompt, output, total if isinstance(total, int) else prompt + output)


class ResponseContext(msgspec.Struct, frozen=True, gc=False):
    """Everything a response, error or stream hook may need, in one frozen argument."""

    provider: str
    params: Params
    status: int = 200
    headers: Mapping[str, str] = msgspec.field(default_factory=dict)
    clock: Callable[[], float] = time.time
    new_id: Callable[[], str] = lambda: f"cmpl-{uuid.uuid4().hex}"

    @property
    def model(self) -> str:
        model = self.params.get("model")
        return model if isinstance(model, str) else ""

    def now(self) -> int:
        return int(self.clock())

    @property
    def include_usage(self) -> bool:
        options = self.params.get("stream_options")
        return isinstance(options, Mapping) and options.get("include_usage") is True


class StreamMapper(Protocol):
    """Turns one provider stream into OpenAI ``text_completion`` chunks.

    ``on_event`` gets each decoded provider event (SSE ``event`` name or ``None``, and the
    raw ``data`` bytes; for NDJSON a line; for AWS event-stream the event type and payload)
    and returns the SSE frames to send, already encoded (``b"data: {...}\\n\\n"``). Upstream
    ``[DONE]`` markers never reach it; the relay writes the one ``data: [DONE]``. ``finish``
    returns any frames owed at the end (a final finish reason, a usage chunk). A mapper raises
    :class:`StreamFailure` for an error the provider reports inside the stream.

    A mapper that relays frames unchanged may also define ``verbatim_prefix(chunk)``: given
    a read made only of whole one-line ``data:`` events, it returns how many leading bytes
    (whole events) may be sent as they came; the relay maps only the rest event by event
    (see ``upstream._Reads``).
    """

    usage: Usage | None
    finish_reason: str | None

    def on_event(self, event: str | None, data: bytes) -> Iterable[bytes]: ...

    def finish(self) -> Iterable[bytes]: ...


class ResponseUnreadable(Exception):
    """A 2xx answer whose shape the provider mapping does not recognise."""


PromptMode = Literal["any", "text"]


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider as data. See the module docstring.

    * ``base_url(target)`` is the provider's base, replaced whole by a custom host;
      ``endpoint(target, params)`` is the path (and query) appended to either.
    * ``auth_headers(target)`` returns the provider's headers; it raises
      :class:`AuthenticationFailed` (via :func:`require_key`) when credentials are missing.
    * ``map_response(body, ctx)`` maps a decoded 2xx JSON body to an OpenAI completion; ``None``
      means the provider already speaks OpenAI and the bytes are relayed as they came.
    * ``map_error(body, ctx)`` maps a decoded (or text) error body to an :class:`ErrorDetail`
      whose message carries no prefix; the pipeline adds ``"<provider> error: "``.
    * ``stream_mapper(ctx)`` makes a fresh :class:`StreamMapper` for one stream.
    * ``stream_decoder()`` makes the frame decoder for the provider's stream format.
    * ``sign(request, target)`` (Bedrock) returns the request with signature headers added.
    * ``prompt_mode``: ``"any"`` takes every OpenAI prompt shape and ``n``; ``"text"`` takes
      one string prompt per call, so prompt lists and ``n`` are fanned out by the pipeline.
    * ``option_names``: the snake_case provider options it reads; each is also accepted as the
      ``x-portkey-<kebab-case>`` header. ``header_aliases`` maps an option to extra plain
      request headers that may carry it (``openai_beta`` ← ``openai-beta``).
    * ``url_options``: options that are URLs the provider key is sent to; when a client sets
      one (header or inline config) it must be a host in ``allowed_custom_hosts``.
    """

    name: str
    base_url: Callable[[Target], str]
    endpoint: Callable[[Target, Params], str]
    params: ParamTable
    auth_headers: Callable[[Target], dict[str, str]]
    map_error: Callable[[Any, ResponseContext], ErrorDetail]
    stream_mapper: Callable[[ResponseContext], StreamMapper]
    map_response: Callable[[Any, ResponseContext], JSONDict] | None = None
    # Splits the provider's stream into events: SSE by default, NDJSON, AWS event-stream...
    stream_decoder: Callable[[], FrameDecoder] = SSEDecoder
    sign: Callable[[UpstreamRequest, Target], UpstreamRequest] | None = None
    prompt_mode: PromptMode = "any"
    # With prompt_mode "text": the provider takes n itself (else n > 1 is fanned out).
    native_n: bool = False
    option_names: tuple[str, ...] = ()
    header_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_headers: Mapping[str, str] = field(default_factory=dict)
    # Plain request headers that may carry the provider key when Authorization is absent
    # (Anthropic's own SDKs send ``x-api-key``).
    key_headers: tuple[str, ...] = ()
    url_options: tuple[str, ...] = ()
    # Adjusts the transformed body after the table ran (e.g. Anthropic's required fields).
    finalize_body: Callable[[JSONDict, Params], JSONDict] | None = None

    # Each option with the request headers that may carry it, in order (computed once).
    option_headers: tuple[tuple[str, tuple[str, ...]], ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        table = tuple(
            (name, ("x-portkey-" + name.replace("_", "-"), *self.header_aliases.get(name, ())))
            for name in self.option_names
        )
        object.__setattr__(self, "option_headers", table)

    def build_request(self, target: Target, params: Params) -> tuple[UpstreamRequest, list[str]]:
        """Transform params into the upstream request; also returns the dropped param names."""
        body, dropped = apply_table(self.params, params)
        if self.finalize_body is not None:
            body = self.finalize_body(body, params)
        base = target.custom_host or self.base_url(target)
        url = base.rstrip("/") + self.endpoint(target, params)
        headers = {"content-type": "application/json", **self.default_headers}
        headers.update(self.auth_headers(target))
        request = UpstreamRequest(url, headers, _ENCODER.encode(body), params.get("stream") is True)
        if self.sign is not None:
            request = self.sign(request, target)
        return request, dropped


def apply_table(table: ParamTable, params: Params) -> tuple[JSONDict, list[str]]:
    """Apply a parameter table: rename, convert, range-check; drop what it does not list.

    ``None`` values mean "not set" (OpenAI's nullable defaults) and are neither sent nor
    reported as dropped.
    """
    out: JSONDict = {}
    for name, specs in table.items():
        value = params.get(name)
        if value is None:  # absent, or null: not set either way
            continue
        for spec in specs if isinstance(specs, tuple) else (specs,):
            converted = spec.convert(value, params) if spec.convert is not None else value
            if converted is DROP:
                continue
            if spec.ranged:
                _check_range(name, converted, spec)
            if spec.nested:
                _put(out, spec.to, converted)
            else:
                out[spec.to] = converted
    dropped = [name for name, value in params.items() if name not in table and value is not None]
    return out, dropped


def _check_range(name: str, value: Any, spec: ParamSpec) -> None:
    if isinstance(value, bool) or not isinstance(value, _NUMBERS):
        return
    if (spec.minimum is not None and value < spec.minimum) or (
        spec.maximum is not None and value > spec.maximum
    ):
        low = "-inf" if spec.minimum is None else f"{spec.minimum:g}"
        high = "inf" if spec.maximum is None else f"{spec.maximum:g}"
        raise InvalidRequest(
            f"Invalid value for '{name}': {value} is outside the provider's range [{low}, {high}].",
            param=name,
        )


def _put(out: JSONDict, dotted: str, value: Any) -> None:
    if "." not in dotted:
        out[dotted] = value
        return
    *parents, leaf = dotted.split(".")
    node = out
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def require_key(target: Target, what: str = "API key") -> str:
    """The target's provider key, or a 401 that says how to send one."""
    if target.api_key:
        return target.api_key
    raise AuthenticationFailed(
        f"No {what} for provider '{target.provider.name}'. Send it as "
        "'Authorization: Bearer <key>' (or set api_key on the config target or virtual key).",
        param="authorization",
    )


def require_option(target: Target, name: str) -> str:
    """A provider option that must be present, or a 400 naming its header."""
    value = target.option(name)
    if value:
        return value
    aliases = target.provider.header_aliases.get(name, ())
    header = next((a for a in aliases if a.startswith("x-portkey-")), None)
    header = header or "x-portkey-" + name.replace("_", "-")
    raise InvalidRequest(
        f"Provider '{target.provider.name}' needs '{name}': send the '{header}' header or set "
        f"'{name}' on the config target or virtual key.",
        param=header,
    )


def model_path(params: Params, provider: str, keep: str = "") -> str:
    """The request's model as URL path segments (``/a/b``), each percent-encoded (``keep``:
    characters left as they are); an empty, ``.`` or ``..`` segment is a 400 on ``model``."""
    model = params.get("model")
    segments = model.split("/") if isinstance(model, str) else [""]
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidRequest(f"Invalid model for {provider}: {model!r}.", param="model")
    return "/" + "/".join(quote(segment, safe=keep) for segment in segments)


def encode_chunk(chunk: Mapping[str, Any]) -> bytes:
    """One OpenAI SSE frame."""
    return b"data: " + _ENCODER.encode(chunk) + b"\n\n"


def text_chunk(
    ctx: ResponseContext,
    chunk_id: str,
    text: str,
    *,
    index: int = 0,
    finish_reason: str | None = None,
    model: str | None = None,
    usage: Usage | None = None,
) -> bytes:
    """An OpenAI ``text_completion`` stream chunk with ``provider``, encoded as an SSE frame."""
    chunk: JSONDict = {
        "id": chunk_id,
        "object": "text_completion",
        "created": ctx.now(),
        "model": model if model is not None else ctx.model,
        "provider": ctx.provider,
        "choices": [
            {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}
        ],
    }
    if usage is not None:
        chunk["usage"] = usage.as_dict()
    return encode_chunk(chunk)


def usage_chunk(
    ctx: ResponseContext, chunk_id: str, usage: Usage, model: str | None = None
) -> bytes:
    """The ``include_usage`` chunk: empty choices and the whole request's usage."""
    return encode_chunk(
        {
            "id": chunk_id,
            "object": "text_completion",
            "created": ctx.now(),
            "model": model if model is not None else ctx.model,
            "provider": ctx.provider,
            "choices": [],
            "usage": usage.as_dict(),
        }
    )


def completion(
    ctx: ResponseContext,
    completion_id: str,
    choices: list[JSONDict],
    usage: Usage | None,
    model: str | None = None,
    created: int | None = None,
) -> JSONDict:
    """An OpenAI ``text_completion`` object with ``provider``."""
    out: JSONDict = {
        "id": completion_id,
        "object": "text_completion",
        "created": created if created is not None else ctx.now(),
        "model": model if model is not None else ctx.model,
        "provider": ctx.provider,
        "choices": choices,
    }
    if usage is not None:
        out["usage"] = usage.as_dict()
    return out


def choice(text: str, index: int, finish_reason: str | None, logprobs: Any = None) -> JSONDict:
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}


def as_str(value: Any) -> str | None:
    """A JSON scalar as an error-shape string (``code`` and ``type`` are strings or null)."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else None


def message_of(body: Any) -> str:
    """Best-effort message for an error body the provider mapping did not recognise."""
    if isinstance(body, str):
        return body.strip()[:2000] or "empty error body"
    return _ENCODER.encode(body).decode()[:2000]


# Provider finish reasons with an OpenAI meaning (providers.md 1.7, plus the OpenAI values).
FINISH_REASONS: Mapping[str, str] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "function_call",
    "eos": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "pause_turn": "stop",
    "endoftext": "stop",
    "max_tokens": "length",
    "model_length": "length",
    "tool_use": "tool_calls",
    "FINISHED": "stop",
    "STOP_CRITERIA_MET": "stop",
    "RAG_QUERY_WHEN_RAG_DISABLED": "stop",
    "LENGTH": "length",
    "CONTENT_FILTERED": "content_filter",
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "ERROR": "stop",
    "TIMEOUT": "stop",
    "MAX_TOKENS": "length",
    "ERROR_TOXIC": "content_filter",
}


def map_finish_reason(raw: Any, extra: Mapping[str, str] | None = None) -> str:
    """A provider finish reason in OpenAI's vocabulary; unknown or missing reasons are ``stop``."""
    if not isinstance(raw, str) or not raw:
        return "stop"
    if extra is not None and raw in extra:
        return extra[raw]
    return FINISH_REASONS.get(raw, FINISH_REASONS.get(raw.lower(), "stop"))
