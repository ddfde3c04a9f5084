"""Which alerts (and, mid-retry, which of their targets) were delivered: a small SQLite file.

Kafka offsets alone cannot prevent a second notification: the processor may publish the same alert
twice (a replay, a restart between its write and its commit), and a new consumer group or a reset
offset re-reads old alerts. The alert id is deterministic, so remembering delivered ids is enough.

Rows are written before the Kafka offset is committed and with ``synchronous=FULL``: a crash after
the write costs nothing, a crash before it re-delivers (at-least-once, never zero). Rows older than
the retention (by the alert's event time) are deleted so the file stays small; the service skips
alerts older than the retention for the same reason, since their row may already be gone.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (
    id TEXT PRIMARY KEY,
    event_time INTEGER NOT NULL,
    delivered_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS delivered_event_time ON delivered (event_time);
CREATE TABLE IF NOT EXISTS partial (
    id TEXT NOT NULL,
    target TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    PRIMARY KEY (id, target)
) WITHOUT ROWID;
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class DeliveredStore:
    def __init__(self, path: str | Path, retention_ms: int, clock: Callable[[], int] = _now_ms) -> None:
        self.path = Path(path)
        self.retention_ms = retention_ms
        self._clock = clock
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Only the service loop uses it; check_same_thread is off because tests and the CLI may
        # create it on another thread than the one that runs the loop.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def horizon_ms(self) -> int:
        """Alerts with an event time before this are older than the retention."""
        return self._clock() - self.retention_ms

    def is_delivered(self, alert_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM delivered WHERE id = ?", (alert_id,)).fetchone()
        return row is not None

    def delivered_targets(self, alert_id: str) -> set[str]:
        rows = self._db.execute("SELECT target FROM partial WHERE id = ?", (alert_id,)).fetchall()
        return {str(r[0]) for r in rows}

    def mark_target(self, alert_id: str, target: str, event_time: int) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO partial (id, target, event_time) VALUES (?, ?, ?)", (alert_id, target, event_time)
        )

    def mark_delivered(self, alert_id: str, event_time: int) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO delivered (id, event_time, delivered_at) VALUES (?, ?, ?)",
                (alert_id, event_time, self._clock()),
            )
            self._db.execute("DELETE FROM partial WHERE id = ?", (alert_id,))

    def purge(self) -> int:
        """Forget ids older than the retention; returns how many alerts were forgotten."""
        horizon = self.horizon_ms()
        with self._transaction():
            removed = self._db.execute("DELETE FROM delivered WHERE event_time < ?", (horizon,)).rowcount
            self._db.execute("DELETE FROM partial WHERE event_time < ?", (horizon,))
        return int(removed)

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM delivered").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # The connection autocommits single statements; these pairs must land together or not at all.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
