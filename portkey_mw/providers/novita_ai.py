"""Novita AI: OpenAI-compatible completions at ``https://api.novita.ai/openai/v1/completions``
(Novita's documented base; the Portkey gateway's ``/v3/openai/v1`` mix is not). Takes the
OpenAI sampling params plus ``top_k``, ``min_p`` and ``repetition_penalty``; unlike the Portkey
gateway, ``frequency_penalty`` is sent as itself and stream chunks keep the real finish
reason and usage."""

from __future__ import annotations

from portkey_mw.providers._openai_compatible import compatible, same_name_table

PROVIDER = compatible(
    "novita-ai",
    "https://api.novita.ai/openai",
    "/v1/completions",
    same_name_table(
        (
            "model",
            "prompt",
            "max_tokens",
            "stop",
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "repetition_penalty",
            "presence_penalty",
            "frequency_penalty",
            "logit_bias",
            "seed",
            "n",
            "stream",
            "stream_options",
            "logprobs",
            "best_of",
        ),
        n=(1, 128),
    ),
)
