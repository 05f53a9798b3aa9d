"""The ``completion`` log event (a product surface with a pinned schema) and redaction.

The library never configures logging: events go to ``structlog.get_logger("portkey_mw")``,
so they reach whatever structlog (and through it, stdlib logging) the host set up. One
``completion`` event per intercepted request — info for 2xx, warning for 4xx, error for 5xx —
and one ``completion_attempt`` event per upstream attempt at debug level. No secret and, unless
the operator opts in (``log_prompts``), no prompt or completion text is ever part of an event.
"""

from __future__ import annotations

import logging
from collections.abc import KeysView, MutableMapping, Sequence
from typing import Any

import msgspec
import structlog

LOGGER = structlog.get_logger("portkey_mw")
_ASSEMBLED: list[Any] = []


def logger() -> Any:
    """The ``portkey_mw`` logger as structlog assembles it now.

    Once structlog keeps the assembled logger (``cache_logger_on_first_use``), the proxy never
    changes it again, so neither do we: keeping it saves the proxy's ``__getattr__`` and
    ``bind`` on every event (two or more per request). Without that setting every call
    assembles anew, so a reconfiguration takes effect at once, as structlog promises.
    """
    if _ASSEMBLED:
        return _ASSEMBLED[0]
    assembled = LOGGER.bind()
    if "bind" in vars(LOGGER):  # structlog replaced the proxy's bind: the logger is final
        _ASSEMBLED.append(assembled)
    return assembled


def debug_enabled(log: Any) -> bool:
    """Whether ``log`` keeps debug events (any logger without ``is_enabled_for``: yes)."""
    enabled = getattr(log, "is_enabled_for", None)
    return enabled is None or bool(enabled(logging.DEBUG))


def forget_logger() -> None:
    """Assemble the logger anew on the next event (``configure_logging`` calls this, so a
    new configuration reaches portkey_mw's events even after the first one was logged)."""
    _ASSEMBLED.clear()
    vars(LOGGER).pop("bind", None)  # the proxy's cached bind (see ``logger``)


class UsageField(msgspec.Struct, forbid_unknown_fields=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AttemptField(msgspec.Struct, forbid_unknown_fields=True):
    target: str
    provider: str
    status: int
    upstream_ms: float | None


class CompletionEvent(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The documented schema of the ``completion`` event (see README, "The completion log
    event"). ``tests/test_observability.py`` validates real events against it."""

    event: str
    status: int
    trace_id: str
    span_id: str
    latency_ms: float
    parent_span_id: str | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    provider: str | None = None
    model: str | None = None
    target: str | None = None
    stream: bool | None = None
    error_type: str | None = None
    error_param: str | None = None
    upstream_ms: float | None = None
    ttft_ms: float | None = None
    overhead_ms: float | None = None
    usage: UsageField | None = None
    cache_status: str | None = None
    retry_count: int | None = None
    attempts: list[AttemptField] | None = None
    dropped_params: list[str] | None = None
    prompt: str | None = None
    completion: str | None = None


def emit_completion(status: int, fields: dict[str, Any]) -> None:
    log = logger()
    method = "error" if status >= 500 else "warning" if status >= 400 else "info"
    # configure_logging's own logger takes the dict as it is (no keyword copies); any other
    # goes through its level method as usual.
    emit = getattr(log, "portkey_mw_emit", None)
    if emit is not None:
        emit(method, "completion", {"status": status, **fields})
    else:
        getattr(log, method)("completion", status=status, **fields)


# Keys whose values are secrets wherever they appear in an event (case-insensitive, with
# "-" and "_" treated alike).
SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "x_api_key",
        "api_key",
        "apikey",
        "x_portkey_api_key",
        "x_portkey_virtual_key",
        "azure_ad_token",
        "x_portkey_azure_ad_token",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "x_portkey_aws_access_key_id",
        "x_portkey_aws_secret_access_key",
        "x_portkey_aws_session_token",
        "x_amz_security_token",
        "password",
        "secret",
        "token",
        "modal_key",
        "modal_secret",
    }
)


def mask(value: str) -> str:
    """``sk-abcdef...xyz`` → ``sk********xyz``; short values are masked whole."""
    text = value.removeprefix("Bearer ").removeprefix("bearer ")
    if len(text) < 12:
        return "********"
    return f"{text[:2]}********{text[-3:]}"


# Names met before that are not secrets' names (bounded: keys can be anything). Set
# difference against it finds the names to check in C, so an event of known names costs
# no Python call per key.
_PLAIN_NAMES: set[str] = set()
_CONTAINERS = (dict, list)
# Most values are exactly one of these: ``type(v) in`` a set rules them out at half the
# cost of a failed ``isinstance(v, _CONTAINERS)`` (subclasses still get the isinstance).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _secret_names(keys: KeysView[Any]) -> Sequence[str]:
    if keys <= _PLAIN_NAMES:  # a view compared with a set: no temporary set
        return ()
    found: list[str] = []
    for key in keys - _PLAIN_NAMES:
        if not isinstance(key, str):
            continue
        if key.lower().replace("-", "_") in SECRET_KEYS:
            found.append(key)
        elif len(_PLAIN_NAMES) < 4096:
            _PLAIN_NAMES.add(key)
    return found


def _redact(value: Any) -> Any:
    """``value`` with secret-named keys masked; the same object when nothing changes."""
    if isinstance(value, dict):
        return _redact_dict(value)
    if isinstance(value, list):
        return _redact_list(value)
    return value


def _redact_dict(value: dict[Any, Any]) -> dict[Any, Any]:
    changed: dict[Any, Any] | None = None
    keys = value.keys()
    if not keys <= _PLAIN_NAMES:  # checked here too: no call for the usual dict
        for key in _secret_names(keys):
            if value[key]:
                changed = changed if changed is not None else dict(value)
                changed[key] = mask(str(value[key]))
    for key, item in value.items():
        if type(item) in _SCALARS:
            continue
        if isinstance(item, _CONTAINERS) and (changed is None or changed[key] is item):
            new = _redact(item)
            if new is not item:
                changed = changed if changed is not None else dict(value)
                changed[key] = new
    return value if changed is None else changed


def _redact_list(value: list[Any]) -> list[Any]:
    out: list[Any] | None = None
    for index, item in enumerate(value):
        if type(item) in _SCALARS:
            continue
        if isinstance(item, _CONTAINERS):
            new = _redact(item)
            if new is not item:
                out = out if out is not None else list(value)
                out[index] = new
    return value if out is None else out


def redact_secrets(
    logger: object, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor that masks secret-named keys anywhere in an event (headers
    dicts, nested options). Add it to your own chain; ``configure_logging`` includes it."""
    keys = event.keys()
    if not keys <= _PLAIN_NAMES:
        for key in _secret_names(keys):
            if event[key]:
                event[key] = mask(str(event[key]))
    for key, value in event.items():
        if type(value) in _SCALARS:
            continue
        if isinstance(value, _CONTAINERS):
            event[key] = _redact(value)
    return event
