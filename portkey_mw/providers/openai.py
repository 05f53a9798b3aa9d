"""OpenAI: the reference API. Requests forward every documented field; answers and streams
are relayed byte for byte (errors get the OpenAI shape with ``provider``)."""

from __future__ import annotations

from portkey_mw.providers._openai_compatible import OPENAI_PARAMS, compatible, same_name_table
from portkey_mw.providers.base import Target, require_key

_OPTIONAL_HEADERS = {
    "openai_organization": "openai-organization",
    "openai_project": "openai-project",
    "openai_beta": "openai-beta",
}


def _auth(target: Target) -> dict[str, str]:
    headers = {"authorization": f"Bearer {require_key(target)}"}
    for option, header in _OPTIONAL_HEADERS.items():
        value = target.option(option)
        if value:
            headers[header] = value
    return headers


PROVIDER = compatible(
    "openai",
    "https://api.openai.com/v1",
    "/completions",
    same_name_table(OPENAI_PARAMS),
    verbatim=True,
    auth=_auth,
    option_names=tuple(_OPTIONAL_HEADERS),
    # The openai SDK sends its organization/project as plain headers; honour them too.
    header_aliases={option: (header,) for option, header in _OPTIONAL_HEADERS.items()},
)
