"""The ticks topic the publisher writes to: created as the settings say, and how long it keeps records.

Each command creates the topic before publishing (Kafka's auto-creation would ignore the
partitions, retention and replication asked for). ``run`` must not wait for Kafka to do so: quotes
are buffered meanwhile, so it keeps trying in the background. Backfill publishes history that is
only worth having while the topic keeps it, so it says until when that is.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from confluent_kafka.admin import ConfigResource

from crypto_watcher.config import ConfigError, ProducerSettings
from crypto_watcher.durations import format_duration
from crypto_watcher.kafka import admin_client, ensure_topic
from crypto_watcher.times import ms_to_s

log = logging.getLogger(__name__)

RETRY_EVERY_S = 10.0


def ensure_ticks_topic(settings: ProducerSettings) -> None:
    """Create the ticks topic as the settings say (partitions, retention, replication) unless it exists."""
    ensure_topic(
        settings.kafka_bootstrap,
        settings.ticks_topic,
        settings.ticks_partitions,
        settings.topic_retention,
        settings.topic_replication,
    )


def ensure_ticks_topic_eventually(settings: ProducerSettings, stop: threading.Event) -> None:
    """Create the ticks topic; if Kafka is away, keep trying in the background (ticks buffer meanwhile).

    A setting Kafka can never meet (ConfigError, e.g. too few brokers for the replication asked
    for) is raised at once when Kafka answers at start-up, so the command fails saying why."""
    try:
        ensure_ticks_topic(settings)
        return
    except Exception as exc:
        log.error(
            "Kafka unreachable at start-up (%s); going on, ticks are buffered and topic %s is created when it answers",
            exc,
            settings.ticks_topic,
        )

    def retry() -> None:
        while not stop.wait(RETRY_EVERY_S):
            try:
                ensure_ticks_topic(settings)
                log.info("Kafka answers again; topic %s is there", settings.ticks_topic)
                return
            except ConfigError as exc:  # e.g. too few brokers for CW_TOPIC_REPLICATION: may come back
                log.error("cannot create topic %s: %s", settings.ticks_topic, exc)
            except Exception as exc:
                log.debug("topic creation still failing: %s", exc)

    threading.Thread(target=retry, name="ensure-topic", daemon=True).start()


def topic_retention_ms(bootstrap: str, topic: str) -> int | None:
    """The topic's ``retention.ms`` (-1: forever), or None when it cannot be read."""
    try:
        admin = admin_client(bootstrap)  # must outlive the future
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        entries = admin.describe_configs([resource], request_timeout=10)[resource].result(timeout=10)
        return int(entries["retention.ms"].value)
    except Exception as exc:
        log.debug("cannot read the retention of %s: %s", topic, exc)
        return None


def log_retention(settings: ProducerSettings) -> None:
    """Say until when the ticks topic keeps what is published now (history can be replayed until then)."""
    retention = topic_retention_ms(settings.kafka_bootstrap, settings.ticks_topic)
    if retention is None or retention < 0:
        return
    until = datetime.fromtimestamp(time.time() + ms_to_s(retention), UTC).strftime("%Y-%m-%d")
    log.info(
        "topic %s keeps records %s after they are published: this history can be replayed until %s "
        "(CW_TOPIC_RETENTION=forever keeps it)",
        settings.ticks_topic,
        format_duration(retention),
        until,
    )
