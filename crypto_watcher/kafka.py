"""Small Kafka helpers shared by the services: topic creation, client configuration, and reading a
consumer group's committed offsets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata, ConfigResource, NewTopic

from crypto_watcher.config import ENV_PREFIX, ConfigError

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


def client_config(bootstrap: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The configuration of every Kafka client (producer, consumer, admin) the services create.

    One place adds what each of them needs: the servers, and librdkafka's messages routed through
    Python logging. ``overrides`` holds the client's own keys (``group.id``, ``acks``, ...)."""
    return {"bootstrap.servers": bootstrap, "logger": KAFKA_LOG, **(overrides or {})}


def admin_client(bootstrap: str) -> AdminClient:
    """An admin client with :func:`client_config`."""
    return AdminClient(client_config(bootstrap))


WEEK_MS = 7 * 24 * 3600 * 1000


def retention_config(retention_ms: int) -> str:
    """Kafka's ``retention.ms`` for a retention setting (0 = keep for ever = -1)."""
    return "-1" if retention_ms <= 0 else str(retention_ms)


REPLICATION_SETTING = f"{ENV_PREFIX}TOPIC_REPLICATION"
BROKER_DEFAULT = -1
"""Replication factor meaning "the broker decides" (its ``default.replication.factor``)."""


class ReplicationError(ConfigError):
    """The replication setting cannot be met by the cluster.

    Kafka answers such a create request with INVALID_REPLICATION_FACTOR, which names neither our
    setting nor what to change. Start-up stops before asking, saying both.
    """


@dataclass(frozen=True)
class Replication:
    """The replication factor new topics get, resolved against the cluster once at start-up.

    ``factor`` is the setting, or the brokers' ``default.replication.factor`` when it is unset: a
    number can be checked against the brokers before Kafka is asked, and Quix needs one for its
    changelog topics. It stays ``BROKER_DEFAULT`` only when the brokers' configuration cannot be
    read (some managed Kafkas refuse DescribeConfigs): the brokers then decide and check.
    """

    bootstrap: str
    setting: int | None
    factor: int
    brokers: int
    min_insync: int | None = None

    def describe(self) -> str:
        """The setting as the user gave it, and what it resolved to."""
        if self.setting is not None:
            return f"{REPLICATION_SETTING}={self.setting}"
        if self.factor == BROKER_DEFAULT:
            return f"{REPLICATION_SETTING} unset (the brokers' default.replication.factor)"
        return f"{REPLICATION_SETTING} unset, so the brokers' default.replication.factor ({self.factor})"

    def check(self, topic: str) -> None:
        """Refuse to create ``topic`` with more replicas than the cluster has brokers, or fewer than
        the brokers' ``min.insync.replicas``: the cluster's operators ask for that many copies of
        each write, and brokers that do not cap it at the replication factor (as Apache Kafka 4.1
        does) refuse every acks=all write (all of ours: idempotent producers) to such a topic."""
        if self.min_insync is not None and BROKER_DEFAULT < self.factor < self.min_insync:
            raise ReplicationError(
                f"{self.describe()} is below the brokers' min.insync.replicas ({self.min_insync}) of the "
                f"Kafka cluster at {self.bootstrap}: topic {topic} would keep fewer copies of each write "
                f"than the cluster requires, and brokers that enforce it refuse every write with "
                f"NOT_ENOUGH_REPLICAS; set {REPLICATION_SETTING} to at least {self.min_insync}, or unset it"
            )
        if self.factor <= self.brokers:
            return
        fix = (
            f"set {REPLICATION_SETTING} to at most {self.brokers}, or add brokers"
            if self.setting is not None
            else f"start the missing brokers, or set {REPLICATION_SETTING} to at most {self.brokers}"
        )
        raise ReplicationError(
            f"{self.describe()} cannot be met: the Kafka cluster at {self.bootstrap} has {self.brokers} "
            f"broker(s) available, and each replica of topic {topic} needs its own broker; {fix}"
        )

    def warn_existing(self, topic: str, replicas: int) -> None:
        """Warn about an existing topic with fewer replicas than wanted: Kafka never raises them itself."""
        if self.min_insync is not None and replicas < self.min_insync:
            log.warning(
                "topic %s has %d replica(s), fewer than the brokers' min.insync.replicas (%d): it keeps "
                "fewer copies than the cluster requires, and brokers that enforce it refuse every acks=all "
                "write (idempotent producers: all of ours); raise its factor with kafka-reassign-partitions",
                topic,
                replicas,
                self.min_insync,
            )
        elif replicas < self.factor:
            log.warning(
                "topic %s has %d replica(s) but %s asks for %d: an existing topic keeps its replication "
                "factor; raise it with kafka-reassign-partitions",
                topic,
                replicas,
                self.describe(),
                self.factor,
            )


