"""Give freed memory back to the operating system, now and then.

glibc's malloc keeps memory a process has freed for its next allocations. A processor working
through a backlog allocates a checkpoint's worth of serialized state, Kafka buffers and InfluxDB
lines, frees them, and would keep the peak resident for good: at 10,000 coins ~500 MB of its
~810 MB (docs/performance.md, "Memory"). ``malloc_trim(0)`` returns it; calling it every few
seconds from a daemon thread keeps the resident set near what is in use. Elsewhere than glibc
(musl, macOS) there is no ``malloc_trim`` and this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)  # ctypes releases the GIL around the call
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def start_trimming(interval_ms: int) -> threading.Event | None:
    """Trim every ``interval_ms`` (0: never) in a daemon thread; set the returned event to stop."""
    trim = _malloc_trim() if interval_ms > 0 else None
    if trim is None:
        if interval_ms > 0:
            log.info("malloc_trim is not available here (not glibc): freed memory stays with the process")
        return None
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_ms / 1000):
            trim(0)

    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()
    return stop
