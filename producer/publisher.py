"""Publishing ticks to Kafka without losing one: idempotent producer, counted delivery reports.

``enable.idempotence`` with ``acks=all`` means librdkafka's own retries can never write a tick
twice or out of order. ``message.timeout.ms=0`` keeps undelivered ticks queued while the broker is
away instead of failing them after five minutes; the queue is bounded, and when it is full
``publish`` blocks the poll loop (serving delivery reports) rather than dropping data or growing
without limit. Every delivery report is counted: ``cw_producer_ticks_published_total`` when Kafka
acknowledged the tick, ``cw_producer_delivery_failures_total`` when it refused it for good.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from crypto_watcher.kafka import KAFKA_LOG
from crypto_watcher.messages import Tick
from producer.metrics import ProducerMetrics, default_metrics

log = logging.getLogger(__name__)

QUEUE_LIMIT = 100_000
"""Ticks buffered locally while Kafka is away (1,000 coins x 3 currencies a minute: 33 minutes)."""
BACKLOG_REMINDER_S = 60.0


class TickPublisher:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        extra_config: dict[str, Any] | None = None,
        on_delivered: Callable[[Tick], None] | None = None,
        *,
        metrics: ProducerMetrics | None = None,
        stop: threading.Event | None = None,
        on_blocked: Callable[[], None] | None = None,
    ) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "logger": KAFKA_LOG,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            "message.timeout.ms": 0,
            "queue.buffering.max.messages": QUEUE_LIMIT,
            "client.id": "crypto-producer",
            "error_cb": self._on_error,
        }
        config.update(extra_config or {})
        self.topic = topic
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        """Ticks never handed to Kafka: the queue was full and the producer was told to stop."""
        self.metrics = metrics or default_metrics()
        self._on_delivered = on_delivered
        self._stop = stop
        self._on_blocked = on_blocked
        self._producer = Producer(config)
        self._broker_down_since: float | None = None
        self._reminded_at = 0.0

    def _on_error(self, error: KafkaError) -> None:
        # librdkafka reports transport trouble here and keeps retrying by itself; say it once.
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            if self._broker_down_since is None:
                self._broker_down_since = self._reminded_at = time.monotonic()
                log.error(
                    "Kafka unreachable (%s); ticks are buffered (up to %d) until it returns", error.str(), QUEUE_LIMIT
                )
        else:
            log.warning("Kafka client error: %s", error.str())

    def publish(self, tick: Tick) -> bool:
        """Queue one tick; False only if the queue is full and the producer is stopping."""

        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.failed += 1
                self.metrics.delivery_failures.inc()
                log.error("tick %s@%d not delivered: %s", tick.key, tick.event_time, err.str())
                return
            self.delivered += 1
            self.metrics.ticks_published.inc()
            log.debug(
                "delivered %s@%d (partition %s, offset %s)", tick.key, tick.event_time, msg.partition(), msg.offset()
            )
            if self._broker_down_since is not None:
                log.info(
                    "Kafka is back after %.0fs; buffered ticks are being delivered",
                    time.monotonic() - self._broker_down_since,
                )
                self._broker_down_since = None
            if self._on_delivered is not None:
                self._on_delivered(tick)

        value = tick.to_json()
        warned = False
        while True:
            try:
                self._producer.produce(
                    self.topic, key=tick.key.encode(), value=value, timestamp=tick.event_time, on_delivery=report
                )
                return True
            except BufferError:
                if not warned:
                    log.warning("local queue full (%d ticks waiting for Kafka); waiting for room", len(self._producer))
                    warned = True
                if self._on_blocked is not None:
                    self._on_blocked()
                if self._stop is not None and self._stop.is_set():
                    self.dropped += 1
                    log.error("stopping with the queue full: tick %s@%d not published", tick.key, tick.event_time)
                    return False
                self._producer.poll(1.0)

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)

    def report_backlog(self) -> None:
        """While Kafka is away, say once a minute how much is waiting."""
        if self._broker_down_since is None:
            return
        now = time.monotonic()
        if now - self._reminded_at >= BACKLOG_REMINDER_S:
            self._reminded_at = now
            log.warning(
                "Kafka still unreachable after %.0fs; %d ticks buffered (limit %d)",
                now - self._broker_down_since,
                len(self._producer),
                QUEUE_LIMIT,
            )

    @property
    def in_flight(self) -> int:
        return len(self._producer)

    def flush(self, timeout: float = 30.0) -> int:
        """Deliver what is queued; returns how many ticks are still undelivered after ``timeout``."""
        remaining: int = self._producer.flush(timeout)
        if remaining:
            log.error("%d ticks still undelivered after %.0fs", remaining, timeout)
        return remaining
