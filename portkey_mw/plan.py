"""Resolve a request's routing plan: headers, virtual keys and configs → a tree of targets.

Precedence (gateway.md §2.6): a config with ``provider``/``virtual_key``/``targets`` decides
providers and keys; otherwise the provider comes from ``x-portkey-provider`` (or
``x-portkey-virtual-key``) with the key from ``Authorization`` and the provider's
``x-portkey-*`` option headers, and the config only adds retry, timeout, cache and the like.
``x-portkey-request-timeout``, ``-forward-headers`` and ``-custom-host`` beat the config for
every target. Inheritance down the tree follows gateway.md §3.3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import msgspec

from portkey_mw.config import CacheSettings, ConfigNode, RetrySettings, Strategy, parse_config
from portkey_mw.errors import InvalidRequest
from portkey_mw.headers import (
    RequestHeaders,
    check_custom_host,
    forwardable,
    validate_forward_headers,
)
from portkey_mw.providers.base import Provider, Target
from portkey_mw.settings import Settings, SettingsError, VirtualKey


class Leaf(msgspec.Struct, frozen=True, gc=False):
    """One target to call, with everything inherited down to it."""

    path: str
    target: Target
    override_params: Mapping[str, Any]
    retry: RetrySettings | None
    timeout_ms: int | None
    cache: CacheSettings | None
    forward_headers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Branch:
    """A strategy over child nodes (``single``, ``fallback``, ``loadbalance``, ``conditional``)."""

    path: str
    strategy: Strategy
    children: tuple[Leaf | Branch, ...]
    weights: tuple[float, ...]
    names: tuple[str | None, ...]


Node = Leaf | Branch


@dataclass(frozen=True, slots=True)
class _Inherited:
    override_params: Mapping[str, Any]
    retry: RetrySettings | None
    timeout_ms: int | None
    cache: CacheSettings | None
    forward_headers: tuple[str, ...] | None
    custom_host: str | None


# Shared, never mutated: inheritance builds new values (see ``_inherit``).
_NOTHING_INHERITED = _Inherited(
    override_params=MappingProxyType({}),
    retry=None,
    timeout_ms=None,
    cache=None,
    forward_headers=None,
    custom_host=None,
)
_EMPTY_CONFIG = ConfigNode()
_MAX_CACHED_CONFIG_CHARS = 16 * 1024


class Planner:
    """Built once per middleware: the registry, settings and pre-validated registered configs."""

    def __init__(self, settings: Settings, registry: Mapping[str, Provider]) -> None:
        self.settings = settings
        self.registry = registry
        self.option_names = frozenset(n for p in registry.values() for n in p.option_names)
        # Clients send the same inline config on every request: parse each text once. The
        # trees are never mutated (planning builds new values); invalid texts are not kept.
        self._inline_config = lru_cache(maxsize=256)(self._parse_inline)
        self.allowed_hosts = frozenset(h.lower().rstrip("/") for h in settings.allowed_custom_hosts)
        self.configs = {}
        for config_id, raw in settings.configs.items():
            try:
                self.configs[config_id] = parse_config(raw, self.option_names)
            except InvalidRequest as exc:
                raise SettingsError(f"settings key 'configs.{config_id}': {exc.message}") from None
        for name, key in settings.virtual_keys.items():
            if key.provider not in registry:
                raise SettingsError(f"virtual key '{name}' names unknown provider '{key.provider}'")

    def config_for(self, headers: RequestHeaders) -> ConfigNode | None:
        if headers.config is None:
            return None
        if headers.config.startswith("{"):
            if len(headers.config) > _MAX_CACHED_CONFIG_CHARS:  # keep the cache's memory small
                return self._parse_inline(headers.config)
            return self._inline_config(headers.config)
        config = self.configs.get(headers.config)
        if config is None:
            raise InvalidRequest(
                f"Unknown config id '{headers.config[:64]}': x-portkey-config must be a JSON "
                "object or the id of a config registered with this gateway.",
                param="x-portkey-config",
            )
        return config

    def _parse_inline(self, text: str) -> ConfigNode:
        return parse_config(text, self.option_names)

    def plan(self, headers: RequestHeaders) -> Node:
        if headers.provider is not None:
            self.provider(headers.provider, "x-portkey-provider")
        config = self.config_for(headers)
        if config is None:  # headers only: nothing to inherit
            return self._header_leaf(headers, _EMPTY_CONFIG, _NOTHING_INHERITED)
        if config.provider is None and config.virtual_key is None and config.targets is None:
            return self._header_leaf(headers, config, _inherit(_NOTHING_INHERITED, config))
        registered = headers.config is not None and not headers.config.startswith("{")
        return self._node(config, "config", headers, _NOTHING_INHERITED, registered)

    def provider(self, name: str, param: str) -> Provider:
        provider = self.registry.get(name)
        if provider is None:
            raise InvalidRequest(
                f"Invalid provider passed: '{name[:64]}'. Supported providers: "
                + ", ".join(self.registry),
                param=param,
            )
        return provider

    def virtual_key(self, name: str, param: str) -> VirtualKey:
        key = self.settings.virtual_keys.get(name)
        if key is None:
            raise InvalidRequest(
                f"Unknown virtual key '{name[:64]}'.", param=param, code="invalid_virtual_key"
            )
        return key

    def _header_leaf(
        self, headers: RequestHeaders, root: ConfigNode, inherited: _Inherited
    ) -> Leaf:
        if headers.virtual_key is not None:
            key = self.virtual_key(headers.virtual_key, "x-portkey-virtual-key")
            provider = self.provider(key.provider, "x-portkey-virtual-key")
            options = {**key.options, **root.provider_options}
            trusted = key.options
            api_key = key.api_key
            host = key.custom_host
        elif headers.provider is not None:
            provider = self.provider(headers.provider, "x-portkey-provider")
            options = {
                **headers.options_for(provider.option_headers),
                **root.provider_options,
            }
            trusted = {}
            api_key = headers.api_key or next(
                (
                    headers.raw[h].strip()
                    for h in provider.key_headers
                    if headers.raw.get(h, "").strip()
                ),
                None,
            )
            host = None
        else:
            raise InvalidRequest(
                "Either x-portkey-config or x-portkey-provider header is required: send "
                "'x-portkey-provider: openai' (or another provider) with 'Authorization: Bearer "
                "<provider key>', an 'x-portkey-virtual-key', or an 'x-portkey-config' whose "
                "targets name providers.",
                param="x-portkey-provider",
            )
        return self._leaf("config", provider, api_key, options, host, headers, inherited, trusted)

    def _node(
        self,
        node: ConfigNode,
        path: str,
        headers: RequestHeaders,
        parent: _Inherited,
        registered: bool,
    ) -> Node:
        inherited = _inherit(parent, node)
        if node.strategy is not None and node.targets:
            children = tuple(
                self._node(child, f"{path}.targets[{i}]", headers, inherited, registered)
                for i, child in enumerate(node.targets)
            )
            weights = tuple(t.weight if t.weight is not None else 1.0 for t in node.targets)
            names = tuple(t.name for t in node.targets)
            return Branch(path, node.strategy, children, weights, names)
        api_key = node.api_key
        options = dict(node.provider_options)
        # Operator-set values (a registered config, a virtual key) need no host check.
        trusted: Mapping[str, str] = options if registered else {}
        host = None
        provider_param = f"x-portkey-config.{_rel(path)}provider"
        if node.virtual_key is not None:
            key = self.virtual_key(node.virtual_key, f"x-portkey-config.{_rel(path)}virtual_key")
            provider_name = node.provider or key.provider
            if provider_name != key.provider:
                raise InvalidRequest(
                    f"The virtual key at {path} is for '{key.provider}', not '{provider_name}'.",
                    param=provider_param,
                )
            api_key = api_key or key.api_key
            options = {**key.options, **options}
            trusted = {**key.options, **trusted}
            host = key.custom_host
        elif node.provider is not None:
            provider_name = node.provider
        else:
            raise InvalidRequest(
                f"Invalid config passed: the target at {path} needs 'provider' or 'virtual_key'.",
                param=provider_param,
            )
        provider = self.provider(provider_name, provider_param)
        return self._leaf(path, provider, api_key, options, host, headers, inherited, trusted)

    def _leaf(
        self,
        path: str,
        provider: Provider,
        api_key: str | None,
        options: dict[str, str],
        key_host: str | None,
        headers: RequestHeaders,
        inherited: _Inherited,
        trusted: Mapping[str, str],
    ) -> Leaf:
        host = headers.custom_host or inherited.custom_host or key_host
        param = (
            "x-portkey-custom-host"
            if headers.custom_host
            else f"x-portkey-config.{_rel(path)}custom_host"
        )
        if host is not None and not (key_host is not None and host == key_host):
            host = check_custom_host(host, self.allowed_hosts, param)
        for name in provider.url_options:
            value = options.get(name)
            if value and trusted.get(name) != value:
                check_custom_host(value, self.allowed_hosts, _option_param(provider, name, path))
        if inherited.cache is not None and inherited.cache.mode == "semantic":
            raise InvalidRequest(
                "Semantic caching is not supported by this gateway; use cache mode 'simple'.",
                param="x-portkey-config.cache.mode",
            )
        forward = (
            headers.forward_headers
            if headers.forward_headers is not None
            else inherited.forward_headers
        )
        timeout = headers.request_timeout_ms or inherited.timeout_ms
        target = Target(provider, api_key, options, host, self.settings.ambient_credentials)
        return Leaf(
            path,
            target,
            inherited.override_params,
            inherited.retry,
            timeout,
            inherited.cache,
            forwardable(forward or ()),
        )


def _inherit(parent: _Inherited, node: ConfigNode) -> _Inherited:
    if node.forward_headers is not None:
        validate_forward_headers(node.forward_headers, "x-portkey-config")
    return _Inherited(
        override_params={**parent.override_params, **(node.override_params or {})},
        retry=node.retry if node.retry is not None else parent.retry,
        timeout_ms=node.request_timeout if node.request_timeout is not None else parent.timeout_ms,
        cache=node.cache if node.cache is not None else parent.cache,
        forward_headers=(
            tuple(node.forward_headers)
            if node.forward_headers is not None
            else parent.forward_headers
        ),
        custom_host=node.custom_host if node.custom_host is not None else parent.custom_host,
    )


def _rel(path: str) -> str:
    rest = path.removeprefix("config").removeprefix(".")
    return f"{rest}." if rest else ""


def _option_param(provider: Provider, name: str, path: str) -> str:
    if path != "config":
        return f"x-portkey-config.{_rel(path)}{name}"
    aliases = provider.header_aliases.get(name, ())
    header = next((a for a in aliases if a.startswith("x-portkey-")), None)
    return header or "x-portkey-" + name.replace("_", "-")
