"""Fireworks AI: OpenAI-compatible completions under ``/inference/v1`` with extras
(``top_k``, ``min_p``, ``repetition_penalty``, ``response_format``,
``context_length_exceeded_behavior``); ``n`` and ``top_k`` in [1, 128], ``logprobs`` up to 5.
It does not take ``best_of``, ``suffix`` or ``stream_options``."""

from __future__ import annotations

from portkey_mw.providers._openai_compatible import compatible, same_name_table

PROVIDER = compatible(
    "fireworks-ai",
    "https://api.fireworks.ai/inference/v1",
    "/completions",
    same_name_table(
        (
            "model",
            "prompt",
            "max_tokens",
            "logprobs",
            "echo",
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "frequency_penalty",
            "presence_penalty",
            "repetition_penalty",
            "n",
            "stop",
            "response_format",
            "stream",
            "context_length_exceeded_behavior",
            "user",
            "seed",
            "logit_bias",
        ),
        n=(1, 128),
        top_k=(1, 128),
        logprobs=(0, 5),
    ),
    default_headers={"accept": "application/json"},
)
