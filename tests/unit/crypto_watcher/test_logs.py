"""JSON log lines carry the service and the event's context; console lines stay readable."""

from __future__ import annotations

import io
import json
import logging

import pytest

from crypto_watcher import logs


def capture(fmt: str) -> tuple[io.StringIO, logging.Logger]:
    stream = io.StringIO()
    logs.setup_logging("INFO", "processor", fmt)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream, logging.getLogger("test.logs")


def test_json_lines_with_context_fields() -> None:
    stream, log = capture("json")
    logs.add_context_provider(lambda: {"topic": "crypto.ticks", "partition": 2, "offset": 41})
    try:
        log.warning("ALERT %s", "bitcoin:usd", extra={"coin": "bitcoin", "alert_id": "abc"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        logs._context_providers.pop()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "ALERT bitcoin:usd" and first["level"] == "warning" and first["service"] == "processor"
    assert (first["coin"], first["alert_id"], first["topic"], first["partition"], first["offset"]) == (
        "bitcoin",
        "abc",
        "crypto.ticks",
        2,
        41,
    )
    assert "ValueError: boom" in second["error"]


def test_console_lines_are_prose() -> None:
    stream, log = capture("console")
    log.info("published %d ticks", 3)
    assert stream.getvalue().rstrip().endswith("INFO    processor test.logs: published 3 ticks")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(SystemExit, match="CW_LOG_FORMAT='xml'"):
        logs.setup_logging("INFO", "x", "xml")
    with pytest.raises(SystemExit, match="CW_LOG_LEVEL='LOUD'"):
        logs.setup_logging("loud", "x")


def test_repeated_warnings_are_summarised() -> None:
    stream, log = capture("console")
    for _ in range(50):
        log.error("Kafka consumer error: 1/1 brokers are down")
    log.info("still here")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("brokers are down") and lines[1].endswith("still here")
    flt = logging.getLogger().handlers[0].filters[0]
    assert isinstance(flt, logs.RepeatFilter)
    record = logging.LogRecord(
        "test.logs", logging.ERROR, __file__, 1, "Kafka consumer error: 1/1 brokers are down", None, None
    )
    record.created += 31
    assert flt.filter(record) and record.getMessage().endswith("(repeated 49 more times in 30s)")
