"""A request's bytes: the request line and fixed headers made once per URL, the request's
own headers checked and added per call."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

import httpx

# The codings the response side decodes: the only ones offered.
DECODABLE = b"gzip, deflate"
# Characters kept as they are in a request target: RFC 3986's reserved and unreserved ones
# and ``%`` (escapes already made stay made, so a signed path is the sent path).
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~-._"

# Request headers written here. A request's own ``host`` and ``user-agent`` replace ours
# (Bedrock signs the host); its framing and codings never go out: the body is framed here
# and only the codings the response side decodes may be offered.
_REPLACEABLE = frozenset({"host", "user-agent"})
_DROPPED = frozenset({"content-length", "transfer-encoding", "accept-encoding", "connection"})
# A header name is a token (RFC 9110); a value is visible ASCII, spaces and tabs.
_BAD_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(r"[^\t\x20-\x7e]")


class Origin:
    """A URL's parts, worked out once per URL text."""

    __slots__ = ("head", "host", "key", "port", "tls")

    def __init__(self, url: str, user_agent: bytes) -> None:
        try:
            parts = urlsplit(url)
            host = parts.hostname
            port = parts.port
        except ValueError as exc:  # a broken IPv6 literal, a port out of range
            raise httpx.UnsupportedProtocol(f"not a usable URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not host:
            raise httpx.UnsupportedProtocol(f"not an http(s) URL: {parts.scheme}://")
        netloc = parts.netloc.rpartition("@")[2]  # credentials in a URL are never sent
        try:
            host.encode("idna")  # what the resolver will do: empty or 64+ character labels
            wire_netloc = netloc.encode("ascii") if netloc.isascii() else netloc.encode("idna")
        except UnicodeError:
            raise httpx.ConnectError(f"not a valid host name: {host!r}") from None
        self.tls = parts.scheme == "https"
        self.host = host
        self.port = port or (443 if self.tls else 80)
        self.key = (self.tls, host, self.port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Anything that may not appear in a request line (spaces, controls, non-ASCII) is
        # percent-encoded; the rest is sent exactly as built.
        target = quote(target, safe=_TARGET_SAFE)
        # Everything before the request's own headers, one bytes object per URL.
        self.head = (
            f"POST {target} HTTP/1.1\r\n".encode("ascii")
            + b"host: "
            + wire_netloc
            + b"\r\nuser-agent: "
            + user_agent
            + b"\r\naccept-encoding: "
            + DECODABLE
            + b"\r\n"
        )


def encode_request(origin: Origin, headers: dict[str, str], body: bytes) -> bytes:
    """The request's bytes. Names and values are checked here too, as aiohttp did: a line
    break in a value would be a header (or a request) of its own."""
    if (
        "" in headers
        or _BAD_NAME.search("".join(headers))
        or _BAD_VALUE.search("".join(headers.values()))
    ):
        raise httpx.LocalProtocolError("a request header cannot be sent as it is")
    head = origin.head
    lines = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _REPLACEABLE:
            head = _replace(head, lowered.encode("ascii"), value)
        elif lowered not in _DROPPED:
            lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {len(body)}\r\n\r\n")
    return head + "".join(lines).encode("ascii") + body


def _replace(head: bytes, name: bytes, value: str) -> bytes:
    start = head.index(b"\r\n" + name + b": ") + 2
    end = head.index(b"\r\n", start)
    return head[:start] + name + b": " + value.encode("ascii") + head[end:]
