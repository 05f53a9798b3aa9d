"""The ``x-portkey-*`` request headers, parsed once into a :class:`RequestHeaders`.

Header names are case-insensitive (ASGI gives them lower-cased); values are latin-1 as HTTP
sends them. Every malformed value is a 400 that names the header.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import msgspec

from portkey_mw.errors import AuthenticationFailed, InvalidRequest

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_TRACE_ID = re.compile(r"^[\x21-\x7e]{1,256}$")
_METADATA = msgspec.json.Decoder(dict[str, str])
_MAX_METADATA_BYTES = 16 * 1024
_TRUE = frozenset({"true", "1", "yes"})


class RequestHeaders(msgspec.Struct, gc=False):
    """What the client said in headers, validated."""

    raw: dict[str, str]
    trace_id: str
    parent_span_id: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    provider: str | None = None
    api_key: str | None = None
    config: str | None = None
    virtual_key: str | None = None
    custom_host: str | None = None
    request_timeout_ms: int | None = None
    forward_headers: tuple[str, ...] | None = None
    cache_force_refresh: bool = False

    def options_for(self, option_headers: Iterable[tuple[str, tuple[str, ...]]]) -> dict[str, str]:
        """Provider options sent as ``x-portkey-<kebab-case>`` headers (or their aliases):
        ``option_headers`` is the provider's ``(option, headers)`` table."""
        found: dict[str, str] = {}
        raw = self.raw
        for name, headers in option_headers:
            for header in headers:
                value = raw.get(header)
                if value:
                    found[name] = value
                    break
        return found


# Header names seen before, decoded: the same few names come on every request, and a lookup
# costs less than decoding and lower-casing them again. Bounded: clients choose the names.
_NAMES: dict[bytes, str] = {}


def decode_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    names = _NAMES
    for name, value in raw_headers:
        key = names.get(name)
        if key is None:
            key = name.decode("latin-1").lower()
            if len(names) < 512:
                names[name] = key
        text = value.decode("latin-1")
        if key in headers:  # a repeated header: its values joined, as HTTP allows
            text = f"{headers[key]}, {text}"
        headers[key] = text
    return headers


def parse_headers(
    headers: dict[str, str], gateway_keys: tuple[bytes, ...], generated_id: str | None = None
) -> RequestHeaders:
    """Validate the ``x-portkey-*`` headers (and the gateway access key, when configured).
    ``generated_id`` is the trace id to use when the client sent none."""
    trace_id, parent = _trace(headers, generated_id)
    parsed = RequestHeaders(raw=headers, trace_id=trace_id, parent_span_id=parent)
    parsed.metadata = _metadata(headers.get("x-portkey-metadata"))
    parsed.provider = headers.get("x-portkey-provider", "").strip() or None
    parsed.api_key = _provider_key(headers, gateway_keys)
    parsed.config = headers.get("x-portkey-config", "").strip() or None
    parsed.virtual_key = headers.get("x-portkey-virtual-key", "").strip() or None
    parsed.custom_host = headers.get("x-portkey-custom-host", "").strip() or None
    parsed.request_timeout_ms = _timeout(headers.get("x-portkey-request-timeout"))
    parsed.forward_headers = _forward(headers.get("x-portkey-forward-headers"))
    refresh = headers.get("x-portkey-cache-force-refresh")
    parsed.cache_force_refresh = refresh is not None and refresh.strip().lower() in _TRUE
    return parsed


def _trace(headers: dict[str, str], generated_id: str | None) -> tuple[str, str | None]:
    given = headers.get("x-portkey-trace-id", "").strip()
    parent = None
    traceparent = headers.get("traceparent", "").strip().lower()
    match = _TRACEPARENT.match(traceparent) if traceparent else None
    if match and set(match.group(1)) != {"0"} and set(match.group(2)) != {"0"}:
        parent = match.group(2)
        if not given:
            return match.group(1), parent
    if not given:
        return generated_id or str(uuid.uuid4()), None
    if not _TRACE_ID.match(given):
        raise InvalidRequest(
            "Invalid x-portkey-trace-id: use 1 to 256 visible ASCII characters.",
            param="x-portkey-trace-id",
        )
    return given, parent


def _metadata(value: str | None) -> dict[str, str]:
    if value is None or not value.strip():
        return {}
    if len(value) > _MAX_METADATA_BYTES:
        raise InvalidRequest(
            "Invalid x-portkey-metadata: larger than 16 KiB.", param="x-portkey-metadata"
        )
    try:
        return _METADATA.decode(value.encode("latin-1"))
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise InvalidRequest(
            "Invalid x-portkey-metadata: expected a JSON object whose values are strings, "
            'e.g. {"_user": "user-42", "env": "prod"}.',
            param="x-portkey-metadata",
        ) from None


