"""xAI: OpenAI-compatible legacy ``/v1/completions`` at ``https://api.x.ai/v1``.

Params as xAI's API reference marks them: ``best_of``, ``frequency_penalty``, ``logit_bias``
and ``suffix`` are "(Unsupported)" and dropped; ``stream_options`` is taken (stream usage is
relayed). Unlike the Portkey gateway, answers get ``provider`` and OpenAI finish reasons,
errors are mapped once (the gateway wraps them twice, putting an error object inside
``error.message``) and no default model (``grok-beta``, retired) is filled.

xAI's errors are ``{"code": "<status text>", "error": "<message>"}``; the status text is kept
as the error's ``code``.
"""

from __future__ import annotations

from typing import Any

from portkey_mw.errors import ErrorDetail
from portkey_mw.providers._openai_compatible import (
    OPENAI_PARAMS,
    compatible,
    map_compatible_error,
    same_name_table,
)
from portkey_mw.providers.base import ResponseContext, as_str

_UNSUPPORTED = {"best_of", "frequency_penalty", "logit_bias", "suffix"}


def map_error(body: Any, ctx: ResponseContext) -> ErrorDetail:
    detail = map_compatible_error(body, ctx)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return ErrorDetail(detail.message, detail.type, detail.param, as_str(body.get("code")))
    return detail


PROVIDER = compatible(
    "x-ai",
    "https://api.x.ai/v1",
    "/completions",
    same_name_table(p for p in OPENAI_PARAMS if p not in _UNSUPPORTED),
    map_error=map_error,
)
