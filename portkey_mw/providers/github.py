"""GitHub Models: Azure AI Inference behind ``https://models.inference.ai.azure.com`` (no
``api-version``), with a GitHub token as ``authorization: Bearer``. Same params, headers and
answers as :mod:`azure_ai` (``provider: "github"``)."""

from __future__ import annotations

from portkey_mw.providers._openai_compatible import compatible, same_name_table
from portkey_mw.providers.azure_ai import PARAMS, azure_headers

PROVIDER = compatible(
    "github",
    "https://models.inference.ai.azure.com",
    "/completions",
    same_name_table(PARAMS),
    auth=azure_headers,
    option_names=("azure_extra_params",),
)
