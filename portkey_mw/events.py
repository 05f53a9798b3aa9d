"""The ``completion`` log event: one per intercepted request, on ``portkey_mw``'s logger.

The library never configures logging; events go to whatever structlog (and through it,
stdlib logging) the host set up. Levels: info for 2xx, warning for 4xx, error for 5xx.
No secret and no prompt text is ever part of an event.
"""

from __future__ import annotations

from typing import Any

import structlog

LOGGER = structlog.get_logger("portkey_mw")


def emit_completion(status: int, fields: dict[str, Any]) -> None:
    if status >= 500:
        LOGGER.error("completion", status=status, **fields)
    elif status >= 400:
        LOGGER.warning("completion", status=status, **fields)
    else:
        LOGGER.info("completion", status=status, **fields)
