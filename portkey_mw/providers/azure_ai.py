"""Azure AI Inference (Azure AI Foundry, serverless and managed model endpoints).

The endpoint URL is the client's ``azure_foundry_url`` (``x-portkey-azure-foundry-url``), an
https URL on an Azure model-serving domain (any other host goes through the operator-allowed
custom host); ``/completions`` is appended, with ``?api-version=`` when ``api_version``
(``x-portkey-azure-api-version``) is given. Auth is ``authorization: Bearer`` with the key or
an Azure AD (Entra) token. ``extra-parameters`` is ``azure_extra_params`` or ``drop`` (as the
Portkey gateway sends it), and ``azure_deployment_name`` selects a deployment through
``azureml-model-deployment``.

Params are the Azure AI model inference set the gateway forwards: ``n``, ``logprobs``,
``echo``, ``best_of``, ``logit_bias``, ``seed``, ``suffix`` and ``stream_options`` are dropped
(and reported). Answers are rebuilt in OpenAI's shape with ``provider``; errors carry the
``azure-ai error:`` prefix (the gateway passes them through raw).
"""

from __future__ import annotations

from urllib.parse import quote

from portkey_mw.errors import InvalidRequest
from portkey_mw.providers._openai_compatible import compatible, same_name_table
from portkey_mw.providers._vendor_url import vendor_url
from portkey_mw.providers.base import Params, Target, require_key

# The Azure AI model inference completions params the Portkey gateway forwards.
PARAMS = (
    "model",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "stream",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "user",
)

# Azure's own values for the ``extra-parameters`` header.
_EXTRA_PARAMS = ("drop", "error", "pass-through")

# Azure's model-serving domains (Foundry, serverless, managed online endpoints, Azure OpenAI).
# Not all of azure.com: VMs (*.cloudapp.azure.com) would let a client pick a host of its own.
_AZURE_DOMAINS = (
    "services.ai.azure.com",
    "models.ai.azure.com",
    "inference.ai.azure.com",
    "inference.ml.azure.com",
    "openai.azure.com",
    "cognitiveservices.azure.com",
)


def azure_headers(target: Target) -> dict[str, str]:
    """Headers shared by Azure AI Inference and GitHub Models (which runs on it)."""
    extra = (target.option("azure_extra_params") or "drop").strip().lower()
    if extra not in _EXTRA_PARAMS:
        raise InvalidRequest(
            f"Invalid 'azure_extra_params' {extra!r}: expected one of {', '.join(_EXTRA_PARAMS)}.",
            param="x-portkey-azure-extra-params",
        )
    token = target.option("azure_ad_token")
    credential = token.removeprefix("Bearer ") if token else require_key(target)
    headers = {"authorization": f"Bearer {credential}", "extra-parameters": extra}
    deployment = target.option("azure_deployment_name")
    if deployment:
        headers["azureml-model-deployment"] = deployment
    return headers


def _base(target: Target) -> str:
    return vendor_url(target, "azure_foundry_url", _AZURE_DOMAINS)


def _endpoint(target: Target, _params: Params) -> str:
    version = (target.option("api_version") or "").strip()
    return f"/completions?api-version={quote(version, safe='')}" if version else "/completions"


OPTIONS = ("azure_ad_token", "azure_extra_params", "azure_deployment_name")

PROVIDER = compatible(
    "azure-ai",
    "",
    "",
    same_name_table(PARAMS),
    auth=azure_headers,
    base=_base,
    path=_endpoint,
    option_names=("azure_foundry_url", "api_version", *OPTIONS),
    url_options=("azure_foundry_url",),
    header_aliases={"api_version": ("x-portkey-azure-api-version",)},
)
