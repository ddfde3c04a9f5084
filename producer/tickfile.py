"""``replay-file``: publish ticks from a CSV or JSON Lines file, at a chosen speed.

Each line is one ``Tick`` (docs/contracts.md): ``coin``, ``vs``, ``price`` and ``event_time`` are
required; ``symbol``, ``market_cap``, ``volume_24h``, ``change_24h_pct``, ``fetch_time`` and
``source`` (default ``file``) are optional. Times are integer milliseconds since the epoch or
ISO 8601 (``2026-01-01T00:00:00Z``; without an offset, UTC). CSV files need a header row naming
the columns (any order; empty cells mean "absent"). A file ending in ``.csv`` is CSV, ``.jsonl``,
``.ndjson`` or ``.json`` is JSON Lines; anything else is JSON Lines if its first line starts with ``{``.

Every line is validated; a bad one is reported as ``FILE:LINE: what is wrong`` and skipped.

``speed`` scales the gaps between consecutive event times: 1 replays in real time, 60 makes an
hour last a minute, 0 publishes as fast as Kafka takes them. Ticks are scheduled against the
first tick's event time (no drift accumulates); a tick older than one already sent goes at once.

(Not ``crypto-processor replay``, which re-runs a range of the ticks topic through the processor:
this module only ever writes a file into the topic.)
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto_watcher.config import ProducerSettings
from crypto_watcher.messages import MIN_EVENT_TIME_MS, MessageError, Tick
from crypto_watcher.times import ms_to_s, parse_iso_ms
from producer.publisher import TickPublisher
from producer.topics import ensure_ticks_topic

log = logging.getLogger(__name__)

REQUIRED = ("coin", "vs", "price", "event_time")
TIME_FIELDS = ("event_time", "fetch_time")
_INTEGER = re.compile(r"^[+-]?\d+(\.0*)?$")


class LineError(ValueError):
    """One bad line; ``str`` is ``FILE:LINE: reason``."""


def parse_time_ms(value: Any) -> int:
    """Milliseconds since the epoch from an integer (ms) or an ISO 8601 string.

    Not ``crypto_watcher.times.parse_time`` (the flags' parser): a file's times are data under the
    Tick contract (docs/contracts.md: integer milliseconds), so a number is never read as seconds;
    seconds in a file are refused by ``tick_from_record`` as the producer's mistake they are. The
    ISO 8601 reading is the shared one."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"not whole milliseconds: {value!r}")
        return int(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a time: {value!r}")
    text = value.strip()
    if _INTEGER.match(text):
        return int(float(text))
    try:
        return parse_iso_ms(text)
    except ValueError:
        raise ValueError(f"not milliseconds or ISO 8601: {text!r}") from None


def tick_from_record(record: dict[str, Any]) -> Tick:
    """Validate one record (field -> value; CSV values are strings) into a Tick."""
    fields = {k: v for k, v in record.items() if k is not None and v is not None and v != ""}
    missing = [name for name in REQUIRED if name not in fields]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    for name in TIME_FIELDS:
        if name in fields:
            try:
                fields[name] = parse_time_ms(fields[name])
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
    if fields["event_time"] < MIN_EVENT_TIME_MS and fields["event_time"] > 1_000_000_000:
        raise ValueError(f"event_time {fields['event_time']} looks like seconds; times are milliseconds")
    fields.setdefault("source", "file")
    try:
        return Tick.create(**fields)
    except MessageError as exc:
        raise ValueError(str(exc)) from None


def _is_csv(path: Path, first_line: str) -> bool:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return True
    if suffix in (".jsonl", ".ndjson", ".json"):
        return False
    return not first_line.lstrip().startswith("{")


def read_ticks(path: str | Path) -> Iterator[tuple[int, Tick | LineError]]:
    """(line number, tick or the error of that line) for every record of the file."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        first = handle.readline()
        handle.seek(0)
        if _is_csv(path, first):
            yield from _read_csv(path, handle)
        else:
            yield from _read_jsonl(path, handle)


def _read_jsonl(path: Path, handle: Any) -> Iterator[tuple[int, Tick | LineError]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, LineError(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(record, dict):
            yield number, LineError(f"{path}:{number}: not a JSON object")
            continue
        try:
            yield number, tick_from_record(record)
        except ValueError as exc:
            yield number, LineError(f"{path}:{number}: {exc}")


def _read_csv(path: Path, handle: Any) -> Iterator[tuple[int, Tick | LineError]]:
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        yield 1, LineError(f"{path}:1: CSV header lacks {', '.join(missing)} (has {', '.join(header) or 'nothing'})")
        return
    for row in reader:
        number = reader.line_num
        if None in row:
            yield number, LineError(f"{path}:{number}: {len(header) + len(row[None])} fields, header has {len(header)}")
            continue
        if all(not (v or "").strip() for v in row.values()):
            continue
        try:
            yield number, tick_from_record(dict(row))
        except ValueError as exc:
            yield number, LineError(f"{path}:{number}: {exc}")


@dataclass
class ReplayReport:
    published: int = 0
    bad_lines: int = 0
    stopped: bool = False


def replay_file(
    path: str | Path,
    publisher: TickPublisher | None,
    speed: float,
    *,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], bool] | None = None,
) -> ReplayReport:
    """Publish the file's good lines (``publisher=None``: only validate); bad lines are logged and skipped."""
    if speed < 0 or not math.isfinite(speed):
        raise ValueError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
    stop = stop or threading.Event()
    report = ReplayReport()
    started: float | None = None
    first_event = newest_event = 0
    for _number, item in read_ticks(path):
        if stop.is_set():
            report.stopped = True
            break
        if isinstance(item, LineError):
            report.bad_lines += 1
            log.error("%s", item)
            continue
        if publisher is None:
            report.published += 1
            continue
        if started is None:
            started, first_event = clock(), item.event_time
        newest_event = max(newest_event, item.event_time)
        if speed > 0:
            due = started + ms_to_s(newest_event - first_event) / speed
            pause = due - clock()
            if pause > 0:
                publisher.poll(0)
                stopped = wait(pause) if wait is not None else stop.wait(pause)
                if stopped:
                    report.stopped = True
                    break
        publisher.publish(item)
        publisher.poll(0)
        report.published += 1
    return report


def publish_tick_file(settings: ProducerSettings, path: Path, speed: float, stop: threading.Event, check: bool) -> int:
    """The ``replay-file`` command from settings on (``check``: validate only, Kafka untouched).

    0 only when every line was good and every tick acknowledged: a file half published must not
    look like success to a script. ConfigError (a replication Kafka cannot meet) propagates;
    OSError and UnicodeDecodeError when the file cannot be read, for the caller to report."""
    publisher: TickPublisher | None = None
    if not check:
        ensure_ticks_topic(settings)
        publisher = TickPublisher(settings.kafka_bootstrap, settings.ticks_topic, stop=stop)
    report = replay_file(path, publisher, speed, stop=stop)
    remaining = publisher.drain(str(path), stop) if publisher is not None else 0
    log.info(
        "%s: %d ticks %s, %d bad lines%s",
        path,
        report.published,
        "valid" if publisher is None else "published",
        report.bad_lines,
        " (stopped early)" if report.stopped else "",
    )
    return 0 if report.bad_lines == 0 and remaining == 0 and not report.stopped else 1
