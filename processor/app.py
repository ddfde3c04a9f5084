"""The processor's stream: ticks -> prices, per-window changes and alerts -> InfluxDB and crypto.alerts.

Declared as a Quix Streams dataframe so windows, state, changelogs, checkpoints and backpressure
are Quix's, not ours. Each configured window is one sliding window per ``<coin>:<vs>`` key (event
time, with a grace period for late ticks); each emission is one change record, which the rules
turn into alerts with cooldown and re-arm kept in Quix state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.dataframe.windows import Count, Earliest, Latest, Max, Min
from quixstreams.models import TopicConfig
from quixstreams.models.serializers import Deserializer
from quixstreams.sinks import BatchingSink

from crypto_watcher.config import ProcessorSettings
from crypto_watcher.durations import format_duration
from crypto_watcher.kafka import WEEK_MS
from crypto_watcher.messages import Alert, MessageError, Tick
from processor.dlq import DeadLetters
from processor.influx import InfluxSink, make_writer
from processor.points import alert_line, change_line, tick_line
from processor.signals import MoveRule, evaluate, window_change

log = logging.getLogger(__name__)


class TickDeserializer(Deserializer):
    """Validates every tick on the way in; a bad one raises MessageError and goes to the DLQ."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def __call__(self, value: bytes, ctx: Any) -> dict[str, Any]:
        return Tick.from_json(value).model_dump()


def tick_event_time(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
    """Windows run on the quote's own time, even if a publisher set another message timestamp."""
    return int(value["event_time"]) if isinstance(value, dict) else timestamp


def check_key(value: dict[str, Any], key: Any, timestamp: int, headers: Any) -> dict[str, Any]:
    expected = f"{value['coin']}:{value['vs']}"
    if key != expected:
        raise MessageError(f"invalid tick: key {key!r} does not match coin:vs {expected!r}")
    return value


def default_rules(settings: ProcessorSettings) -> list[MoveRule]:
    return [
        MoveRule("drop", "drop", settings.drop_pct, settings.cooldown),
        MoveRule("spike", "spike", settings.spike_pct, settings.cooldown),
    ]


@dataclass
class Pipeline:
    app: Application
    sdf: StreamingDataFrame
    sink: BatchingSink
    dead_letters: DeadLetters


def build_pipeline(
    settings: ProcessorSettings, sink: InfluxSink | None = None, rules: list[MoveRule] | None = None
) -> Pipeline:
    dead = DeadLetters(settings.kafka_bootstrap, settings.dlq_topic, settings.consumer_group)
    app = Application(
        broker_address=settings.kafka_bootstrap,
        consumer_group=settings.consumer_group,
        auto_offset_reset=settings.auto_offset_reset,
        state_dir=settings.state_dir,
        commit_interval=settings.commit_interval / 1000,
        processing_guarantee="at-least-once",
        on_consumer_error=dead.on_consumer_error,
        on_processing_error=dead.on_processing_error,
    )
    retention = TopicConfig(
        num_partitions=settings.ticks_partitions, replication_factor=1, extra_config={"retention.ms": str(4 * WEEK_MS)}
    )
    ticks = app.topic(
        settings.ticks_topic,
        key_deserializer="str",
        value_deserializer=TickDeserializer(),
        timestamp_extractor=tick_event_time,
        config=retention,
    )
    alerts_topic = app.topic(
        settings.alerts_topic,
        key_serializer="str",
        value_serializer="bytes",
        config=TopicConfig(num_partitions=1, replication_factor=1, extra_config={"retention.ms": str(4 * WEEK_MS)}),
    )
    app.topic(settings.dlq_topic, config=TopicConfig(num_partitions=1, replication_factor=1))
    sink = sink or InfluxSink(make_writer(settings))
    rules = rules if rules is not None else default_rules(settings)

    sdf = app.dataframe(ticks)
    sdf = sdf.apply(check_key, metadata=True)
    sdf.apply(lambda tick: tick_line(Tick.model_construct(**tick))).sink(sink)

    for window_ms in settings.window_ms:
        label = format_duration(window_ms)

        def to_change(
            agg: dict[str, Any], key: Any, timestamp: int, headers: Any, label: str = label, window_ms: int = window_ms
        ) -> dict[str, Any]:
            return window_change(agg, key, label, window_ms)

        def detect(change: dict[str, Any], state: Any) -> list[Alert]:
            return evaluate(change, rules, state)

        changes = (
            sdf.sliding_window(duration_ms=window_ms, grace_ms=settings.grace, name=f"move_{label}")
            .agg(first=Earliest("price"), last=Latest("price"), high=Max("price"), low=Min("price"), ticks=Count())
            .current()
            .apply(to_change, metadata=True)
        )
        changes.apply(change_line).sink(sink)
        alerts = changes.apply(detect, stateful=True, expand=True)
        alerts.apply(alert_line).sink(sink)
        alerts.apply(_log_alert).apply(lambda alert: alert.to_json()).to_topic(alerts_topic)
    return Pipeline(app, sdf, sink, dead)


def _log_alert(alert: Alert) -> Alert:
    log.warning("ALERT %s [%s] %s (id %s)", alert.key, alert.severity, alert.message, alert.id)
    return alert
