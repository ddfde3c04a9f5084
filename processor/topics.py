"""The processor's topics, changelogs included, all created with the one replication setting.

Quix gives a state changelog topic the replication factor its input topic has on the broker
(``TopicManager.derive_topic_config``), not a setting: a ticks topic created earlier with another
factor (by hand, by an older version, under another broker default) would pass it on to every
changelog, and an RF 1 changelog loses the window state with its broker. Every topic Quix creates,
declared or changelog, goes through its ``TopicAdmin.create_topics``; that is where the factor is
set and checked against the cluster. ``Application(topic_manager=...)`` is how an app supplies it.
"""

from __future__ import annotations

import dataclasses

from quixstreams.models.topics import Topic, TopicAdmin, TopicManager

from crypto_watcher.kafka import KAFKA_LOG, Replication


class ReplicatedTopicAdmin(TopicAdmin):
    """Quix's topic admin, creating every topic with ``replication.factor`` replicas."""

    def __init__(self, bootstrap: str, replication: Replication) -> None:
        super().__init__(broker_address=bootstrap, logger=KAFKA_LOG)
        self.replication = replication

    def create_topics(self, topics: list[Topic], timeout: float = 30, finalize_timeout: float = 60) -> None:
        for topic in topics:
            self.replication.check(topic.name)
            if topic.create_config is not None:
                topic.create_config = dataclasses.replace(
                    topic.create_config, replication_factor=self.replication.factor
                )
        super().create_topics(topics, timeout=timeout, finalize_timeout=finalize_timeout)


def topic_manager(bootstrap: str, consumer_group: str, replication: Replication) -> TopicManager:
    """The topic manager for ``Application(topic_manager=...)``, with Quix's default timeouts."""
    return TopicManager(topic_admin=ReplicatedTopicAdmin(bootstrap, replication), consumer_group=consumer_group)


def warn_existing(manager: TopicManager, replication: Replication) -> None:
    """Warn about each topic the processor uses that has fewer replicas than wanted (Kafka never
    raises an existing topic's factor; an input topic's also passes to new changelogs in Quix)."""
    for name, topic in manager.all_topics.items():
        replicas = topic.broker_config.replication_factor if topic.broker_config else None
        if replicas is not None:
            replication.warn_existing(name, replicas)
