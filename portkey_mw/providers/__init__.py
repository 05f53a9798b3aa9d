"""The provider registry: every module in this package that defines ``PROVIDER`` or
``PROVIDERS`` is registered under its Portkey slug. Adding a provider is adding a module."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

from portkey_mw.providers.base import Provider


def _discover() -> Mapping[str, Provider]:
    found: dict[str, Provider] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        declared = getattr(module, "PROVIDERS", ())
        single = getattr(module, "PROVIDER", None)
        for provider in (*declared, *((single,) if single is not None else ())):
            if not isinstance(provider, Provider):
                continue
            if provider.name in found:
                raise RuntimeError(f"provider {provider.name!r} is defined twice")
            found[provider.name] = provider
    return MappingProxyType(dict(sorted(found.items())))


REGISTRY: Mapping[str, Provider] = _discover()
"""Every provider, by slug (``openai``, ``azure-openai``, ``together-ai`` ...)."""

__all__ = ["REGISTRY", "Provider"]
