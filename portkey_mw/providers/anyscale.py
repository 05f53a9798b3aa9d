"""Anyscale Endpoints: OpenAI's completions API without ``seed``, ``suffix`` and
``stream_options``; answers rebuilt in OpenAI's shape with ``provider``."""

from __future__ import annotations

from portkey_mw.providers._openai_compatible import OPENAI_PARAMS, compatible, same_name_table

_DROPPED = {"seed", "suffix", "stream_options"}

PROVIDER = compatible(
    "anyscale",
    "https://api.endpoints.anyscale.com/v1",
    "/completions",
    same_name_table(p for p in OPENAI_PARAMS if p not in _DROPPED),
)
