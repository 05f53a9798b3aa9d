"""Nextbit: OpenAI-compatible ``/v1/completions`` at ``https://api.nextbit256.com/v1``.
Nextbit publishes no parameter reference, so the whitelist is the Portkey gateway's shared
OpenAI set (``stream_options`` is not in it and is dropped). Unlike the gateway, no default
model is filled and errors carry the ``nextbit error:`` prefix."""

from __future__ import annotations

from portkey_mw.providers._openai_compatible import OPENAI_PARAMS, compatible, same_name_table

PROVIDER = compatible(
    "nextbit",
    "https://api.nextbit256.com/v1",
    "/completions",
    same_name_table(p for p in OPENAI_PARAMS if p != "stream_options"),
)
