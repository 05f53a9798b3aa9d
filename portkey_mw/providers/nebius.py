"""Nebius AI Studio (now Nebius Token Factory): OpenAI-compatible ``/v1/completions`` at
``https://api.tokenfactory.nebius.com/v1`` (its documented base; the Portkey gateway's
``api.studio.nebius.ai`` is the retired name). Params as Nebius documents them, including
``stream_options`` (stream usage is relayed) and its ``service_tier`` extra; ``best_of``,
``seed`` and ``suffix`` are not in its API and are dropped. No default model is filled."""

from __future__ import annotations

from portkey_mw.providers._openai_compatible import compatible, same_name_table

PROVIDER = compatible(
    "nebius",
    "https://api.tokenfactory.nebius.com/v1",
    "/completions",
    same_name_table(
        (
            "model",
            "prompt",
            "stream",
            "stream_options",
            "max_tokens",
            "temperature",
            "top_p",
            "n",
            "logprobs",
            "echo",
            "stop",
            "presence_penalty",
            "frequency_penalty",
            "logit_bias",
            "user",
            "service_tier",
        )
    ),
)
