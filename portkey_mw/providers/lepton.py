"""Lepton AI: OpenAI-compatible ``/api/v1/completions`` (also on a custom host, e.g. a
``*.lepton.run`` deployment) with Lepton's sampling extras (``top_k``, ``min_p``,
``repetition_penalty``, ``length_penalty``, ``dry_*``, ``beam_size``, ``do_early_stopping``).
It takes ``suffix``, ``seed`` and ``stream_options`` (stream usage is relayed) but not
``best_of``. Lepton's audio (TTS) options are left out: a text completion has nowhere to
return audio."""

from __future__ import annotations

from portkey_mw.providers._openai_compatible import compatible, same_name_table

PROVIDER = compatible(
    "lepton",
    "https://api.lepton.ai",
    "/api/v1/completions",
    same_name_table(
        (
            "model",
            "prompt",
            "suffix",
            "temperature",
            "n",
            "max_tokens",
            "stop",
            "stream",
            "stream_options",
            "top_p",
            "logprobs",
            "echo",
            "presence_penalty",
            "frequency_penalty",
            "logit_bias",
            "user",
            "seed",
            "length_penalty",
            "repetition_penalty",
            "dry_multiplier",
            "dry_base",
            "dry_allowed_length",
            "do_early_stopping",
            "beam_size",
            "top_k",
            "min_p",
        )
    ),
)
