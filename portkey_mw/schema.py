"""The OpenAI ``CreateCompletionRequest`` as msgspec Structs, and request-body decoding.

The body is decoded once into a plain dict (the params the provider tables work on, so that
``override_params`` and provider extras stay simple) and that dict is validated against
:class:`CompletionRequest`, which carries every documented field and range. Bad input is a
400 that names the field; nothing is clamped or defaulted.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from portkey_mw.errors import InvalidRequest

Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]


class StreamOptions(msgspec.Struct, forbid_unknown_fields=True):
    include_usage: bool | None = None


class CompletionRequest(msgspec.Struct):
    """Every field of OpenAI's ``CreateCompletionRequest`` with its documented range.

    ``prompt`` is typed loosely here because msgspec unions hold one array type only; its
    four documented shapes are checked by :func:`prompt_kind`.
    """

    model: str
    prompt: str | list[Any] | None
    best_of: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    echo: bool | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[int, msgspec.Meta(ge=-100, le=100)]] | None = None
    logprobs: Annotated[int, msgspec.Meta(ge=0, le=5)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=0)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] | None = None
    presence_penalty: Penalty | None = None
    seed: int | None = None
    stop: str | Annotated[list[str], msgspec.Meta(min_length=1, max_length=4)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    user: str | None = None


# The fields above, in the schema's order: anything else in a body is outside the schema.
SCHEMA_FIELDS: frozenset[str] = frozenset(CompletionRequest.__struct_fields__)

_BODY_DECODER = msgspec.json.Decoder(dict[str, Any])
_PATH = re.compile(r"at `\$\.([A-Za-z0-9_]+)")


def decode_body(body: bytes) -> dict[str, Any]:
    """Decode and validate a completion request body into its params dict."""
    try:
        params = _BODY_DECODER.decode(body)
    except msgspec.ValidationError as exc:
        match = _PATH.search(str(exc))
        if match is None:
            raise InvalidRequest(
                "The request body must be a JSON object.", code="invalid_json"
            ) from None
        raise InvalidRequest(
            _explain(str(exc), match.group(1)), param=match.group(1), code="invalid_json"
        ) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc}.", code="invalid_json"
        ) from None
    except RecursionError:
        raise InvalidRequest(
            "The request body is nested too deeply.", code="invalid_json"
        ) from None
    validate_params(params)
    return params


def validate_params(params: dict[str, Any]) -> CompletionRequest:
    """Validate a params dict (a body, or a body after ``override_params``)."""
    try:
        request = msgspec.convert(params, CompletionRequest, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH.search(text)
        param = match.group(1) if match else None
        if param is None and "missing required field" in text:
            param = text.rsplit("`", 2)[-2] if text.count("`") >= 2 else None
        raise InvalidRequest(_explain(text, param), param=param) from None
    prompt_kind(request.prompt)
    return request


def _explain(text: str, param: str | None) -> str:
    if param is None:
        return f"Invalid request body: {text}."
    if "missing required field" in text:
        return f"'{param}' is a required property."
    return f"Invalid value for '{param}': {text.split(' - at ', maxsplit=1)[0]}."


def prompt_kind(prompt: object) -> str:
    """Classify a prompt as ``text``, ``texts``, ``tokens`` or ``token_lists`` (or 400)."""
    if prompt is None or isinstance(prompt, str):
        return "text"
    if isinstance(prompt, list):
        if prompt and all(isinstance(p, str) for p in prompt):
            return "texts"
        if prompt and all(_is_int(p) for p in prompt):
            return "tokens"
        if prompt and all(isinstance(p, list) and p and all(_is_int(t) for t in p) for p in prompt):
            return "token_lists"
    raise InvalidRequest(
        "Invalid value for 'prompt': expected a string, an array of strings, an array of "
        "tokens or an array of token arrays (arrays must not be empty).",
        param="prompt",
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
