"""Publishing ticks to Kafka without losing one: idempotent producer, counted delivery reports.

``enable.idempotence`` with ``acks=all`` means librdkafka's own retries can never write a tick
twice or out of order. ``message.timeout.ms=0`` keeps undelivered ticks queued while the broker is
away instead of failing them after five minutes; the queue is bounded, and when it is full
``publish`` blocks the poll loop (serving delivery reports) rather than dropping data or growing
without limit. Every delivery report is counted: ``cw_producer_ticks_published_total`` when Kafka
acknowledged the tick, ``cw_producer_delivery_failures_total`` when it refused it for good.

Record timestamps are the **publish time**, never the quote's event time (which stays in the
value). A broker keeps an idempotent producer's sequence state only while the producer's last
record timestamp is within ``producer.id.expiration.ms`` (1 day) of its clock; records stamped
with old event times (backfill, replay-file) made a restarted broker forget the producer and
accept a sequence gap, which librdkafka then reported as delivered ("implicitly acked"): a tick
lost silently. ``enable.gapless.guarantee`` closes the rest of that hole: any condition that could
leave a gap becomes a fatal producer error instead of an implicit ack. The publisher then builds a
new producer and re-sends, in their original order, every tick Kafka has not acknowledged, so a
run resumes from its last acknowledged tick (docs/contracts.md, "Delivery").
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from crypto_watcher.kafka import client_config
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
        *,
        metrics: ProducerMetrics | None = None,
        stop: threading.Event | None = None,
        on_blocked: Callable[[], None] | None = None,
    ) -> None:
        own: dict[str, Any] = {
            "enable.idempotence": True,
            "enable.gapless.guarantee": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            "message.timeout.ms": 0,
            "queue.buffering.max.messages": QUEUE_LIMIT,
            "client.id": "crypto-producer",
            "error_cb": self._on_error,
        }
        config = client_config(bootstrap, {**own, **(extra_config or {})})
        self.topic = topic
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        """Ticks never handed to Kafka: the queue was full and the producer was told to stop."""
        self.recoveries = 0
        """Fatal producer errors recovered from by a new producer re-sending what was unacknowledged."""
        self.metrics = metrics or default_metrics()
        self._stop = stop
        self._on_blocked = on_blocked
        self._config = config
        self._producer = Producer(config)
        self._broker_down_since: float | None = None
        self._reminded_at = 0.0
        # Every tick handed to librdkafka and not yet acknowledged, in produce order: what a new
        # producer must send again after a fatal error. Keyed by a running number, not the tick.
        self._unacked: OrderedDict[int, Tick] = OrderedDict()
        self._next_id = 0
        self._fatal: KafkaError | None = None
        self._generation = 0

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            # The producer is dead (e.g. the gapless guarantee could not be kept); every call from
            # here on fails. Recovery happens on the publishing thread (``_recover``).
            if self._fatal is None:
                log.error(
                    "Kafka producer fatal error: %s; a new producer will re-send every unacknowledged tick", error.str()
                )
            self._fatal = error
            return
        # librdkafka reports transport trouble here and keeps retrying by itself; say it once. One
        # broker of a cluster going away (_TRANSPORT) is not an outage: the partitions it led move
        # to the others and librdkafka logs the connection failure itself (kafka.client).
        if error.code() == KafkaError._TRANSPORT:
            log.debug("Kafka connection trouble: %s", error.str())
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            if self._broker_down_since is None:
                self._broker_down_since = self._reminded_at = time.monotonic()
                log.error(
                    "Kafka unreachable (%s); ticks are buffered (up to %d) until it returns", error.str(), QUEUE_LIMIT
                )
        else:
            log.warning("Kafka client error: %s", error.str())

    def publish(self, tick: Tick) -> bool:
        """Queue one tick; False only if the queue is full and the producer is stopping."""
        if self._fatal is not None:
            self._recover()
        ident = self._next_id
        self._next_id += 1
        self._unacked[ident] = tick
        if not self._produce(ident, tick):
            del self._unacked[ident]
            return False
        return True

    def _produce(self, ident: int, tick: Tick) -> bool:
        generation = self._generation

        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                if self._fatal is not None or err.fatal() or generation != self._generation:
                    # Failed because the producer died: the tick stays unacknowledged and is sent
                    # again by the next producer, so it is neither counted nor reported lost.
                    return
                self._unacked.pop(ident, None)
                self.failed += 1
                self.metrics.delivery_failures.inc()
                log.error("tick %s@%d not delivered: %s", tick.key, tick.event_time, err.str())
                return
            if self._unacked.pop(ident, None) is None:
                return  # acknowledged already (a report of a producer replaced since)
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

        value = tick.to_json()
        warned = False
        while True:
            try:
                # No explicit timestamp: the record carries the publish time (see the module docstring).
                self._producer.produce(self.topic, key=tick.key.encode(), value=value, on_delivery=report)
                return True
            except KafkaException as exc:
                if not exc.args[0].fatal():
                    raise
                self._fatal = exc.args[0]
                return True  # stays unacknowledged: the recovery below sends it with the others
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
                if self._fatal is not None:
                    return True  # the producer died while we waited: recovery re-sends this tick

    def _recover(self) -> None:
        """Replace a producer that hit a fatal error and re-send every unacknowledged tick, in order."""
        error = self._fatal
        old = self._producer
        # Serve the old producer's last reports (acknowledgements that did arrive), then drop the
        # rest of its queue: those ticks are still in ``_unacked``.
        with contextlib.suppress(KafkaException):
            old.purge(in_queue=True, in_flight=True)
        old.poll(0)
        self._generation += 1
        self._fatal = None
        self.recoveries += 1
        self.metrics.producer_recoveries.inc()
        pending = list(self._unacked.items())
        log.warning(
            "recovering from a fatal Kafka producer error (%s): new producer, re-sending %d unacknowledged ticks",
            error.str() if error is not None else "?",
            len(pending),
        )
        self._producer = Producer(self._config)
        for ident, tick in pending:
            if ident in self._unacked:
                self._produce(ident, tick)

    def poll(self, timeout: float = 0.0) -> None:
        if self._fatal is not None:
            self._recover()
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
        """Ticks handed over and not yet acknowledged or refused for good."""
        return len(self._unacked)

    def drain(self, what: str, stop: threading.Event | None = None, step_s: float = 5.0) -> int:
        """Wait, however long Kafka is away, until every tick is acknowledged or ``stop`` is set.

        Returns how many ticks are still unacknowledged (0 unless stopped). A broker that restarts
        or moves a partition's leader mid-run delays the end; it never drops a tick.
        """
        remaining = self.flush(step_s, quiet=True)
        while remaining and not (stop is not None and stop.is_set()):
            log.warning("waiting for Kafka to acknowledge %d ticks of %s", remaining, what)
            remaining = self.flush(step_s, quiet=True)
        if remaining:
            log.error("%d ticks of %s not acknowledged by Kafka when stopped", remaining, what)
        return remaining

    def flush(self, timeout: float = 30.0, *, quiet: bool = False) -> int:
        """Deliver what is queued; returns how many ticks are still unacknowledged after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if self._fatal is not None:
                self._recover()
            self._producer.flush(max(0.0, min(1.0, deadline - time.monotonic())))
            if (not self._unacked and self._fatal is None) or time.monotonic() >= deadline:
                break
        remaining = len(self._unacked)
        if remaining and not quiet:
            log.error("%d ticks still unacknowledged after %.0fs", remaining, timeout)
        return remaining
