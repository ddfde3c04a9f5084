"""Run the real producer and processor code in-process against the real services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crypto_watcher.config import ProcessorSettings, load_settings
from crypto_watcher.kafka import ensure_topic
from processor.app import Pipeline, build_pipeline
from producer.publisher import TickPublisher
from tests.support.services import Services, unique


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
