"""Featherless AI: OpenAI-compatible ``/v1/completions`` with the parameters Featherless
documents (https://featherless.ai/docs/completions): the OpenAI sampling set plus ``top_k``,
``min_p``, ``repetition_penalty``, ``min_tokens``, ``stop_token_ids`` and
``include_stop_str_in_output``. Not documented, so dropped: ``n``, ``logprobs``, ``echo``,
``best_of``, ``logit_bias``, ``user``, ``suffix``, ``stream_options``. Unlike the Portkey
gateway, no default model is filled and errors carry the ``featherless-ai error:`` prefix."""

from __future__ import annotations

from portkey_mw.providers._openai_compatible import compatible, same_name_table

PROVIDER = compatible(
    "featherless-ai",
    "https://api.featherless.ai/v1",
    "/completions",
    same_name_table(
        (
            "model",
            "prompt",
            "max_tokens",
            "temperature",
            "top_p",
            "stream",
            "stop",
            "presence_penalty",
            "frequency_penalty",
            "seed",
            "repetition_penalty",
            "top_k",
            "min_p",
            "min_tokens",
            "stop_token_ids",
            "include_stop_str_in_output",
        )
    ),
)
