"""Together AI: OpenAI-compatible ``/v1/completions`` with extras (``top_k``, ``min_p``,
``repetition_penalty``, ``safety_model``). Unlike the Portkey gateway, ``frequency_penalty``
is sent as itself (Together takes it natively; it is not ``repetition_penalty``, whose neutral
value is 1), finish reason ``eos`` is ``stop``, and stream usage is relayed. Together documents
``prompt`` as one string and ``stop`` as a list: prompt lists are fanned out (``n`` is
Together's own) and a ``stop`` string is sent as a one-element list."""

from __future__ import annotations

from typing import Any

from portkey_mw.providers._openai_compatible import compatible, same_name_table
from portkey_mw.providers.base import Params, ParamSpec


def _stop_list(value: Any, _params: Params) -> Any:
    return [value] if isinstance(value, str) else value


PROVIDER = compatible(
    "together-ai",
    "https://api.together.xyz",
    "/v1/completions",
    {
        **same_name_table(
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
                "echo",
                "stream",
                "logprobs",
                "safety_model",
            ),
            n=(1, 128),
        ),
        "stop": ParamSpec("stop", _stop_list),
    },
    prompt_mode="text",
    native_n=True,
)
