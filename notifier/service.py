"""The notifier loop: read an alert, decide, deliver it to every target until each accepted it, commit.

Per alert the order of effects is fixed: deliver -> remember the id (SQLite) -> commit the Kafka
offset. A crash anywhere before the commit means the alert is read again; the remembered id (or the
per-target progress, mid-retry) keeps a second read from notifying anyone twice. Nothing is committed
for an alert that is not yet delivered, so stopping mid-retry loses nothing.

While a delivery is being retried the loop keeps polling Kafka with its partitions paused: the
consumer stays in its group (``max.poll.interval.ms``), rebalances are noticed, and the health
server sees a live loop. One alert is in flight at a time; alerts are rare and order matters more
than throughput.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from crypto_watcher.config import NotifierSettings
from crypto_watcher.health import Heartbeat
from crypto_watcher.kafka import client_config
from crypto_watcher.messages import Alert, MessageError
from crypto_watcher.retry import Backoff
from crypto_watcher.times import ms_to_s
from notifier import metrics
from notifier.store import DeliveredStore
from notifier.targets import Target, describe
from notifier.text import render

log = logging.getLogger(__name__)

POLL_S = 0.5
PURGE_EVERY_S = 3600.0
NO_ASSIGNMENT_S = 30.0
# Kafka errors that repeat every poll while nothing is wrong with us; logged once a minute at most.
_QUIET_ERROR_S = 60.0


class Outcome(Enum):
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    ABANDONED = "abandoned"
    """Not delivered and not committed: the service is stopping or lost the partition."""


@dataclass
class Stats:
    received: int = 0
    delivered: int = 0
    duplicates: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed_attempts: int = 0
    abandoned: int = 0


class Notifier:
    def __init__(
        self,
        settings: NotifierSettings,
        targets: Sequence[Target],
        *,
        stop: threading.Event | None = None,
        store: DeliveredStore | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not targets:
            raise ValueError("a notifier needs at least one target")
        self.settings = settings
        self.targets = list(targets)
        self.stop = stop or threading.Event()
        self.store = store or DeliveredStore(settings.notify_state, settings.notify_retention)
        self.stats = Stats()
        self.backoff = Backoff(
            base_s=ms_to_s(settings.notify_min_backoff),
            max_s=ms_to_s(settings.notify_max_backoff),
            rng=rng or random.Random(),
        )
        # The loop beats between targets, so the longest silence is one target's delivery timeout.
        self.heartbeat = Heartbeat(max(60.0, ms_to_s(settings.notify_timeout) + 30.0))
        self._consumer = Consumer(
            client_config(
                settings.kafka_bootstrap,
                {
                    "group.id": settings.notify_group,
                    "client.id": "crypto-notifier",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    # Notice an alerts topic created after we started within half a minute (default: five).
                    "topic.metadata.refresh.interval.ms": 30_000,
                },
            )
        )
        self._assigned: set[tuple[str, int]] = set()
        self._assigned_once = False
        self._generation = 0
        self._activity = time.monotonic()
        self._backlog: deque[Any] = deque()
        self._last_purge = float("-inf")
        self._error_logged: dict[str, float] = {}
        self._closed = False

    # -- the loop -------------------------------------------------------------------------------

    def run(self, max_idle_s: float | None = None) -> Stats:
        """Until ``stop`` is set, or (``max_idle_s``) until nothing arrived for that long. Closes at the end."""
        topic = self.settings.alerts_topic
        log.info(
            "reading %s as group %s; delivering to %s; minimum severity %s; %d delivered ids in %s",
            topic,
            self.settings.notify_group,
            describe(self.targets),
            self.settings.notify_min_severity,
            self.store.count(),
            self.store.path,
        )
        self._consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        self._activity = time.monotonic()
        try:
            while not self.stop.is_set():
                self.heartbeat.beat()
                self._maybe_purge()
                msg = self._backlog.popleft() if self._backlog else self._consumer.poll(POLL_S)
                if msg is None:
                    if max_idle_s is not None and self._idle_for(max_idle_s):
                        log.info("nothing new for %.1fs: stopping", max_idle_s)
                        break
                    continue
                if msg.error() is not None:
                    self._consumer_error(msg.error())
                    continue
                self.handle(msg)
                self._activity = time.monotonic()
        finally:
            self.close()
        s = self.stats
        log.info(
            "stopped: %d alerts read, %d delivered, %d duplicates, %d skipped, %d failed attempts",
            s.received,
            s.delivered,
            s.duplicates,
            sum(s.skipped.values()),
            s.failed_attempts,
        )
        return s

    def _idle_for(self, max_idle_s: float) -> bool:
        # Joining the group can take longer than a short idle limit: count from the assignment,
        # but give up on a topic nobody is assigned within a reasonable time.
        limit = max_idle_s if self._assigned_once else max(max_idle_s, NO_ASSIGNMENT_S)
        return time.monotonic() - self._activity >= limit

    def handle(self, msg: Any) -> Outcome:
        """Decide about one Kafka message, deliver it if due, and commit unless abandoned."""
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        self.stats.received += 1
        metrics.RECEIVED.inc()
        try:
            alert = Alert.from_json(msg.value() or b"")
        except MessageError as exc:
            log.warning("skipping undecodable alert at %s: %s", where, exc)
            return self._skip("invalid", msg)
        if alert.event_time < self.store.horizon_ms():
            log.info("skipping alert %s: older than CW_NOTIFY_RETENTION, it may have been delivered already", alert.id)
            return self._skip("expired", msg)
        if self.store.is_delivered(alert.id):
            log.info("alert %s was already delivered: not sending it again", alert.id)
            self.stats.duplicates += 1
            metrics.DUPLICATES.inc()
            self._commit(msg)
            return Outcome.DUPLICATE
        if not self.settings.at_least_min_severity(alert.severity):
            log.debug("alert %s is %s, below CW_NOTIFY_MIN_SEVERITY: not sent", alert.id, alert.severity)
            return self._skip("severity", msg)
        if not self._deliver(alert, msg):
            self.stats.abandoned += 1
            return Outcome.ABANDONED
        self._commit(msg)
        return Outcome.DELIVERED

    def _deliver(self, alert: Alert, msg: Any) -> bool:
        note = render(alert)
        done = self.store.delivered_targets(alert.id)
        pending = [t for t in self.targets if t.key not in done]
        generation = self._generation
        attempt = 0
        while True:
            failed: list[tuple[Target, str]] = []
            for target in pending:
                self.heartbeat.beat()
                reason = target.send(note)
                if reason is None:
                    metrics.DELIVERIES.labels(status="ok").inc()
                    self.store.mark_target(alert.id, target.key, alert.event_time)
                else:
                    metrics.DELIVERIES.labels(status="failed").inc()
                    self.stats.failed_attempts += 1
                    failed.append((target, reason))
            if not failed:
                self.store.mark_delivered(alert.id, alert.event_time)
                self.stats.delivered += 1
                log.info("delivered alert %s (%s %s, %s)", alert.id, alert.key, alert.kind, alert.severity)
                return True
            attempt += 1
            delay = self.backoff.delay(attempt)
            for target, reason in failed:
                log.warning(
                    "alert %s: delivery to %s failed (attempt %d): %s; retrying in %.1fs",
                    alert.id,
                    target.name,
                    attempt,
                    reason,
                    delay,
                )
            pending = [t for t, _ in failed]
            if not self._wait(delay, generation):
                why = "stopping" if self.stop.is_set() else "its partition moved to another consumer"
                log.warning(
                    "alert %s not yet delivered to %s (%s): left uncommitted, it will be delivered after restart",
                    alert.id,
                    describe(pending),
                    why,
                )
                return False

    def _wait(self, delay_s: float, generation: int) -> bool:
        """Sleep out a backoff while staying a live group member; False if stopping or the partition moved."""
        paused = [TopicPartition(t, p) for t, p in self._assigned]
        self._consumer.pause(paused)
        deadline = time.monotonic() + delay_s
        try:
            while True:
                if self.stop.is_set():
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                self.heartbeat.beat()
                msg = self._consumer.poll(min(left, POLL_S))
                if self._generation != generation:
                    return False
                if msg is not None and msg.error() is None:
                    # Fetched before the pause took effect: handle it after the alert in flight.
                    self._backlog.append(msg)
        finally:
            if self._generation == generation and not self.stop.is_set():
                try:
                    self._consumer.resume(paused)
                except KafkaException as exc:
                    log.debug("resume after backoff: %s", exc)

    def _skip(self, reason: str, msg: Any) -> Outcome:
        self.stats.skipped[reason] = self.stats.skipped.get(reason, 0) + 1
        metrics.SKIPPED.labels(reason=reason).inc()
        self._commit(msg)
        return Outcome.SKIPPED

    def _commit(self, msg: Any) -> None:
        offset = TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)
        try:
            self._consumer.commit(offsets=[offset], asynchronous=False)
        except KafkaException as exc:
            # The decision is already recorded (or the alert was skipped): reading it again is harmless.
            log.warning("could not commit %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), exc)

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now - self._last_purge < PURGE_EVERY_S:
            return
        self._last_purge = now
        removed = self.store.purge()
        if removed:
            log.info("forgot %d delivered alert ids older than the retention", removed)

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        text = error.str()
        now = time.monotonic()
        if now - self._error_logged.get(text, float("-inf")) >= _QUIET_ERROR_S:
            self._error_logged[text] = now
            log.warning("Kafka: %s", text)

    # -- group membership -----------------------------------------------------------------------

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)
        self._assigned_once = True
        self._activity = time.monotonic()
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing")

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        # Positions reset to the committed offsets on the next assignment: anything fetched but not
        # committed is read again, so an in-flight alert and the backlog are dropped, not lost.
        self._generation += 1
        self._backlog.clear()
        self._assigned.difference_update((tp.topic, tp.partition) for tp in partitions)

    # -- health and shutdown --------------------------------------------------------------------

    def live(self) -> bool:
        return not self._closed and self.heartbeat.alive()

    def close(self) -> None:
        """Leave the group without committing anything more, and close the state file."""
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()
        finally:
            self.store.close()
