"""Fireworks AI: OpenAI-compatible completions under ``/inference/v1`` with the extras its
API reference documents (``top_k``, ``repetition_penalty``, ``mirostat_*``, ``ignore_eos``,
``reasoning_effort``, ``response_format``, ``context_length_exceeded_behavior``). It does not
take ``best_of``, ``logit_bias``, ``seed``, ``suffix`` or ``stream_options``; ranges are left
to Fireworks (the Portkey gateway's clamps are not Fireworks' documented limits)."""

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
            "frequency_penalty",
            "presence_penalty",
            "repetition_penalty",
            "mirostat_lr",
            "mirostat_target",
            "reasoning_effort",
            "n",
            "ignore_eos",
            "stop",
            "response_format",
            "stream",
            "context_length_exceeded_behavior",
            "user",
        )
    ),
    default_headers={"accept": "application/json"},
)
