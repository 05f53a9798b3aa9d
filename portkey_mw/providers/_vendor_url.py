"""Provider base URLs that come from a client option (Azure AI Foundry, Hugging Face).

Such an option names a host, and the provider key (perhaps an operator's, from a virtual key)
is sent to it, so a client must not be able to point it anywhere: it has to be an https URL on
the vendor's own domains. Any other host goes through ``custom_host``, which the operator's
``allowed_custom_hosts`` list governs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from portkey_mw.errors import InvalidRequest
from portkey_mw.providers.base import Target, require_option


def vendor_url(target: Target, option: str, domains: tuple[str, ...]) -> str:
    """The option's URL (trailing slash removed) if it is https on one of ``domains``."""
    url = require_option(target, option).strip()
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        host = ""
    if (
        parts.scheme != "https"
        or not any(host == d or host.endswith("." + d) for d in domains)
        or "@" in parts.netloc
        or parts.query
        or parts.fragment
        or any(ord(c) < 0x21 or ord(c) > 0x7E for c in url)
    ):
        aliases = target.provider.header_aliases.get(option, ())
        header = next((a for a in aliases if a.startswith("x-portkey-")), None)
        header = header or "x-portkey-" + option.replace("_", "-")
        raise InvalidRequest(
            f"Invalid '{option}': expected an https URL on {', '.join(domains)} without "
            "credentials, query or fragment. Other hosts go through x-portkey-custom-host "
            "(allowed by the operator's allowed_custom_hosts).",
            param=header,
        )
    return url.rstrip("/")
