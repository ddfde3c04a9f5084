"""Replay: re-run a time range of ``crypto.ticks`` through the same pipeline, and end by itself.

Used after changing a rule ("what would last week have alerted?") or to rebuild a database. It runs
under its own consumer group and state folder, so the live processor is untouched, and writes into
the live database (idempotent: the same points are rewritten) or another one.

To give the same candles, changes and alerts the live run gave, the replay starts reading a
*warm-up* earlier than ``--from`` (the longest window, the grace period and the candle history the
indicators need) and only emits what falls inside ``[from, to]``.

Finding the range: a record's Kafka timestamp is when it was **published**; the quote's event time
is in the value (docs/contracts.md). A quote is published after it was current, so no record
published before ``warm-up start - CLOCK_SKEW`` can hold a tick of the range: the replay seeks
there by timestamp, which keeps a recent range cheap however long the topic is. The end cannot be
found by timestamp, because a backfill publishes old event times late, so the replay reads up to
the end of every partition as it was when the replay started and keeps only the ticks whose event
time lies in ``[warm-up start, to]``. It stops once the group has committed every partition up to
that end.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from tqdm import tqdm

from crypto_watcher.config import ProcessorSettings
from crypto_watcher.kafka import KAFKA_LOG
from processor.app import Pipeline, build_pipeline, ruleset_from
from processor.rules import RuleSet

log = logging.getLogger(__name__)


def parse_time(text: str) -> int:
    """ISO 8601 (``2026-01-01``, ``2026-01-01T12:00``, with or without ``Z``) or epoch ms -> epoch ms."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time must be ISO 8601 (2026-01-01T12:00Z) or epoch milliseconds, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def warmup_ms(rules: RuleSet) -> int:
    """How much earlier than ``from`` to start so every window and indicator has its history."""
    config = rules.spec.defaults.rules
    candles = max(
        config.crossover.slow if config.crossover else 0,
        (config.rsi.period + 1) if config.rsi else 0,
        (config.volatility.baseline + 1) if config.volatility else 0,
    )
    for coin in rules.spec.coins:
        c = rules.for_coin(coin)
        candles = max(
            candles,
            c.crossover.slow if c.crossover else 0,
            (c.rsi.period + 1) if c.rsi else 0,
            (c.volatility.baseline + 1) if c.volatility else 0,
        )
    return max(max(rules.window_ms), candles * rules.candle_interval) + rules.grace


@dataclass
class Range:
    start: dict[int, int]
    end: dict[int, int]

    @property
    def total(self) -> int:
        return sum(max(0, self.end[p] - self.start[p]) for p in self.start)


CLOCK_SKEW_MS = 10 * 60 * 1000
"""How far a source's event time may run ahead of the publishing machine's clock and still be found."""


def plan_range(bootstrap: str, topic: str, read_from_ms: int) -> Range:
    """Offsets to read: from the first record published at ``read_from_ms - CLOCK_SKEW_MS`` to the end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "logger": KAFKA_LOG,
            "group.id": "crypto-replay-planner",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise ValueError(f"topic {topic!r} does not exist on {bootstrap}")
        partitions = sorted(meta.partitions)
        seek = max(0, read_from_ms - CLOCK_SKEW_MS)
        starts = consumer.offsets_for_times([TopicPartition(topic, p, seek) for p in partitions], timeout=15)
        start: dict[int, int] = {}
        end: dict[int, int] = {}
        for s in starts:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, s.partition), timeout=15)
            start[s.partition] = s.offset if s.offset >= 0 else high
            end[s.partition] = high
        return Range(start, end)
    finally:
        consumer.close()


def commit_start(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Point a fresh consumer group at the range's first offsets (a group with no members may be set)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "logger": KAFKA_LOG, "group.id": group, "enable.auto.commit": False}
    )
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


class Progress:
    """Follows the replay group's committed offsets; stops the app when every partition is done."""

    def __init__(self, bootstrap: str, group: str, topic: str, span: Range, on_done: Any, show: bool = True) -> None:
        self.group, self.topic, self.span, self.on_done = group, topic, span, on_done
        self.done = False
        self._admin = AdminClient({"bootstrap.servers": bootstrap, "logger": KAFKA_LOG})
        self._stop = threading.Event()
        self._bar = tqdm(total=span.total, unit="tick", desc="replay", disable=not show, smoothing=0.1)
        self._thread = threading.Thread(target=self._loop, name="replay-progress", daemon=True)

    def start(self) -> Progress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._bar.close()

    def committed(self) -> dict[int, int]:
        request = ConsumerGroupTopicPartitions(self.group, [TopicPartition(self.topic, p) for p in self.span.start])
        result = self._admin.list_consumer_group_offsets([request])[self.group].result(timeout=10)
        return {tp.partition: tp.offset for tp in result.topic_partitions}

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                committed = self.committed()
            except Exception as exc:
                log.debug("progress poll failed: %s", exc)
                continue
            done = sum(
                min(max(0, committed.get(p, 0) - s), self.span.end[p] - s)
                for p, s in self.span.start.items()
                if self.span.end[p] > s
            )
            self._bar.update(done - self._bar.n)
            if all(committed.get(p, -1) >= e for p, e in self.span.end.items()):
                self.done = True
                self.on_done()
                return


def replay(
    settings: ProcessorSettings, from_ms: int, to_ms: int, show_progress: bool = True, idle_timeout_s: float = 60.0
) -> tuple[Pipeline, Range]:
    """Run the range to its end; returns the pipeline (for its counters) and the offsets covered."""
    if to_ms <= from_ms:
        raise ValueError(f"--to ({to_ms}) must be after --from ({from_ms})")
    rules = ruleset_from(settings)
    read_from = from_ms - warmup_ms(rules)
    span = plan_range(settings.kafka_bootstrap, settings.ticks_topic, read_from)
    log.info(
        "replaying %s from %s to %s (warm-up from %s): reading %d records in %d partitions, group %s",
        settings.ticks_topic,
        _iso(from_ms),
        _iso(to_ms),
        _iso(read_from),
        span.total,
        len(span.start),
        settings.consumer_group,
    )
    commit_start(settings.kafka_bootstrap, settings.consumer_group, settings.ticks_topic, span.start)

    def inside(value: dict[str, Any]) -> bool:
        return from_ms <= int(value["event_time"]) <= to_ms

    def wanted(value: dict[str, Any]) -> bool:
        return read_from <= int(value["event_time"]) <= to_ms

    pipeline = build_pipeline(settings, ruleset=rules, alert_filter=inside, tick_filter=wanted)
    if span.total == 0:
        log.warning("no ticks in that range")
        return pipeline, span
    progress = Progress(
        settings.kafka_bootstrap, settings.consumer_group, settings.ticks_topic, span, pipeline.app.stop, show_progress
    ).start()
    began = time.monotonic()
    try:
        pipeline.app.run(timeout=idle_timeout_s, collect=False)
    finally:
        progress.stop()
    if not progress.done:
        committed = progress.committed()
        if not all(committed.get(p, -1) >= e for p, e in span.end.items()):
            raise RuntimeError(f"replay stopped before the end of the range: committed {committed}, end {span.end}")
    log.info("replay done in %.1fs: %d points written", time.monotonic() - began, pipeline.sink.points_written)
    return pipeline, span


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
