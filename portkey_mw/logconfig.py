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
import time
from collections.abc import Callable
from typing import Any, TextIO, cast

import msgspec
import structlog

from portkey_mw.events import forget_logger, redact_secrets


def _event_first(
    logger: object, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Put ``timestamp``, ``level`` and ``event`` first so lines read well in a terminal."""
    head = {k: event.pop(k) for k in ("timestamp", "level", "event") if k in event}
    return {**head, **event}


_second_text: list[tuple[int, str]] = [(-1, "")]


def _utc_now_iso() -> str:
    """``2026-11-30T04:26:48.953414Z``: the text of the current second is made once per
    second (a quarter of the cost of ``datetime.now().isoformat()`` per event)."""
    now = time.time()
    second = int(now)
    cached = _second_text[0]
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _second_text[0] = cached
    return f"{cached[1]}.{int((now - second) * 1_000_000):06d}Z"


def add_timestamp(
    logger: object, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Like ``TimeStamper(fmt="iso", utc=True)``, always with microseconds."""
    event["timestamp"] = _utc_now_iso()
    return event


_METHOD_LEVELS = {"warn": "warning", "exception": "error"}
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _one_pass(render: Callable[[str, dict[str, Any]], str]) -> structlog.typing.Processor:
    """The whole chain of the direct path in one processor: contextvars, level, timestamp,
    exception text, redaction, key order, rendering. One call per event instead of seven
    (the completion event is on every request's path)."""
    merge = structlog.contextvars.merge_contextvars
    format_exc = structlog.processors.format_exc_info

    def process(logger: object, method: str, event: structlog.typing.EventDict) -> str:
        event = merge(logger, method, event)
        if "exc_info" in event:
            event = format_exc(logger, method, event)
        redact_secrets(logger, method, event)
        line = {
            "timestamp": _utc_now_iso(),
            "level": _METHOD_LEVELS.get(method, method),
            "event": event.pop("event", None),
        }
        event.pop("timestamp", None)
        event.pop("level", None)
        line.update(event)
        return render(method, line)

    return process


def _direct_logger_class(level: int, chain: structlog.typing.Processor) -> type[Any]:
    """structlog's filtering bound logger for ``level``, whose events go straight through
    ``chain`` while it is the whole configured chain.

    structlog's generic path copies every event twice more, calls the chain through a loop
    and checks the result for five types; on the completion event, on every request, that
    is measurable. Any other chain (``structlog.testing.capture_logs``, say) takes the
    generic path, so nothing changes for it.
    """
    base: type[Any] = structlog.make_filtering_bound_logger(level)

    class DirectBoundLogger(base):  # type: ignore[misc]
        def _proxy_to_logger(
            self, method_name: str, event: str | None = None, **event_kw: Any
        ) -> Any:
            # event_kw is this call's own dict: the event is built in it.
            return self._direct(method_name, event, event_kw)

        def portkey_mw_emit(self, method_name: str, event: str, fields: dict[str, Any]) -> Any:
            """``self.<method_name>(event, **fields)``, taking ``fields`` as the event's own
            dict (it is changed) without the two keyword copies of a call: for the
            completion event, which is built field by field on every request."""
            if _LEVELS[method_name] < level:
                return None
            return self._direct(method_name, event, fields)

        def _direct(self, method_name: str, event: str | None, event_kw: dict[str, Any]) -> Any:
            processors = self._processors
            if len(processors) != 1 or processors[0] is not chain:
                return super()._proxy_to_logger(method_name, event, **event_kw)
            if self._context:
                event_kw = {**self._context, **event_kw}
            if event is not None:
                event_kw["event"] = event
            # The logger's own method for the level, as structlog calls it (a WriteLogger's
            # are all ``msg``; another factory's may not be). The chain never drops events.
            return getattr(self._logger, method_name)(chain(self._logger, method_name, event_kw))

    return DirectBoundLogger


def configure_logging(
    *,
    json: bool = True,
    level: int = logging.INFO,
    stream: TextIO | None = None,
    file: str | None = None,
    file_max_bytes: int = 10 * 1024 * 1024,
    file_backups: int = 5,
) -> None:
    """Configure structlog and stdlib logging to write one line per event.

    Without ``file``, structlog writes its events straight to ``stream`` (one write per line,
    no stdlib machinery: ~7x cheaper per event, measured in ``benchmarks/``); other
    libraries' stdlib records are rendered the same way onto the same stream. With ``file``,
    events go through stdlib handlers so the file can rotate.
    """
    output = stream or sys.stdout
    forget_logger()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_timestamp,
    ]
    finish: list[structlog.typing.Processor] = [
        structlog.processors.format_exc_info,
        redact_secrets,
        _event_first,
        renderer,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(output)]
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
    if file is None:
        chain = _one_pass(_json_line if json else _console_line(renderer))
        structlog.configure(
            processors=[chain],
            wrapper_class=_direct_logger_class(level, chain),
            logger_factory=structlog.WriteLoggerFactory(output),
            cache_logger_on_first_use=True,
        )
        return
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


_ENCODER = msgspec.json.Encoder(enc_hook=str)


def _dumps(obj: object, **_: object) -> str:
    return _ENCODER.encode(obj).decode()


def _json_line(method: str, line: dict[str, Any]) -> str:
    return _ENCODER.encode(line).decode()


def _console_line(
    renderer: structlog.typing.Processor,
) -> Callable[[str, dict[str, Any]], str]:
    def render(method: str, line: dict[str, Any]) -> str:
        return cast(str, renderer(None, method, line))  # ConsoleRenderer renders to str

    return render
