"""Undo the logging set-up a CLI's ``main()`` does for its process, when a test runs it in-process.

``main()`` puts a handler on the root logger that writes to the stderr of the moment (a captured or
redirected stream that closes with the test) and sets the root level; left behind, the next test's
log lines would go to a closed stream. Restoring the handlers from before (rather than removing
every handler) also keeps pytest's own log capture in place.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def restored_root_logging() -> Iterator[None]:
    """The root logger's handlers and level as they were on entry, again on exit."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