def _provider_key(headers: dict[str, str], gateway_keys: tuple[bytes, ...]) -> str | None:
    portkey_key = headers.get("x-portkey-api-key", "").strip()
    if gateway_keys:
        # The operator protects the gateway: x-portkey-api-key is our own access key.
        given = portkey_key.encode("latin-1")
        accepted = False
        for key in gateway_keys:  # no early exit: the time taken does not depend on a match
            accepted |= hmac.compare_digest(given, key)
        if not given or not accepted:
            raise AuthenticationFailed(
                "Invalid or missing x-portkey-api-key for this gateway.",
                param="x-portkey-api-key",
                code="invalid_api_key",
            )
        portkey_key = ""
    authorization = headers.get("authorization", "").strip()
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip() and is_header_safe(token):
            return token.strip()
        raise AuthenticationFailed(
            "Invalid Authorization header: expected 'Bearer <provider key>'.",
            param="authorization",
        )
    if portkey_key and not is_header_safe(portkey_key):
        raise AuthenticationFailed(
            "Invalid x-portkey-api-key: keys are visible ASCII.", param="x-portkey-api-key"
        )
    return portkey_key or None


def is_header_safe(value: str) -> bool:
    """Whether a value can be sent in an HTTP header as it is (printable ASCII)."""
    return value.isascii() and value.isprintable()


def check_upstream_headers(headers: Mapping[str, str]) -> None:
    """A 400 naming the header when a client-supplied value cannot be sent upstream."""
    if is_header_safe("".join(headers.values())):  # all at once: the usual case
        return
    for name, value in headers.items():
        if not is_header_safe(value):
            raise InvalidRequest(
                f"The value sent upstream in header '{name}' must be visible ASCII.",
                param=name,
            )


def _timeout(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        timeout = int(value.strip())
    except ValueError:
        timeout = 0
    if timeout <= 0:
        raise InvalidRequest(
            "Invalid x-portkey-request-timeout: expected a positive whole number of milliseconds.",
            param="x-portkey-request-timeout",
        )
    return timeout


# Never forwarded, whatever a config or header asks: hop-by-hop and framing headers, the
# host, and the gateway's own headers.
UNFORWARDABLE = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
        "expect",
    }
)


def _forward(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(n.strip().lower() for n in value.split(",") if n.strip())
    validate_forward_headers(names, "x-portkey-forward-headers")
    return names


def validate_forward_headers(names: Iterable[str], param: str) -> None:
    for name in names:
        if name == "x-portkey-forward-headers":
            raise InvalidRequest(
                "forward_headers must not contain the 'x-portkey-forward-headers' header.",
                param=param,
            )


def forwardable(names: Iterable[str]) -> tuple[str, ...]:
    if not names:
        return ()
    return tuple(
        n
        for n in (x.lower() for x in names)
        if n not in UNFORWARDABLE and not n.startswith("x-portkey-")
    )


def check_custom_host(url: str, allowed: frozenset[str], param: str) -> str:
    """A custom host the operator allows, or a 400. Never lets a client pick arbitrary URLs."""
    checked = _allowed_host(url, allowed)
    if isinstance(checked, str):
        return checked
    raise InvalidRequest(checked[0], param=param)


@lru_cache(maxsize=1024)
def _allowed_host(url: str, allowed: frozenset[str]) -> str | tuple[str]:
    """The normalised URL, or ``(refusal message,)`` (cached: clients repeat their hosts)."""
    try:
        parts = urlsplit(url)  # raises on a broken IPv6 literal ("https://[abc/v1")
        host = (parts.hostname or "").lower()
    except ValueError:
        parts = urlsplit("")
        host = ""
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not host
        or parts.username is not None
        or "@" in parts.netloc
        or port == -1
        or parts.query
        or parts.fragment
        or not (url.isascii() and url.isprintable())
        or " " in url
    ):
        return (
            "Invalid custom host: expected an absolute http(s) URL such as https://host/v1, "
            "without credentials, query or fragment.",
        )
    netloc = f"{host}:{port}" if port is not None else host
    if host not in allowed and netloc not in allowed:
        return (
            f"Custom host '{host}' is not allowed on this gateway; the operator must list it "
            "in allowed_custom_hosts.",
        )
    return url.rstrip("/")


def metadata_user(metadata: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    user = metadata.get("_user")
    if user:
        return user
    body_user = body.get("user")
    return body_user if isinstance(body_user, str) and body_user else None
