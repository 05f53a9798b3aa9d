"""Modal: an OpenAI-compatible server (typically vLLM) that the user deploys on Modal, so it
is almost always reached through a custom host such as ``https://<app>.modal.run/v1``; the
default base is the Portkey gateway's placeholder ``https://api.modal.com/v1``.

Unlike the gateway, whose endpoint table has no completions case (it posts to the bare base
URL), the URL ends in ``/completions``. Auth is ``authorization: Bearer <key>`` (the server's
API key) and/or Modal's proxy auth, ``Modal-Key`` / ``Modal-Secret`` from ``modal_key`` /
``modal_secret`` (``x-portkey-modal-key`` / ``x-portkey-modal-secret``, or the plain
``modal-key`` / ``modal-secret`` headers). Params: the OpenAI set vLLM serves, with
``stream_options``. No default model is filled.
"""

from __future__ import annotations

from portkey_mw.providers._openai_compatible import OPENAI_PARAMS, compatible, same_name_table
from portkey_mw.providers.base import Target, require_key

_WHAT = "API key (or x-portkey-modal-key and x-portkey-modal-secret)"


def _auth(target: Target) -> dict[str, str]:
    headers: dict[str, str] = {}
    key, secret = target.option("modal_key"), target.option("modal_secret")
    if key and secret:
        headers = {"modal-key": key, "modal-secret": secret}
    if target.api_key or not headers:
        # With neither credential, require_key answers the 401 that says how to send one.
        headers["authorization"] = f"Bearer {require_key(target, _WHAT)}"
    return headers


PROVIDER = compatible(
    "modal",
    "https://api.modal.com/v1",
    "/completions",
    same_name_table(OPENAI_PARAMS),
    auth=_auth,
    option_names=("modal_key", "modal_secret"),
    header_aliases={"modal_key": ("modal-key",), "modal_secret": ("modal-secret",)},
)
