"""Wire helpers for the Bedrock tests, written from AWS's specifications without botocore (so
they check botocore's use, not reuse it): an event-stream frame encoder and a SigV4 verifier.
The tests here pin the helpers themselves; the other test_bedrock* modules import them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from portkey_mw.providers.bedrock.signing import reset_credential_cache

SECRET = "fakeSecretAccessKey/0123456789abcdefghij"
KEY_ID = "AKIAFAKEACCESSKEY001"


# --- AWS event-stream framing ------------------------------------------------------------------


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (lengths + CRC), string headers, payload, CRC."""
    encoded = b"".join(
        bytes([len(name)])
        + name.encode()
        + b"\x07"
        + len(value.encode()).to_bytes(2, "big")
        + value.encode()
        for name, value in headers.items()
    )
    prelude = (16 + len(encoded) + len(payload)).to_bytes(4, "big")
    prelude += len(encoded).to_bytes(4, "big")
    message = prelude + zlib.crc32(prelude).to_bytes(4, "big") + encoded + payload
    return message + zlib.crc32(message).to_bytes(4, "big")


def chunk_frame(model_chunk: Any) -> bytes:
    """A Bedrock ``chunk`` event carrying a model's JSON chunk as base64 ``bytes``."""
    inner = base64.b64encode(json.dumps(model_chunk).encode()).decode()
    payload = json.dumps({"bytes": inner, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGH"}).encode()
    headers = {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return frame(headers, payload)


def exception_frame(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, json.dumps({"message": message}).encode())


# --- SigV4 verification --------------------------------------------------------------------------

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
    r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$"
)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sigv4_scope(headers: Mapping[str, str]) -> dict[str, str]:
    match = _AUTH.match(headers.get("authorization", ""))
    assert match, headers.get("authorization")
    key_id, date, region, service, signed, _ = match.groups()
    return {
        "key_id": key_id,
        "date": date,
        "region": region,
        "service": service,
        "signed": signed,
    }


def verify_sigv4(
    raw_path: str, headers: Mapping[str, str], body: bytes, secret: str = SECRET
) -> bool:
    """Does this request (path and query exactly as sent) carry a valid SigV4 signature?"""
    headers = {k.lower(): v for k, v in headers.items()}
    match = _AUTH.match(headers.get("authorization", ""))
    if match is None:
        return False
    _, date, region, service, signed, signature = match.groups()
    payload_hash = hashlib.sha256(body).hexdigest()
    if headers.get("x-amz-content-sha256", payload_hash) != payload_hash:
        return False
    path, _, query = raw_path.partition("?")
    canonical_path = "/".join(quote(part, safe="-_.~") for part in path.split("/"))
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted(parse_qsl(query, keep_blank_values=True))
    )
    names = signed.split(";")
    canonical_headers = "".join(f"{n}:{' '.join(headers.get(n, '').split())}\n" for n in names)
    request = "\n".join(
        ["POST", canonical_path, canonical_query, canonical_headers, signed, payload_hash]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            headers.get("x-amz-date", ""),
            scope,
            hashlib.sha256(request.encode()).hexdigest(),
        ]
    )
    key = _hmac(
        _hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service), "aws4_request"
    )
    return hmac.compare_digest(
        hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature
    )


# --- a clean AWS environment for every Bedrock test --------------------------------------------


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """No ambient AWS credentials (env, files, instance metadata) and no cached chain."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reset_credential_cache()
    yield
    reset_credential_cache()


# --- the helpers themselves ------------------------------------------------------------------------


def test_frames_parse_with_valid_crcs() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(chunk_frame({"completion": "hi"}) + exception_frame("throttlingException", "x"))
    first, second = list(buffer)
    assert first.headers[":event-type"] == "chunk"
    assert json.loads(base64.b64decode(json.loads(first.payload)["bytes"])) == {"completion": "hi"}
    assert second.headers[":message-type"] == "exception"


def test_a_flipped_byte_breaks_the_crc() -> None:
    raw = bytearray(chunk_frame({"completion": "hi"}))
    raw[-10] ^= 0xFF
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(raw))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


def test_verifier_agrees_with_botocore_and_rejects_any_change() -> None:
    """A POST whose path holds a percent-encoded ':' (encoded once more when signing)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = b'{"prompt":"x"}'
    url = "http://127.0.0.1:9/model/anthropic.claude-v2%3A1/invoke"
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"content-type": "application/json", "host": "127.0.0.1:9"},
    )
    SigV4Auth(Credentials(KEY_ID, SECRET), "bedrock", "us-west-2").add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert verify_sigv4("/model/anthropic.claude-v2%3A1/invoke", headers, body)
    assert not verify_sigv4("/model/anthropic.claude-v2:1/invoke", headers, body)
    assert not verify_sigv4("/model/anthropic.claude-v2%3A1/invoke", headers, body + b" ")
    assert not verify_sigv4("/model/anthropic.claude-v2%3A1/invoke", headers, body, "wrong")
