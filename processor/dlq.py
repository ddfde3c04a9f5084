"""Dead-letter queue for what the processor cannot use: the bytes plus why, never a crash.

Quix has no DLQ of its own; its error callbacks may suppress an error. Suppressing without a copy
would lose the record silently, so the callbacks below first produce it (flushed, so it is durable
before the offset moves on) to ``crypto.ticks.dlq`` with headers naming the error and origin.
Points InfluxDB refuses (``processor.influx``) go the same way, as their line protocol, for the
same reason: the sink's offsets move on only once every refused point has a durable copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from quixstreams.models import Row

from crypto_watcher.kafka import client_config
from crypto_watcher.messages import MessageError

log = logging.getLogger(__name__)


INFLUX_REJECTED = "influx_rejected"


class DeadLetterError(RuntimeError):
    """The DLQ topic did not take a record in time: the caller must not move its offsets on."""


@dataclass(frozen=True)
class RejectedPoint:
    """A line InfluxDB refused, InfluxDB's reason, and the Kafka record the line was made from."""

    line: str
    reason: str
    topic: str
    partition: int
    offset: int
    key: bytes | None = None


class DeadLetters:
    def __init__(self, bootstrap: str, topic: str, group: str, on_dead: Callable[[str], None] | None = None) -> None:
        self.topic = topic
        self.group = group
        self.count = 0
        self._bootstrap = bootstrap
        self._producer: Producer | None = None
        self._on_dead = on_dead
        self._pending: list[str] = []  # kinds produced but not yet flushed

    def _produce(
        self,
        value: bytes | None,
        key: bytes | None,
        timestamp: int | None,
        reason: str,
        kind: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        """Queue one record; it counts as dead-lettered only once :meth:`_flush` has it durable."""
        if self._producer is None:
            self._producer = Producer(
                client_config(
                    self._bootstrap,
                    {"enable.idempotence": True, "acks": "all", "client.id": f"{self.group}-dlq"},
                )
            )
        headers = [
            ("cw.error", reason[:1000].encode()),
            ("cw.error.kind", kind.encode()),
            ("cw.source.topic", topic.encode()),
            ("cw.source.partition", str(partition).encode()),
            ("cw.source.offset", str(offset).encode()),
            ("cw.processor", self.group.encode()),
        ]
        kwargs: dict[str, Any] = {"timestamp": timestamp} if timestamp and timestamp > 0 else {}
        self._producer.produce(self.topic, value=value, key=key, headers=headers, **kwargs)
        self._pending.append(kind)
        log.warning(
            "dead-lettering %s[%d]@%d to %s: %s",
            topic,
            partition,
            offset,
            self.topic,
            reason,
            extra={"topic": topic, "partition": partition, "offset": offset},
        )

    def _flush(self) -> None:
        """Wait until Kafka has every produced record; only then are they counted as dead-lettered."""
        pending, self._pending = self._pending, []
        if self._producer is not None and self._producer.flush(30) != 0:
            raise DeadLetterError(f"could not write to the DLQ topic {self.topic} within 30s")
        self.count += len(pending)
        if self._on_dead is not None:
            for kind in pending:
                self._on_dead(kind)

    def on_rejected_points(self, points: Sequence[RejectedPoint]) -> None:
        """Points InfluxDB refused on their merits (retrying cannot help): their line protocol,
        InfluxDB's message in ``cw.error``, kind ``influx_rejected``, and the record each came from.

        One flush for all of them: a chunk whose every line is refused costs one round trip, not
        thousands. The record is stamped with its publish time (the line carries the event time):
        Kafka's idempotence and retention need recent record timestamps (docs/contracts.md).
        """
        for point in points:
            self._produce(
                point.line.encode(),
                point.key,
                None,
                point.reason,
                INFLUX_REJECTED,
                point.topic,
                point.partition,
                point.offset,
            )
        self._flush()

    def on_consumer_error(self, exc: Exception, message: Any, logger: logging.Logger) -> bool:
        """Undecodable or schema-invalid values (raised by the tick deserializer) go to the DLQ."""
        if message is None or message.error() is not None:
            return False  # a broker/transport error, not a bad record: let Quix handle it
        if not isinstance(exc, MessageError | UnicodeDecodeError | ValueError):
            return False
        # "(message)" errors are about the bytes as a whole (not JSON); others about a field.
        kind = "schema" if isinstance(exc, MessageError) and "(message)" not in str(exc) else "decode"
        _ts_type, ts = message.timestamp()
        self._produce(
            message.value(), message.key(), ts, str(exc), kind, message.topic(), message.partition(), message.offset()
        )
        self._flush()
        return True

    def on_processing_error(self, exc: Exception, row: Row | None, logger: logging.Logger) -> bool:
        """A record that decoded but breaks a rule later (e.g. key not matching coin:vs).

        The row holds the decoded value, not the bytes; the DLQ promises the original bytes, so
        they are read back from Kafka by offset (a rare path: it costs nothing when data is good).
        """
        if row is None or not isinstance(exc, MessageError):
            return False
        key, value, timestamp = self._original(row.topic, row.partition, row.offset)
        self._produce(value, key, timestamp, str(exc), "schema", row.topic, row.partition, row.offset)
        self._flush()
        return True

    def _original(self, topic: str, partition: int, offset: int) -> tuple[bytes | None, bytes | None, int | None]:
        consumer = Consumer(
            client_config(
                self._bootstrap,
                {"group.id": f"{self.group}-dlq-reader", "enable.auto.commit": False, "enable.partition.eof": False},
            )
        )
        try:
            consumer.assign([TopicPartition(topic, partition, offset)])
            for _ in range(60):
                msg = consumer.poll(0.5)
                if msg is not None and not msg.error() and msg.offset() == offset:
                    return msg.key(), msg.value(), msg.timestamp()[1]
        finally:
            consumer.close()
        raise RuntimeError(f"could not re-read {topic}[{partition}]@{offset} for the DLQ")
