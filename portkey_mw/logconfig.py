"""``configure_logging``: JSON lines (or console lines) on stdout and, optionally, a rotating
file — for the standalone gateway and for hosts that want it. The middleware itself never
calls this.

Events go through stdlib logging handlers (one write per line, so lines from several threads
never interleave), and stdlib records of other libraries (uvicorn's start-up lines, say) are
rendered the same way, so a collector reads one JSON object per line.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from typing import TextIO

import structlog

from portkey_mw.events import redact_secrets


def _event_first(
    logger: object, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Put ``timestamp``, ``level`` and ``event`` first so lines read well in a terminal."""
    head = {k: event.pop(k) for k in ("timestamp", "level", "event") if k in event}
    return {**head, **event}


def configure_logging(
    *,
    json: bool = True,
    level: int = logging.INFO,
    stream: TextIO | None = None,
    file: str | None = None,
    file_max_bytes: int = 10 * 1024 * 1024,
    file_backups: int = 5,
) -> None:
    """Configure structlog and stdlib logging to write one line per event."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            _event_first,
            renderer,
        ],
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stdout)]
    if file is not None:
        handlers.append(
            logging.handlers.RotatingFileHandler(
                file, maxBytes=file_max_bytes, backupCount=file_backups, encoding="utf-8"
            )
        )
    for handler in handlers:
        handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every upstream call at INFO; the completion event already says it all.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
