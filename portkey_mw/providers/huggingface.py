"""Hugging Face: Text Generation Inference's OpenAI-compatible ``/v1/completions``.

The URL is ``https://api-inference.huggingface.co/models/{model}/v1/completions``, or
``{huggingface_base_url}/v1/completions`` for an Inference Endpoint
(``x-portkey-huggingface-base-url``, an https URL on a Hugging Face domain) or a custom host.
Auth is ``authorization: Bearer <HF token>``.

TGI's completions request takes ``model``, ``prompt``, ``max_tokens``, ``temperature``,
``top_p``, ``stream``, ``seed``, ``suffix``, ``frequency_penalty``, ``repetition_penalty`` and
``stop`` (a list only: a string is sent as a one-element list). It ignores everything else, so
``n`` is fanned out (one call per sample) and token prompts are a 400; ``logprobs``, ``echo``,
``best_of``, ``presence_penalty``, ``logit_bias``, ``user`` and ``stream_options`` are dropped.

Unlike the Portkey gateway, the provider's response id is kept (the gateway replaces it with
a random one, and a new one on every stream chunk). TGI sends an empty id, and only then one is
made up, the same for every chunk of a stream. ``event: ping`` keep-alives are skipped.
TGI's ``error_type`` becomes the error's ``type``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from portkey_mw.errors import ErrorDetail
from portkey_mw.providers._openai_compatible import (
    compatible,
    map_compatible_error,
    same_name_table,
)
from portkey_mw.providers._vendor_url import vendor_url
from portkey_mw.providers.base import (
    Params,
    ParamSpec,
    ResponseContext,
    Target,
    as_str,
)

_DEFAULT_BASE = "https://api-inference.huggingface.co"
_HF_DOMAINS = ("huggingface.co", "endpoints.huggingface.cloud")


def _stop_list(value: Any, _params: Params) -> Any:
    return [value] if isinstance(value, str) else value


def _base(target: Target) -> str:
    if target.option("huggingface_base_url"):
        return vendor_url(target, "huggingface_base_url", _HF_DOMAINS)
    return _DEFAULT_BASE


def _endpoint(target: Target, params: Params) -> str:
    # A dedicated endpoint (base URL option or custom host) serves one model at its root.
    if target.custom_host or target.option("huggingface_base_url"):
        return "/v1/completions"
    model = params.get("model")
    return f"/models/{quote(str(model or ''), safe='/')}/v1/completions"


def _map_error(body: Any, ctx: ResponseContext) -> ErrorDetail:
    # TGI answers {"error": "<message>", "error_type": "validation" | "overloaded" | ...}.
    detail = map_compatible_error(body, ctx)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return ErrorDetail(detail.message, as_str(body.get("error_type")))
    return detail


_PARAMS = same_name_table(
    (
        "model",
        "prompt",
        "max_tokens",
        "temperature",
        "top_p",
        "stream",
        "seed",
        "suffix",
        "frequency_penalty",
        "repetition_penalty",
    )
)

PROVIDER = compatible(
    "huggingface",
    _DEFAULT_BASE,
    "",
    {**_PARAMS, "stop": ParamSpec("stop", convert=_stop_list)},
    base=_base,
    path=_endpoint,
    option_names=("huggingface_base_url",),
    url_options=("huggingface_base_url",),
    map_error=_map_error,
    prompt_mode="text",
)
