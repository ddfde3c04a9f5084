"""Trimming freed memory: off at 0, and on glibc a daemon thread that really calls malloc_trim."""

from __future__ import annotations

import threading
import time

import pytest

from crypto_watcher import memory


def test_zero_interval_starts_nothing() -> None:
    assert memory.start_trimming(0) is None


def test_a_trim_thread_runs_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = memory._malloc_trim()
    assert real is not None, "this machine's libc (glibc) has malloc_trim"

    def counted(pad: int) -> int:
        calls.append(pad)
        return real(pad)

    monkeypatch.setattr(memory, "_malloc_trim", lambda: counted)
    stop = memory.start_trimming(20)
    assert stop is not None
    deadline = time.monotonic() + 10
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls[:3] == [0, 0, 0]
    stop.set()
    deadline = time.monotonic() + 5
    while any(t.name == "malloc-trim" and t.is_alive() for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the trim thread did not stop"
        time.sleep(0.01)
