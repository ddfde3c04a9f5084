"""Logging set-up shared by every service: one line per event, level from CW_LOG_LEVEL."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(level: str | None = None, name: str = "crypto-watcher") -> None:
    chosen = (level or os.environ.get("CW_LOG_LEVEL") or "INFO").upper()
    if chosen not in logging.getLevelNamesMapping():
        raise SystemExit(f"CW_LOG_LEVEL={chosen!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")
    logging.basicConfig(
        level=chosen,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)-7s {name} %(name)s: %(message)s",
        force=True,
    )
    # Quix logs every start-up step at INFO; keep them, but silence chatty HTTP internals.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
