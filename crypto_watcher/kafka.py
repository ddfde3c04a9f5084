"""Small Kafka helpers shared by the services: topic creation and client configuration."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger(__name__)

KAFKA_LOG = logging.getLogger("kafka.client")
"""librdkafka's own messages (connection failures, ...) go through Python logging, not raw to stderr."""


class _KnownConfigWarnings(logging.Filter):
    """Drop librdkafka's start-up warning about ``enable.gapless.guarantee`` being experimental.

    The publisher sets it on purpose (producer/publisher.py); repeating the warning on every start
    would teach users to ignore the Kafka client's warnings.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("CONFWARN") and "enable.gapless.guarantee is experimental" in message)


KAFKA_LOG.addFilter(_KnownConfigWarnings())

WEEK_MS = 7 * 24 * 3600 * 1000


def retention_config(retention_ms: int) -> str:
    """Kafka's ``retention.ms`` for a retention setting (0 = keep for ever = -1)."""
    return "-1" if retention_ms <= 0 else str(retention_ms)


def ensure_topic(bootstrap: str, name: str, partitions: int, retention_ms: int = 4 * WEEK_MS) -> None:
    """Create ``name`` unless it exists. Retention is explicit: replays of last week must be possible."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": KAFKA_LOG})
    metadata = admin.list_topics(timeout=15)
    if name in metadata.topics:
        return
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=-1,
                config={"retention.ms": retention_config(retention_ms)},
            )
        ]
    )
    try:
        futures[name].result(timeout=30)
        log.info("created topic %s with %d partitions", name, partitions)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
