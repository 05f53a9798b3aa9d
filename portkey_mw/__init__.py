"""portkey_mw: a pure ASGI middleware that makes ``POST /v1/completions`` on any Python web
app a Portkey-compatible LLM gateway."""

from portkey_mw._version import __version__
from portkey_mw.errors import GatewayError
from portkey_mw.middleware import PortkeyMiddleware
from portkey_mw.providers import REGISTRY as PROVIDERS
from portkey_mw.settings import Settings, SettingsError, VirtualKey, load_settings

__all__ = [
    "PROVIDERS",
    "GatewayError",
    "PortkeyMiddleware",
    "Settings",
    "SettingsError",
    "VirtualKey",
    "__version__",
    "load_settings",
]
