"""``crypto-processor scorecard``: run the current rules over a time range and score their hints.

The hints come from the processor's real code path, so the scores are those of exactly the alerts
live would have raised: the replay machinery (``processor.replay``: its own consumer group and state
folder, the warm-up before ``--from``, the range found by event time, the progress bar) runs the
real pipeline over the range, with two differences only:

- its alerts are handed to the scorecard (``build_pipeline``'s ``on_alert``) instead of being
  published: nobody is notified, no alerts topic is written;
- its points (prices, changes, candles, alerts) go nowhere (:class:`DiscardSink`): neither the
  live data nor a what-if database changes.

Then the ticks are read once more, plainly, from the same offsets: those of the range, and those
up to the longest horizon after it as far as they exist, for the prices the hints are scored
against (``processor.scorecard`` has the definitions). The per-hint rows and the baseline moments
are written into the database (v1) or bucket (v2) named on the command line, chosen the way the
replay chooses its target (``processor.replay.choose_target``): never the live one without
``--into-live``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from quixstreams.sinks import SinkBatch

from crypto_watcher.config import ProcessorSettings
from crypto_watcher.kafka import client_config
from crypto_watcher.messages import Alert, MessageError, Tick
from processor.app import ruleset_from
from processor.forward_returns import PriceSeries
from processor.influx import InfluxSink, RejectedWriteError, TransientWriteError, make_writer
from processor.points import scorecard_baseline_line, scorecard_line
from processor.replay import Range, replay
from processor.scorecard import DEFAULT_HORIZONS, Scorecard, score

log = logging.getLogger(__name__)

WRITE_CHUNK = 5000
WRITE_ATTEMPTS = 6


class DiscardWriter:
    """A ``LineWriter`` that keeps nothing: the scorecard's replay stores no prices, candles or alerts."""

    description = "nowhere (the scorecard keeps only the alerts, in memory)"

    def check(self) -> None:
        pass

    def ping(self) -> bool:
        return True

    def write(self, lines: Sequence[str]) -> None:
        pass

    def close(self) -> None:
        pass


class DiscardSink(InfluxSink):
    """The pipeline's sink for the scorecard: every batch dropped, none counted as written."""

    def __init__(self) -> None:
        super().__init__(DiscardWriter())

    def write(self, batch: SinkBatch) -> None:
        pass


@dataclass
class ScorecardRun:
    """What one run produced: the scorecard, the points written and where, and the ticks read."""

    card: Scorecard
    series: dict[tuple[str, str], PriceSeries]
    points_written: int
    target: str
    ticks_read: int
    skipped: int


@dataclass
class _TickReader:
    """Takes the records of the planned range one by one: the valid ticks up to ``until_ms`` by pair,
    and how many records were read and skipped."""

    ends: dict[int, int]
    until_ms: int
    ticks: dict[tuple[str, str], list[tuple[int, float]]] = field(default_factory=dict)
    read: int = 0
    skipped: int = 0

    def take(self, msg: Any) -> None:
        if msg.error() or msg.offset() >= self.ends[msg.partition()]:
            return  # an error, or published after the scorecard started: not in the range it planned
        self.read += 1
        tick = _valid_tick(msg)
        if tick is None:
            self.skipped += 1
        elif tick.event_time <= self.until_ms:
            self.ticks.setdefault((tick.coin, tick.vs), []).append((tick.event_time, tick.price))


def _valid_tick(msg: Any) -> Tick | None:
    """The record's tick, or None when it does not decode or its key does not match the tick."""
    try:
        tick = Tick.from_json(msg.value())
    except MessageError:
        return None
    key = msg.key().decode() if msg.key() is not None else None
    return tick if key == tick.key else None


