"""Publishing ticks to Kafka without losing one: idempotent producer, counted delivery reports.

``message.timeout.ms=0`` keeps undelivered ticks queued while the broker is away instead of
failing them after five minutes; the queue is bounded, and when it is full ``publish`` blocks the
poll loop (serving delivery reports) rather than dropping data or growing without limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from crypto_watcher.messages import Tick

log = logging.getLogger(__name__)


class TickPublisher:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        extra_config: dict[str, Any] | None = None,
        on_delivered: Callable[[Tick], None] | None = None,
    ) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            "message.timeout.ms": 0,
            "queue.buffering.max.messages": 100_000,
            "client.id": "crypto-producer",
            "error_cb": self._on_error,
        }
        config.update(extra_config or {})
        self.topic = topic
        self.delivered = 0
        self.failed = 0
        self._on_delivered = on_delivered
        self._producer = Producer(config)
        self._broker_down_since: float | None = None

    def _on_error(self, error: KafkaError) -> None:
        # librdkafka reports transport trouble here and keeps retrying by itself; say it once.
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            if self._broker_down_since is None:
                self._broker_down_since = time.monotonic()
                log.error("Kafka unreachable (%s); ticks are buffered until it returns", error.str())
        else:
            log.warning("Kafka client error: %s", error.str())

    def publish(self, tick: Tick) -> None:
        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.failed += 1
                log.error("tick %s@%d not delivered: %s", tick.key, tick.event_time, err.str())
                return
            self.delivered += 1
            if self._broker_down_since is not None:
                log.info(
                    "Kafka is back after %.0fs; buffered ticks delivered", time.monotonic() - self._broker_down_since
                )
                self._broker_down_since = None
            if self._on_delivered is not None:
                self._on_delivered(tick)

        value = tick.to_json()
        while True:
            try:
                self._producer.produce(
                    self.topic, key=tick.key.encode(), value=value, timestamp=tick.event_time, on_delivery=report
                )
                return
            except BufferError:
                log.warning("local queue full (%d ticks waiting for Kafka); waiting", len(self._producer))
                self._producer.poll(1.0)

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)

    @property
    def in_flight(self) -> int:
        return len(self._producer)

    def flush(self, timeout: float = 30.0) -> int:
        """Deliver what is queued; returns how many ticks are still undelivered after ``timeout``."""
        remaining: int = self._producer.flush(timeout)
        if remaining:
            log.error("%d ticks still undelivered after %.0fs at shutdown", remaining, timeout)
        return remaining
