"""Gateway errors and the one error shape every client sees.

Every failure a client can cause, and every failure a provider can cause, becomes a
:class:`GatewayError` with an HTTP status and the OpenAI error body
``{"error": {"message", "type", "param", "code"}}`` (plus ``"provider"`` when the provider
produced it). Nothing else ever reaches a client: no traceback, no internal address, no secret.

Tree::

    GatewayError
    ├── InvalidRequest          400 invalid_request_error (param names the field or header)
    ├── AuthenticationFailed    401 authentication_error
    ├── MethodNotAllowed        405
    ├── PayloadTooLarge         413
    ├── UnsupportedMediaType    415
    ├── UpstreamTimeout         408 timeout_error (Portkey's status, so configs listing 408 work)
    └── UpstreamUnavailable     502 upstream_error (unreachable or unreadable provider)
"""

from __future__ import annotations

from typing import Any

import msgspec


class ErrorDetail(msgspec.Struct, omit_defaults=False):
    """The inner ``error`` object of the OpenAI error shape."""

    message: str
    type: str | None = None
    param: str | None = None
    code: str | None = None


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """The OpenAI error shape, with ``provider`` when a provider produced the error."""

    error: ErrorDetail
    provider: str | None = None


_ENCODER = msgspec.json.Encoder()


class GatewayError(Exception):
    """A failure that is answered with an HTTP status and an OpenAI-shaped error body."""

    status: int = 500
    error_type: str = "api_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        error_type: str | None = None,
        provider: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.provider = provider
        self.headers = headers
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type

    def body(self) -> ErrorBody:
        detail = ErrorDetail(self.message, self.error_type, self.param, self.code)
        return ErrorBody(detail, self.provider)

    def encode(self) -> bytes:
        return _ENCODER.encode(self.body())


class InvalidRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    error_type = "authentication_error"


class MethodNotAllowed(GatewayError):
    status = 405
    error_type = "invalid_request_error"


class PayloadTooLarge(GatewayError):
    status = 413
    error_type = "invalid_request_error"


class UnsupportedMediaType(GatewayError):
    status = 415
    error_type = "invalid_request_error"


class UpstreamTimeout(GatewayError):
    status = 408
    error_type = "timeout_error"


class UpstreamUnavailable(GatewayError):
    status = 502
    error_type = "upstream_error"


class StreamFailure(Exception):
    """The provider reported an error inside a stream that had already started."""

    def __init__(self, message: str, error_type: str | None = "upstream_error") -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        # Frames the same upstream read carried before the error: still sent, then the error.
        self.frames_before: list[bytes] = []


def encode_json(value: Any) -> bytes:
    """Compact JSON (msgspec) for response bodies built by the gateway."""
    return _ENCODER.encode(value)
