"""Azure OpenAI: resource and deployment in the URL, ``api-version`` in the query, and an
``api-key`` or an Azure AD (Entra) token for auth. Answers and streams are OpenAI's own.

``api_version: "v1"`` selects Azure's v1 API (``/openai/v1/completions``, the deployment named
in ``model``). Azure's GA completions API (2024-10-21) takes ``seed`` and ``suffix`` but not
``stream_options``.
"""

from __future__ import annotations

from urllib.parse import quote

from portkey_mw.providers._openai_compatible import OPENAI_PARAMS, compatible, same_name_table
from portkey_mw.providers.base import Params, Target, require_key, require_option

_DROPPED = {"stream_options"}


def _base(target: Target) -> str:
    resource = require_option(target, "resource_name")
    return f"https://{quote(resource, safe='')}.openai.azure.com/openai"


def _endpoint(target: Target, _params: Params) -> str:
    version = require_option(target, "api_version").strip()
    if version == "v1":
        return "/v1/completions"
    deployment = quote(require_option(target, "deployment_id"), safe="")
    return f"/deployments/{deployment}/completions?api-version={quote(version, safe='')}"


def _auth(target: Target) -> dict[str, str]:
    token = target.option("azure_ad_token")
    if token:
        return {"authorization": f"Bearer {token.removeprefix('Bearer ')}"}
    headers = {"api-key": require_key(target, "API key or Azure AD token")}
    beta = target.option("openai_beta")
    if beta:
        headers["openai-beta"] = beta
    return headers


PROVIDER = compatible(
    "azure-openai",
    "",
    "",
    same_name_table(p for p in OPENAI_PARAMS if p not in _DROPPED),
    verbatim=True,
    auth=_auth,
    base=_base,
    path=_endpoint,
    option_names=("resource_name", "deployment_id", "api_version", "azure_ad_token", "openai_beta"),
    header_aliases={
        "resource_name": ("x-portkey-azure-resource-name",),
        "deployment_id": ("x-portkey-azure-deployment-id",),
        "api_version": ("x-portkey-azure-api-version",),
        "azure_ad_token": ("x-portkey-azure-ad-token",),
        "openai_beta": ("openai-beta",),
    },
)
