"""Operator settings: the middleware's keyword arguments and the gateway's TOML file.

Both are decoded by msgspec into :class:`Settings`, so a wrong key or type stops start-up
with a message that names it. In TOML, string values like ``"${OPENAI_API_KEY}"`` are taken
from the environment (a missing variable is an error naming the key).
"""

from __future__ import annotations

import importlib.util
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class VirtualKey(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A named credential set in the operator's key store."""

    provider: str
    api_key: str | None = None
    custom_host: str | None = None
    # Provider options under their snake_case names (resource_name, aws_region ...).
    options: dict[str, str] = {}


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Everything an operator can set. Defaults are what a production gateway wants."""

    path: str = "/v1/completions"
    max_body_bytes: PositiveInt = 8 * 1024 * 1024
    max_response_bytes: PositiveInt = 32 * 1024 * 1024
    api_keys: list[str] = []
    allowed_custom_hosts: list[str] = []
    virtual_keys: dict[str, VirtualKey] = {}
    configs: dict[str, dict[str, Any]] = {}
    connect_timeout: PositiveFloat = 10.0
    read_timeout: PositiveFloat = 600.0
    max_connections: PositiveInt = 512
    # The middleware's own upstream client: portkey_mw's lean HTTP/1.1 pool, or aiohttp's.
    upstream_client: Literal["http1", "aiohttp"] = "http1"
    retry_backoff_ms: Annotated[int, msgspec.Meta(ge=0)] = 1000
    retry_backoff_max_ms: Annotated[int, msgspec.Meta(ge=0)] = 16_000
    retry_after_cap_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    cache_url: str | None = None
    cache_max_entries: PositiveInt = 10_000
    cache_max_bytes: PositiveInt = 256 * 1024 * 1024
    cache_max_entry_bytes: PositiveInt = 4 * 1024 * 1024
    cache_timeout_ms: PositiveInt = 100
    ambient_credentials: bool = True
    max_fanout: PositiveInt = 32
    overhead_header: bool = False
    propagate_trace_context: Literal["auto", "always", "never"] = "auto"
    log_prompts: bool = False
    log_text_max_chars: PositiveInt = 2000


class SettingsError(ValueError):
    """Settings that cannot start the gateway; the message names the key."""


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def build_settings(values: dict[str, Any]) -> Settings:
    """Validate keyword settings (the middleware's ``**settings``)."""
    for table, kind in (("virtual_keys", VirtualKey), ("configs", dict[str, Any])):
        entries = values.get(table)
        if isinstance(entries, dict):
            for name, entry in entries.items():
                try:
                    msgspec.convert(entry, kind, strict=True)
                except msgspec.ValidationError as exc:
                    where = f"{table}.{name}"
                    raise SettingsError(
                        f"invalid portkey_mw settings: {_describe(exc, where)}"
                    ) from None
    try:
        settings = msgspec.convert(values, Settings, strict=True)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid portkey_mw settings: {_describe(exc)}") from None
    if not settings.path.startswith("/"):
        raise SettingsError("invalid portkey_mw settings: 'path' must start with '/'")
    url = settings.cache_url
    if url is not None and url != "memory://":
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(
                "invalid portkey_mw settings: 'cache_url' must be memory:// or a redis:// URL"
            )
        if importlib.util.find_spec("redis") is None:
            raise SettingsError(
                "'cache_url' names Redis but the redis package is missing: "
                "pip install 'portkey_mw[redis]'"
            )
    return settings


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Load the gateway's TOML settings file, with ``${ENV}`` values substituted."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from None
    return build_settings(_substitute(raw, ""))


def _substitute(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise SettingsError(
                    f"settings key '{where}' refers to ${{{name}}}, which is not set"
                )
            return os.environ[name]

        return _ENV.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _describe(exc: msgspec.ValidationError, prefix: str = "") -> str:
    text = str(exc)
    if " - at `$" in text:
        message, _, path = text.partition(" - at `$")
        key = prefix + path.rstrip("`") if prefix else path.rstrip("`").removeprefix(".")
        return f"{message} (key '{key}')"
    return f"{text} (key '{prefix}')" if prefix else text