def read_ticks(
    bootstrap: str, topic: str, span: Range, until_ms: int, idle_timeout_s: float = 30.0
) -> tuple[dict[tuple[str, str], PriceSeries], int, int]:
    """Every valid tick in ``span`` with an event time up to ``until_ms``, by pair.

    Returns the series, the records read and how many were skipped (undecodable, or a key that
    does not match the tick: the processor dead-letters those and never windows them)."""
    todo = {p: (s, e) for p, s in span.start.items() if (e := span.end[p]) > s}
    if not todo:
        return {}, 0, 0
    reader = _TickReader({p: e for p, (_s, e) in todo.items()}, until_ms)
    consumer = Consumer(
        client_config(
            bootstrap,
            {
                "group.id": "crypto-scorecard-reader",  # never commits: assign() and offsets of our own
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            },
        )
    )
    try:
        consumer.assign([TopicPartition(topic, p, s) for p, (s, _e) in todo.items()])
        last_progress = time.monotonic()
        while True:
            messages = consumer.consume(num_messages=2000, timeout=1.0)
            for msg in messages:
                reader.take(msg)
            if messages:
                last_progress = time.monotonic()
            positions = consumer.position([TopicPartition(topic, p) for p in todo])
            if all(tp.offset >= reader.ends[tp.partition] for tp in positions):
                break
            if time.monotonic() - last_progress > idle_timeout_s:
                raise RuntimeError(f"reading {topic} for the scorecard stalled at {positions} (end {span.end})")
    finally:
        consumer.close()
    return {pair: PriceSeries(rows) for pair, rows in reader.ticks.items()}, reader.read, reader.skipped


def scorecard_lines(card: Scorecard, series: dict[tuple[str, str], PriceSeries]) -> list[str]:
    """The ``scorecard`` (one per hint and horizon) and ``scorecard_baseline`` (one per tick and
    horizon) points of a scorecard (schema: ``processor.points``)."""
    lines: list[str] = []
    for hint in card.hints:
        prices = series[(hint.alert.coin, hint.alert.vs)]
        for name, ms in card.horizons.items():
            ret = hint.returns[name]
            exit_price = prices.price_at(hint.alert.event_time + ms) if ret is not None else None
            lines.append(scorecard_line(hint.alert, hint.direction, name, hint.price, exit_price, ret))
    for (coin, vs), rows in card.moments.items():
        prices = series[(coin, vs)]
        for t, price, returns in rows:
            for name, ms in card.horizons.items():
                ret = returns[name]
                exit_price = prices.price_at(t + ms) if ret is not None else None
                lines.append(scorecard_baseline_line(coin, vs, name, t, price, exit_price, ret))
    return [line for line in lines if line]


def write_lines(settings: ProcessorSettings, lines: Sequence[str]) -> tuple[int, str]:
    """Write into the target (the settings' database or bucket); returns points written and where.

    A write InfluxDB cannot take now is retried with a growing pause; a refused one stops the run."""
    writer = make_writer(settings)
    try:
        writer.check()
        for start in range(0, len(lines), WRITE_CHUNK):
            chunk = lines[start : start + WRITE_CHUNK]
            for attempt in range(WRITE_ATTEMPTS):
                try:
                    writer.write(chunk)
                    break
                except TransientWriteError as exc:
                    if attempt == WRITE_ATTEMPTS - 1:
                        raise RuntimeError(f"InfluxDB did not take the scorecard's points: {exc}") from exc
                    pause = exc.retry_after if exc.retry_after is not None else 2.0**attempt
                    log.warning("scorecard write deferred (%s); retrying in %.1fs", exc, pause)
                    time.sleep(pause)
                except RejectedWriteError as exc:
                    raise RuntimeError(f"InfluxDB refused the scorecard's points: {exc}") from exc
        return len(lines), writer.description
    finally:
        writer.close()


def run_scorecard(
    settings: ProcessorSettings,
    from_ms: int,
    to_ms: int,
    horizons: dict[str, int] | None = None,
    show_progress: bool = True,
) -> ScorecardRun:
    """Replay ``[from_ms, to_ms]`` with alerts captured, score them, write the rows; see the module docstring.

    ``settings`` carry the scorecard's own consumer group, state folder and target."""
    horizons = dict(horizons or DEFAULT_HORIZONS)
    alerts: list[Alert] = []
    _pipeline, span = replay(
        settings,
        from_ms,
        to_ms,
        show_progress=show_progress,
        sink=DiscardSink(),
        on_alert=alerts.append,
    )
    until = to_ms + max(horizons.values())
    began = time.monotonic()
    series, read, skipped = read_ticks(settings.kafka_bootstrap, settings.ticks_topic, span, until)
    log.info(
        "read %d records for the prices (%d skipped) in %.1fs: %d pairs",
        read,
        skipped,
        time.monotonic() - began,
        len(series),
    )
    card = score(alerts, series, from_ms, to_ms, horizons, rules=ruleset_from(settings).source)
    written, where = write_lines(settings, scorecard_lines(card, series))
    log.info("scorecard: %d hints, %d points written to %s", len(card.hints), written, where)
    return ScorecardRun(card, series, written, where, read, skipped)
