"""Lambda Inference API (slug ``lambda``; the module is not ``lambda.py``, a Python keyword):
OpenAI-compatible ``/v1/completions`` at ``https://api.lambda.ai/v1``, the base Lambda's docs
give (``api.lambdalabs.com``, the gateway's, is the old name). Lambda has sunset the hosted
API, so this mostly serves custom hosts. Params: the OpenAI set, ``stream_options`` included
(a drop-in OpenAI replacement, per Lambda). No default model is filled."""

from __future__ import annotations

from portkey_mw.providers._openai_compatible import OPENAI_PARAMS, compatible, same_name_table

PROVIDER = compatible(
    "lambda",
    "https://api.lambda.ai/v1",
    "/completions",
    same_name_table(OPENAI_PARAMS),
)
