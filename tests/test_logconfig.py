"""``configure_logging``'s direct path (no file): one JSON line per event, written straight to
the stream, with the same fields, order and redaction whatever way the event was made."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from portkey_mw.events import emit_completion, forget_logger
from portkey_mw.logconfig import configure_logging


@pytest.fixture(autouse=True)
def _leave_logging_as_found() -> Iterator[None]:
    """configure_logging caches the assembled logger: later tests must not write here."""
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    forget_logger()


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    return out


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_has_timestamp_level_and_event_first_then_every_field(
    stream: io.StringIO,
) -> None:
    log = structlog.get_logger("portkey_mw").bind(service="billing")
    structlog.contextvars.bind_contextvars(trace_id="trace-1")
    log.info("completion", status=200, usage={"total_tokens": 3})
    log.warning("slow", latency_ms=12.5)
    first, second = lines(stream)
    assert list(first)[:3] == ["timestamp", "level", "event"]
    assert first["timestamp"].endswith("Z")
    assert first["timestamp"][10] == "T"
    assert {k: v for k, v in first.items() if k != "timestamp"} == {
        "level": "info",
        "event": "completion",
        "service": "billing",
        "status": 200,
        "usage": {"total_tokens": 3},
        "trace_id": "trace-1",
    }
    assert second["level"] == "warning"
    assert second["latency_ms"] == 12.5


def test_the_call_wins_over_bound_context_and_contextvars(stream: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(user="from-contextvars", trace_id="t")
    log = structlog.get_logger("portkey_mw").bind(user="from-bind", region="eu")
    log.info("e", user="from-call")
    log.info("e")
    structlog.get_logger("portkey_mw").info("e")
    called, bound, plain = lines(stream)
    assert (called["user"], called["region"]) == ("from-call", "eu")
    assert bound["user"] == "from-bind"
    assert plain["user"] == "from-contextvars"


def test_secrets_are_masked_at_any_depth(stream: io.StringIO) -> None:
    log = structlog.get_logger("portkey_mw")
    log.info(
        "upstream",
        api_key="sk-live-1234567890abcdef",
        headers={"Authorization": "Bearer sk-live-abcdef1234567890"},
        attempts=[{"x-api-key": "sk-ant-0987654321fedcba", "status": 200}],
    )
    [line] = lines(stream)
    text = json.dumps(line)
    assert "1234567890abcdef" not in text
    assert "abcdef1234567890" not in text
    assert "0987654321fedcba" not in text
    assert line["attempts"][0]["status"] == 200


def test_an_exception_is_rendered_as_text(stream: io.StringIO) -> None:
    log = structlog.get_logger("portkey_mw")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    [line] = lines(stream)
    assert line["level"] == "error"
    assert "ValueError: boom" in line["exception"]


def test_levels_below_the_configured_one_are_dropped() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out, level=logging.WARNING)
    log = structlog.get_logger("portkey_mw")
    log.info("dropped")
    log.debug("dropped")
    log.error("kept", status=500)
    assert [(line["level"], line["event"]) for line in lines(out)] == [("error", "kept")]


def test_capture_logs_still_sees_events_after_configure_logging(stream: io.StringIO) -> None:
    """Tests of a host that uses ``configure_logging`` swap the chain: the direct path must
    step aside for it."""
    with capture_logs() as captured:
        structlog.get_logger("portkey_mw").info("completion", status=201)
    assert captured == [{"event": "completion", "status": 201, "log_level": "info"}]
    assert stream.getvalue() == ""


def test_console_rendering_is_one_line_per_event() -> None:
    out = io.StringIO()
    configure_logging(json=False, stream=out)
    structlog.get_logger("portkey_mw").info("completion", status=200, api_key="sk-abcdef123456789")
    text = out.getvalue()
    assert text.count("\n") == 1
    assert "completion" in text
    assert "status" in text
    assert "sk-abcdef123456789" not in text


def test_a_host_that_swaps_the_logger_factory_gets_each_level_through_its_method(
    stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    """A stdlib logger has no ``msg``: the direct path calls the level's own method."""
    structlog.configure(logger_factory=structlog.stdlib.LoggerFactory())
    with caplog.at_level(logging.INFO, logger="portkey_mw"):
        structlog.get_logger("portkey_mw").warning("completion", status=429)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert json.loads(record.getMessage())["status"] == 429


def test_the_completion_event_reads_the_same_as_a_keyword_call(stream: io.StringIO) -> None:
    """``emit_completion`` hands its dict over whole; the line must not tell."""
    fields = {"trace_id": "t-1", "usage": {"total_tokens": 3}, "api_key": "sk-abcdef123456789"}
    emit_completion(200, dict(fields))
    structlog.get_logger("portkey_mw").info("completion", status=200, **fields)
    emitted, called = lines(stream)
    assert list(emitted) == list(called)
    assert {k: v for k, v in emitted.items() if k != "timestamp"} == {
        k: v for k, v in called.items() if k != "timestamp"
    }
    assert emitted["api_key"] != fields["api_key"]


def test_the_completion_event_follows_the_configured_level() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out, level=logging.WARNING)
    emit_completion(200, {"trace_id": "ok"})
    emit_completion(429, {"trace_id": "limited"})
    emit_completion(502, {"trace_id": "down"})
    with capture_logs() as captured:
        emit_completion(503, {"trace_id": "captured"})
    assert [(line["level"], line["trace_id"]) for line in lines(out)] == [
        ("warning", "limited"),
        ("error", "down"),
    ]
    assert captured == [
        {"event": "completion", "status": 503, "trace_id": "captured", "log_level": "error"}
    ]
