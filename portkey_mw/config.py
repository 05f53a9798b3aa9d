"""Routing configs (``x-portkey-config``, registered configs): strict decoding and validation.

A config is decoded into :class:`ConfigNode` trees. snake_case is canonical, camelCase keys
are accepted (normalised first, except inside ``override_params`` whose keys are request
params). Unknown keys, wrong types, empty targets and all-zero weights are 400s that give
the JSON path (``targets[1].weight``). Provider options (``resource_name``,
``aws_region`` ...) are collected into ``provider_options``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

import msgspec

from portkey_mw.errors import InvalidRequest

Codes = list[Annotated[int, msgspec.Meta(ge=100, le=599)]]


class RetrySettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    attempts: Annotated[int, msgspec.Meta(ge=0, le=5)]
    on_status_codes: Codes | None = None
    use_retry_after_header: bool | None = None
    use_retry_after_headers: bool | None = None

    @property
    def honour_retry_after(self) -> bool:
        return bool(self.use_retry_after_header or self.use_retry_after_headers)


class CacheSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    mode: Literal["simple", "semantic"]
    max_age: Annotated[int, msgspec.Meta(ge=1, le=7_776_000)] | None = None


class Condition(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    query: dict[str, Any]
    then: str


class Strategy(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    mode: Literal["single", "fallback", "loadbalance", "conditional"]
    on_status_codes: Codes | None = None
    conditions: list[Condition] | None = None
    default: str | None = None


class ConfigNode(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One node of a routing config: a strategy over targets, or a leaf target."""

    strategy: Strategy | None = None
    targets: Annotated[list[ConfigNode], msgspec.Meta(min_length=1)] | None = None
    name: str | None = None
    weight: Annotated[float, msgspec.Meta(ge=0)] | None = None
    provider: str | None = None
    api_key: str | None = None
    virtual_key: str | None = None
    override_params: dict[str, Any] | None = None
    retry: RetrySettings | None = None
    request_timeout: Annotated[int, msgspec.Meta(ge=1)] | None = None
    cache: CacheSettings | None = None
    custom_host: str | None = None
    forward_headers: list[str] | None = None
    strict_open_ai_compliance: bool | None = None
    # Accepted for compatibility with Portkey configs; the strategy's codes are what route.
    on_status_codes: Codes | None = None
    provider_options: dict[str, str] = {}

    @property
    def is_leaf(self) -> bool:
        return self.strategy is None


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_JSON_OBJECT = msgspec.json.Decoder(dict[str, Any])
_PATH = re.compile(r" - at `\$(.*)`$")


def snake(key: str) -> str:
    return _CAMEL.sub("_", key).lower()


def parse_config(raw: bytes | str | dict[str, Any], provider_options: Iterable[str]) -> ConfigNode:
    """Decode and validate a config (JSON text or an already-decoded object)."""
    if isinstance(raw, dict):
        data = raw
    else:
        try:
            data = _JSON_OBJECT.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            raise InvalidRequest(
                "Invalid config passed: x-portkey-config must be a JSON object (not nested too "
                "deeply) or the id of a registered config.",
                param="x-portkey-config",
            ) from None
    if "mode" in data and "options" in data:
        raise InvalidRequest(
            "This version of config (mode/options) is not supported; use strategy/targets.",
            param="x-portkey-config",
        )
    try:
        normalised = _normalise(data, frozenset(provider_options), "")
        node = msgspec.convert(normalised, ConfigNode, strict=True)
    except RecursionError:
        raise InvalidRequest(
            "Invalid config passed: nested too deeply.", param="x-portkey-config"
        ) from None
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH.search(text)
        path = _dotted(match.group(1)) if match else ""
        message = _PATH.sub("", text)
        raise InvalidRequest(
            f"Invalid config passed: {message}" + (f" (at {path})" if path else ""),
            param=f"x-portkey-config.{path}" if path else "x-portkey-config",
        ) from None
    _check_tree(node, "")
    return node


def _dotted(msgspec_path: str) -> str:
    return msgspec_path.removeprefix(".")


def _normalise(obj: dict[str, Any], options: frozenset[str], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    collected: dict[str, Any] = {}
    for key, value in obj.items():
        name = snake(key)
        here = f"{path}.{name}" if path else name
        if name == "provider_options":
            _fail(f"unknown key '{key}'", here)
        if name in options:
            if not isinstance(value, str):
                _fail(f"'{key}' must be a string", here)
            collected[name] = value
            continue
        if name in out:
            _fail(f"'{key}' is given twice (snake_case and camelCase)", here)
        if name == "targets" and isinstance(value, list):
            out[name] = [
                _normalise(t, options, f"{here}[{i}]") if isinstance(t, dict) else t
                for i, t in enumerate(value)
            ]
        elif name in ("retry", "cache", "strategy") and isinstance(value, dict):
            out[name] = {snake(k): v for k, v in value.items()}
        else:
            out[name] = value
    if collected:
        out["provider_options"] = collected
    return out


def _check_tree(node: ConfigNode, path: str) -> None:
    if node.strategy is not None:
        if not node.targets:
            _fail("a strategy needs a non-empty 'targets' list", _join(path, "targets"))
        if node.strategy.mode == "loadbalance" and not any(
            (t.weight if t.weight is not None else 1) > 0 for t in node.targets or ()
        ):
            _fail("every loadbalance target has weight 0", _join(path, "targets"))
        if node.strategy.mode == "conditional":
            _check_conditional(node, path)
    elif node.targets:
        _fail("'targets' needs a 'strategy'", _join(path, "strategy"))
    for i, child in enumerate(node.targets or ()):
        _check_tree(child, _join(path, f"targets[{i}]"))


def _check_conditional(node: ConfigNode, path: str) -> None:
    strategy, targets = node.strategy, node.targets or []
    assert strategy is not None
    names = {t.name for t in targets if t.name}
    conditions = strategy.conditions or []
    if not conditions:
        _fail("a conditional strategy needs 'conditions'", _join(path, "strategy.conditions"))
    for i, condition in enumerate(conditions):
        if condition.then not in names:
            _fail(
                f"no target is named '{condition.then}'",
                _join(path, f"strategy.conditions[{i}].then"),
            )
    default = strategy.default
    if default is not None and default not in names:
        _fail(f"no target is named '{default}'", _join(path, "strategy.default"))


def _join(path: str, leaf: str) -> str:
    return f"{path}.{leaf}" if path else leaf


def _fail(message: str, path: str) -> None:
    raise InvalidRequest(
        f"Invalid config passed: {message} (at {path})",
        param=f"x-portkey-config.{path}",
    )
