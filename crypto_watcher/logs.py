"""Logging for every service: JSON lines for machines, readable lines for people.

``CW_LOG_FORMAT=json`` writes one JSON object per event (time, level, service, logger, message, and
the context a reader needs: coin, topic, partition, offset, when known); ``console`` writes
readable lines; ``auto`` (default) picks console on a terminal and JSON otherwise, so containers
ship JSON to log collectors while a developer sees prose. ``CW_LOG_LEVEL`` sets the level.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from crypto_watcher.config import LogSettings

CONTEXT_FIELDS = ("coin", "vs", "key", "topic", "partition", "offset", "alert_id", "kind")
_context_providers: list[Callable[[], dict[str, Any]]] = []


def add_context_provider(provider: Callable[[], dict[str, Any]]) -> None:
    """Register a function giving context for the current event (e.g. the Kafka message being processed)."""
    _context_providers.append(provider)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for provider in _context_providers:
            with contextlib.suppress(Exception):  # context is a nicety; never lose the event over it
                event.update({k: v for k, v in provider().items() if v is not None})
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                event[name] = value
        if record.exc_info:
            event["error"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str)


class RepeatFilter(logging.Filter):
    """Let an identical message through once per ``window_s``; then say how often it repeated.

    During an outage librdkafka reports the same "brokers are down" many times a second; one line
    per half minute tells the reader the same thing without burying everything else.
    """

    def __init__(self, window_s: float = 30.0) -> None:
        super().__init__()
        self.window_s = window_s
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [first shown at, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = record.created
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.window_s:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.getMessage()} (repeated {int(seen[1])} more times in {self.window_s:.0f}s)"
            record.args = None
        self._seen[key] = [now, 0]
        if len(self._seen) > 10_000:
            self._seen.clear()
        return True


def setup_logging(level: str | None = None, name: str = "crypto-watcher", log_format: str | None = None) -> None:
    settings = LogSettings()  # CW_LOG_LEVEL, CW_LOG_FORMAT; the arguments (flags) win
    chosen = (level or settings.log_level or "INFO").upper()
    if chosen not in logging.getLevelNamesMapping():
        raise SystemExit(f"CW_LOG_LEVEL={chosen!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")
    fmt = (log_format or settings.log_format or "auto").lower()
    if fmt not in ("auto", "json", "console"):
        raise SystemExit(f"CW_LOG_FORMAT={fmt!r} must be auto, json or console")
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(name))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)-7s {name} %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    logging.basicConfig(level=chosen, handlers=[handler], force=True)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # A crash inside a native library (RocksDB, librdkafka) kills the process without a Python
    # traceback; faulthandler writes every thread's Python stack to stderr first, so the log says
    # where it happened.
    # (Not where stderr is no real file, as under pytest's capture: pytest has its own.)
    with contextlib.suppress(ValueError, OSError, AttributeError):
        faulthandler.enable(file=sys.stderr, all_threads=True)
    # Quix configures its own handler on the "quixstreams" logger; route it through ours instead.
    quix = logging.getLogger("quixstreams")
    quix.handlers.clear()
    quix.propagate = True
