"""``configure_logging``: JSON lines (or console) for the standalone gateway and for hosts
that want it. The middleware itself never calls this."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def _event_first(
    logger: object, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Put ``event``, ``level`` and ``timestamp`` first so lines read well in a terminal."""
    head = {k: event.pop(k) for k in ("timestamp", "level", "event") if k in event}
    return {**head, **event}


def configure_logging(
    *, json: bool = True, level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Configure structlog (and stdlib logging) to write one line per event."""
    output = stream or sys.stdout
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _event_first,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # one write per line, so lines from several threads never interleave
        logger_factory=structlog.WriteLoggerFactory(output),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, stream=output, format="%(message)s", force=True)
    # httpx logs every upstream call at INFO; the completion event already says it all.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