def resolve_replication(
    admin: AdminClient,
    bootstrap: str,
    setting: int | None,
    metadata: ClusterMetadata | None = None,
    timeout: float = 15,
) -> Replication:
    """The replication factor for ``setting`` on this cluster, with the broker count to check it.

    ``metadata`` saves a round trip when the caller listed the topics already.
    """
    brokers = (metadata or admin.list_topics(timeout=timeout)).brokers
    factor = BROKER_DEFAULT if setting is None else setting
    min_insync: int | None = None
    if brokers:
        resource = ConfigResource(ConfigResource.Type.BROKER, str(min(brokers)))
        try:
            entries = admin.describe_configs([resource], request_timeout=timeout)[resource].result(timeout=timeout)
            if setting is None:
                factor = int(entries["default.replication.factor"].value)
            min_insync = int(entries["min.insync.replicas"].value)
        except (KafkaException, KeyError, ValueError, TypeError) as exc:
            log.debug("cannot read the brokers' replication settings: %s", exc)
    return Replication(bootstrap, setting, factor, len(brokers), min_insync)


def cluster_replication(bootstrap: str, setting: int | None, timeout: float = 30) -> Replication:
    """:func:`resolve_replication` with a client of its own (the processor's start-up). It waits for
    Kafka as long as Quix's own topic look-ups do (30 s), so a processor restarted during a short
    broker outage still comes up."""
    admin = admin_client(bootstrap)
    return resolve_replication(admin, bootstrap, setting, timeout=timeout)


def ensure_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    retention_ms: int = 4 * WEEK_MS,
    replication: int | None = None,
) -> None:
    """Create ``name`` unless it exists. Retention is explicit: replays of last week must be possible.

    ``replication`` is the ``CW_TOPIC_REPLICATION`` setting (None: the brokers' default). A factor
    the cluster cannot meet raises :class:`ReplicationError`; an existing topic is left as it is,
    with a warning when it has fewer replicas than wanted.
    """
    admin = admin_client(bootstrap)
    metadata = admin.list_topics(timeout=15)
    wanted = resolve_replication(admin, bootstrap, replication, metadata)
    existing = metadata.topics.get(name)
    if existing is not None and existing.error is None:
        if existing.partitions:
            wanted.warn_existing(name, len(next(iter(existing.partitions.values())).replicas))
        return
    wanted.check(name)
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=wanted.factor,
                config={"retention.ms": retention_config(retention_ms)},
            )
        ]
    )
    try:
        futures[name].result(timeout=30)
        replicas = wanted.factor if wanted.factor != BROKER_DEFAULT else "the brokers' default number of"
        log.info("created topic %s with %d partitions, %s replicas", name, partitions, replicas)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" in str(exc):
            return
        if "INVALID_REPLICATION_FACTOR" in str(exc):
            raise ReplicationError(f"{wanted.describe()}: Kafka refused topic {name}: {exc}") from exc
        raise


class CommittedOffsets:
    """Reads a consumer group's committed offsets (the lag gauge, the replay's progress bar).

    Not with ``AdminClient.list_consumer_group_offsets``: when the group's coordinator answers
    NOT_COORDINATOR, which it does whenever the coordinator moves (a broker's controlled shutdown,
    crash or restart), librdkafka's response handler asks the client's own consumer group to look
    the coordinator up again, and an admin client has none: the whole process dies by SIGSEGV in
    ``rdk:main`` (``rd_kafka_cgrp_op`` called with a NULL group; confluentinc/librdkafka#5040, still
    in the librdkafka 2.12 that quixstreams 3.28 allows). That killed processor replicas during the
    scale-out test's broker restart. A consumer configured with the group's id but never subscribed
    reads the same offsets through its own group handle, which survives the error (it raises
    NOT_COORDINATOR once and re-queries); it never joins the group, so it cannot disturb its members.
    """

    def __init__(self, bootstrap: str, group: str) -> None:
        self.group = group
        self._consumer = Consumer(
            client_config(
                bootstrap, {"group.id": group, "enable.auto.commit": False, "enable.auto.offset.store": False}
            )
        )

    def read(self, topic: str, partitions: list[int], timeout: float = 10.0) -> dict[int, int]:
        """Partition -> committed offset; a negative offset means nothing committed yet."""
        committed = self._consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
        return {tp.partition: tp.offset for tp in committed}

    def watermarks(self, topic: str, partition: int, timeout: float = 10.0) -> tuple[int, int]:
        low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        return int(low), int(high)

    def partitions(self, topic: str, timeout: float = 10.0) -> list[int]:
        meta = self._consumer.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None:
            raise KafkaException(meta.error)
        return sorted(meta.partitions)

    def close(self) -> None:
        self._consumer.close()
