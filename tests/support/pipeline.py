"""Run the real producer and processor code in-process against the real services."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto_watcher.config import ProcessorSettings, load_settings
from crypto_watcher.kafka import ensure_topic
from crypto_watcher.messages import Alert, Tick
from processor.app import Pipeline, build_pipeline
from producer.publisher import TickPublisher
from tests.support.services import Services, read_topic, unique


def processor_settings(
    services: Services, topics: dict[str, str], influx_db: str, state_dir: Path, **overrides: Any
) -> ProcessorSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": services.kafka_bootstrap,
        "ticks_topic": topics["ticks"],
        "alerts_topic": topics["alerts"],
        "dlq_topic": topics["dlq"],
        "consumer_group": unique("processor"),
        "state_dir": str(state_dir),
        "influx_url": services.influx_url,
        "influx_db": influx_db,
        "commit_interval": 1000,
        # Test ticks are stamped in the past: with a time-based retention Kafka would delete them mid-test.
        "topic_retention": 0,
    }
    values.update(overrides)
    return load_settings(ProcessorSettings, values)


def run_processor(settings: ProcessorSettings, idle_s: float = 6.0, **build: Any) -> Pipeline:
    """Process everything in the ticks topic, stopping once nothing new arrived for ``idle_s``."""
    pipeline = build_pipeline(settings, **build)
    pipeline.app.run(timeout=idle_s, collect=False)
    return pipeline


def publisher(services: Services, topic: str, partitions: int = 3) -> TickPublisher:
    ensure_topic(services.kafka_bootstrap, topic, partitions, retention_ms=0)  # past event times: keep for ever
    return TickPublisher(services.kafka_bootstrap, topic)


@dataclass
class LiveRun:
    """A live processor run over a feed: what the tests that compare with it need."""

    services: Services
    settings: ProcessorSettings
    ticks: list[Tick]
    """The feed in event-time order."""
    alerts: list[Alert]
    """What it put on the alerts topic, in order."""


def live_run(
    services: Services,
    name: str,
    by_time: list[Tick],
    arrival: list[Tick],
    state_dir: Path,
    idle_s: float = 6.0,
    **overrides: Any,
) -> LiveRun:
    """Publish ``arrival`` to fresh topics (2 partitions), run the real processor over them into a
    fresh database named after ``name``, and return the run with the alerts it published."""
    tag = unique(name)
    topics = {"ticks": f"{tag}.ticks", "alerts": f"{tag}.alerts", "dlq": f"{tag}.dlq"}
    out = publisher(services, topics["ticks"], partitions=2)
    for tick in arrival:
        out.publish(tick)
    assert out.flush(30) == 0
    settings = processor_settings(services, topics, unique(f"{name}_live"), state_dir, **overrides)
    run_processor(settings, idle_s=idle_s)
    alerts = [Alert.from_json(v) for _k, v, _t in read_topic(services.kafka_bootstrap, topics["alerts"]) if v]
    return LiveRun(services, settings, by_time, alerts)
