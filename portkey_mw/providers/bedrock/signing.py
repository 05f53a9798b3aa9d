"""Bedrock auth: SigV4 through botocore, or a Bedrock API key.

Which credentials, in order:

1. ``aws_access_key_id`` + ``aws_secret_access_key`` (+ ``aws_session_token``) from the
   ``x-portkey-aws-*`` headers, a config target or a virtual key: SigV4.
2. Else a provider key (``Authorization: Bearer <key>``): a Bedrock API key, sent unsigned as
   ``authorization: Bearer``, as Bedrock takes it.
3. Else the server's standard AWS credential chain (environment, shared profile, container or
   instance role): SigV4. The resolved provider is kept; botocore refreshes temporary
   credentials itself. An empty chain is remembered for a minute, so requests do not each
   wait on the instance-metadata probe.

SigV4 signs exactly what is sent: the ``host`` header (with its port when it is not the
scheme's default, e.g. behind a custom host), the percent-encoded path and the body bytes,
plus ``x-amz-content-sha256``. botocore is the optional extra ``portkey_mw[bedrock]``, imported
only here, lazily; without it a request that needs it is a 400 that says so.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec

from portkey_mw.errors import AuthenticationFailed, InvalidRequest
from portkey_mw.providers.base import Target, UpstreamRequest

DEFAULT_REGION = "us-east-1"
SERVICE = "bedrock"
_NEGATIVE_TTL_S = 60.0
_chain: dict[str, Any] = {}


class _NoSigningDetail(logging.Filter):
    """botocore logs the canonical request and string-to-sign (session token included) at
    DEBUG while signing; a host that logs at DEBUG must not receive them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_SIGNING_FILTER = _NoSigningDetail()


def require_botocore() -> Any:
    auth_logger = logging.getLogger("botocore.auth")
    if _SIGNING_FILTER not in auth_logger.filters:
        auth_logger.addFilter(_SIGNING_FILTER)
    try:
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
        import botocore.eventstream
        import botocore.session
    except ImportError:
        raise InvalidRequest(
            "Provider 'bedrock' needs botocore: install the extra 'portkey_mw[bedrock]'.",
            code="bedrock_extra_missing",
        ) from None
    return botocore


def region_of(target: Target) -> str:
    region = (target.option("aws_region") or DEFAULT_REGION).strip().lower()
    # The region becomes part of a host name: letters, digits and dashes only.
    if not region or not all(c.isalnum() or c == "-" for c in region):
        raise InvalidRequest(
            "Invalid x-portkey-aws-region: expected an AWS region such as 'us-east-1'.",
            param="x-portkey-aws-region",
        )
    return region


def _explicit(target: Target, botocore: Any) -> Any:
    key_id = target.option("aws_access_key_id")
    secret = target.option("aws_secret_access_key")
    if key_id is None and secret is None:
        return None
    if key_id is None or secret is None:
        missing = "access-key-id" if key_id is None else "secret-access-key"
        raise AuthenticationFailed(
            f"Incomplete AWS credentials for provider 'bedrock': x-portkey-aws-{missing} is "
            "missing (send both, or neither).",
            param=f"x-portkey-aws-{missing}",
        )
    return botocore.credentials.Credentials(key_id, secret, target.option("aws_session_token"))


def _from_chain(botocore: Any) -> Any:
    """The server's own AWS credentials (frozen for this one signature), or None."""
    now = time.monotonic()
    if "provider" not in _chain and now < _chain.get("retry_at", 0.0):
        return None
    if "provider" not in _chain:
        found = botocore.session.get_session().get_credentials()
        if found is None:
            _chain["retry_at"] = now + _NEGATIVE_TTL_S
            return None
        _chain["provider"] = found
    return _chain["provider"].get_frozen_credentials()


def reset_credential_cache() -> None:
    """Forget the resolved credential chain (tests; a server whose environment changed)."""
    _chain.clear()


def _has_explicit(target: Target) -> bool:
    return bool(target.option("aws_access_key_id") or target.option("aws_secret_access_key"))


def sign(request: UpstreamRequest, target: Target) -> UpstreamRequest:
    """The ``sign`` hook: add SigV4 (or API-key) auth to a built Bedrock request."""
    if request.url.endswith("/invoke-with-response-stream"):
        require_botocore()  # the event-stream decoder needs it too
    if not _has_explicit(target) and target.api_key:
        return _with(request, {"authorization": f"Bearer {target.api_key}"})
    botocore = require_botocore()
    credentials = _explicit(target, botocore)
    if credentials is None and target.ambient_credentials:
        credentials = _from_chain(botocore)
    if credentials is None:
        raise AuthenticationFailed(
            "No AWS credentials for provider 'bedrock': send x-portkey-aws-access-key-id and "
            "x-portkey-aws-secret-access-key (and x-portkey-aws-session-token), a Bedrock API "
            "key as 'Authorization: Bearer <key>', or give the server an AWS credential chain.",
            param="x-portkey-aws-access-key-id",
        )
    host = _host_header(request.url)
    signed = {
        "content-type": request.headers.get("content-type", "application/json"),
        "host": host,
        "x-amz-content-sha256": hashlib.sha256(request.body).hexdigest(),
    }
    aws = botocore.awsrequest.AWSRequest(
        method="POST", url=request.url, data=request.body, headers=signed
    )
    botocore.auth.SigV4Auth(credentials, SERVICE, region_of(target)).add_auth(aws)
    return _with(request, {name.lower(): value for name, value in aws.headers.items()})


def _host_header(url: str) -> str:
    """The Host header value for a URL, exactly as it is sent and signed."""
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    if ":" in hostname:
        hostname = f"[{hostname}]"  # IPv6 literal
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return hostname if parts.port in (None, default) else f"{hostname}:{parts.port}"


def _with(request: UpstreamRequest, headers: dict[str, str]) -> UpstreamRequest:
    return msgspec.structs.replace(request, headers={**request.headers, **headers})
