"""The processor's stream: ticks -> prices, candles, per-window changes and alerts.

Declared as a Quix Streams dataframe so state, changelogs, checkpoints and backpressure are Quix's,
not ours:

    ticks ─ one stateful step per tick ─┬─ price point ───────────────────────────────► InfluxDB
                                        ├─ sliding windows (processor.moves) ─ change ─► InfluxDB
                                        │       └─ move rules ───────────────┐
                                        ├─ candle in progress (processor.candles) ─────► InfluxDB
                                        │       └─ closed candles ─ volatility / crossover / RSI rules
                                        └─ alerts ◄──────────────────────────┘ ─► InfluxDB, crypto.alerts

Everything is per ``<coin>:<vs>`` key and in event time with a grace period for late ticks. The
windows are computed from the pair's own state rather than with Quix's window operators
(``processor.moves`` and ``processor.candles`` say why); rule state (cooldown, re-arm, indicator
history) is the same per-key Quix state, changelogged to Kafka.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quixstreams import Application
from quixstreams.models import TopicConfig
from quixstreams.models.serializers import Deserializer
from quixstreams.state.rocksdb import RocksDBOptions

from crypto_watcher.config import ProcessorSettings
from crypto_watcher.kafka import cluster_replication, retention_config
from crypto_watcher.logs import add_context_provider
from crypto_watcher.messages import Alert, MessageError, Tick, message_key
from crypto_watcher.times import format_time, ms_to_s
from processor import metrics
from processor.candle_alerts import evaluate_candle
from processor.candles import advance_candles
from processor.dlq import DeadLetters
from processor.influx import InfluxSink, make_writer
from processor.long_windows import is_long, long_changes
from processor.move_alerts import MoveRule, evaluate_changes, move_rules
from processor.moves import sliding_changes
from processor.points import alert_line, candle_line, change_line, price_line
from processor.rules import RuleSet, load_rules
from processor.state import CANDLE_STATE, TickState
from processor.topics import topic_manager, warn_existing
from processor.windows import candle_record

log = logging.getLogger(__name__)


class TickDeserializer(Deserializer):
    """Validates every tick on the way in; a bad one raises MessageError and goes to the DLQ."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def __call__(self, value: bytes, ctx: Any) -> dict[str, Any]:
        # The validated fields as a dict: what ``model_dump()`` returns for Tick's flat scalar fields,
        # without its per-call serializer run.
        return dict(Tick.from_json(value).__dict__)


def tick_event_time(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
    """Windows run on the quote's own time, even if a publisher set another message timestamp."""
    return int(value["event_time"]) if isinstance(value, dict) else timestamp


def check_key(value: dict[str, Any], key: Any, timestamp: int, headers: Any) -> dict[str, Any]:
    expected = message_key(value["coin"], value["vs"])
    if key != expected:
        raise MessageError(f"invalid tick: key {key!r} does not match coin:vs {expected!r}")
    metrics.observe_tick(value["event_time"])
    return value


def ruleset_from(settings: ProcessorSettings) -> RuleSet:
    """The rules file when one is configured, else rules built from the CW_* settings."""
    return load_rules(settings.rules_file) if settings.rules_file else RuleSet.from_settings(settings)


@dataclass
class Pipeline:
    app: Application
    sink: InfluxSink
    dead_letters: DeadLetters
    ruleset: RuleSet


def rocksdb_options(settings: ProcessorSettings) -> RocksDBOptions:
    """The state store's memory knobs; everything else stays at quixstreams' defaults."""
    mb = 1024 * 1024
    return RocksDBOptions(
        block_cache_size=settings.state_cache_mb * mb, write_buffer_size=settings.state_write_buffer_mb * mb
    )


def build_pipeline(
    settings: ProcessorSettings,
    sink: InfluxSink | None = None,
    ruleset: RuleSet | None = None,
    alert_filter: Any = None,
    tick_filter: Any = None,
    on_alert: Callable[[Alert], None] | None = None,
) -> Pipeline:
    """Wire the stream. ``alert_filter`` (value -> bool) lets replay keep only its time range;
    ``tick_filter`` (tick -> bool) lets it ignore ticks outside its warm-up and range (a backfill
    published among the records it reads). ``on_alert`` receives every alert *instead of* the
    alerts topic (the scorecard collects them: nobody is notified, no alerts topic is created);
    under at-least-once processing a re-read batch hands the same alert (same id) over again."""
    ruleset = ruleset or ruleset_from(settings)
    dead = DeadLetters(
        settings.kafka_bootstrap,
        settings.dlq_topic,
        settings.consumer_group,
        on_dead=lambda kind: metrics.DLQ.labels(kind).inc(),
    )
    # One replication factor (CW_TOPIC_REPLICATION, else the brokers' default) for every topic the
    # app creates, its state changelogs included (processor.topics says why Quix needs help there).
    replication = cluster_replication(settings.kafka_bootstrap, settings.topic_replication)
    topics = topic_manager(settings.kafka_bootstrap, settings.consumer_group, replication)
    app = Application(
        broker_address=settings.kafka_bootstrap,
        consumer_group=settings.consumer_group,
        auto_offset_reset=settings.auto_offset_reset,
        state_dir=settings.state_dir,
        rocksdb_options=rocksdb_options(settings),
        commit_interval=ms_to_s(settings.commit_interval),
        processing_guarantee="at-least-once",
        on_consumer_error=dead.on_consumer_error,
        on_processing_error=dead.on_processing_error,
        loglevel=None,  # Quix's logs go through the service's handler (JSON or console)
        # A SIGKILLed processor keeps its partitions until the group session times out (45 s by
        # default); 10 s lets a restarted one resume sooner, still far above a GC pause.
        consumer_extra_config={
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 2_000,
            "queued.max.messages.kbytes": settings.consumer_prefetch_kb,
        },
        topic_manager=topics,
    )
    rf = replication.factor
    keep = {"retention.ms": retention_config(settings.topic_retention)}
    ticks = app.topic(
        settings.ticks_topic,
        key_deserializer="str",
        value_deserializer=TickDeserializer(),
        timestamp_extractor=tick_event_time,
        config=TopicConfig(num_partitions=settings.ticks_partitions, replication_factor=rf, extra_config=keep),
    )
    alerts_topic = (
        app.topic(
            settings.alerts_topic,
            key_serializer="str",
            value_serializer="bytes",
            config=TopicConfig(num_partitions=1, replication_factor=rf, extra_config=keep),
        )
        if on_alert is None
        else None
    )
    app.topic(settings.dlq_topic, config=TopicConfig(num_partitions=1, replication_factor=rf, extra_config=keep))
    sink = sink or InfluxSink(make_writer(settings), dead_letters=dead)  # refused points: DLQ topic too
    keep_output = alert_filter or (lambda value: True)
    rules_cache: dict[str, list[MoveRule]] = {}

    def rules_for(coin: str) -> list[MoveRule]:
        if coin not in rules_cache:
            rules_cache[coin] = move_rules(ruleset, coin)
        return rules_cache[coin]

    sdf = app.dataframe(ticks)
    # Quix's per-record machinery (each step, each branch copying the value, each state access,
    # each window operator's scan for windows to expire) costs more than the work itself, so one
    # stateful step does everything a tick implies on its own key: its price point, its window
    # changes and their points, the move alerts, its candle and the candle rules of every candle it
    # closes (the state every tick touches as one value, read once and written once at the end:
    # processor.state.TickState; the candle rules' history once per closed candle). The key
    # check and replay's tick filter run inside it too (a step less per tick); live runs skip the
    # time filters that only replay needs.
    live = alert_filter is None
    windows_ms = [ms for ms in ruleset.window_ms if not is_long(ms)]
    long_windows = [(name, ms) for name, ms in zip(ruleset.windows, ruleset.window_ms, strict=True) if is_long(ms)]
    interval = ruleset.candle_interval

    def on_closed(candle: dict[str, Any], state: Any) -> list[Alert]:
        coin = candle["coin"]
        config = ruleset.for_coin(coin)
        if live or config.crossover is None:
            return evaluate_candle(candle, config, ruleset.cooldown(coin, None), state)
        side = _cross_side(state)
        alerts = evaluate_candle(candle, config, ruleset.cooldown(coin, None), state)
        if side is None and keep_output({"event_time": candle["end"]}):
            _warn_first_side(candle, _cross_side(state))
        return alerts

    def on_tick(
        tick: dict[str, Any], key: Any, ts: int, headers: Any, quix_state: Any
    ) -> tuple[list[str], list[Alert]]:
        check_key(tick, key, ts, headers)  # a tick under another pair's key goes to the DLQ untouched
        if tick_filter is not None and not tick_filter(tick):
            return [], []
        coin, vs, event_time, price = tick["coin"], tick["vs"], tick["event_time"], tick["price"]
        lines = [price_line(tick)] if live or keep_output(tick) else []
        state = TickState(quix_state)  # the per-tick state as one read and one write
        current, closed = advance_candles(event_time, price, interval, ruleset.grace, state)
        changes = sliding_changes(coin, vs, event_time, price, windows_ms, ruleset.grace, state) if windows_ms else []
        if current is not None and (live or keep_output({"event_time": current["start"]})):
            lines.append(candle_line(candle_record(current, coin, vs, interval)))
        candle_alerts: list[Alert] = []
        for window in closed:
            candle = candle_record(window, coin, vs, interval)
            candle_alerts += on_closed(candle, state)
            if long_windows:
                changes += long_changes(candle, long_windows, interval, state)
        alerts = evaluate_changes(changes, rules_for(coin), state) if changes else []
        state.flush()
        lines += [change_line(c) for c in changes if live or keep_output({"event_time": c["end"]})]
        return lines, alerts + candle_alerts

    moves = sdf.apply(on_tick, stateful=True, metadata=True)
    moves.apply(_first).sink(sink)
    alerts = moves.apply(_second, expand=True)
    if not live:
        alerts = alerts.filter(lambda a: keep_output({"event_time": a.event_time}))
    alerts.apply(alert_line).sink(sink)
    if alerts_topic is None:
        alerts.update(on_alert)  # type: ignore[arg-type]
    else:
        # The alert record's Kafka timestamp is when it was published, not the tick's event time
        # (which the value carries): idempotence and retention need recent timestamps (contracts.md).
        alerts.apply(_publish_alert).set_timestamp(_now_ms).to_topic(alerts_topic)
    warn_existing(topics, replication)
    return Pipeline(app, sink, dead, ruleset)


def _cross_side(state: Any) -> str | None:
    """The crossover's last side ("above"/"below"), None until the averages first part."""
    packed = state.get(CANDLE_STATE) or {}
    side = packed.get("cross_side")
    return str(side) if side is not None else None


def _warn_first_side(candle: dict[str, Any], side: str | None) -> None:
    """Replay only: the crossover's averages part for the first time inside the range.

    A first side is a starting point, not a crossing, so the replay gives no alert here; the live
    run had a side from before the replay's warm-up (the averages stayed within ``min_gap_pct``
    all through it) and alerted here if that side was the other one. The replay cannot know which,
    so it says so: this is one of the differences README "Replay" lists."""
    if side is None:
        return
    end = int(candle["end"])
    log.warning(
        "replay: %s:%s crossover at %s (%d): the fast average is %s the slow one by more than min_gap_pct "
        "for the first time since the warm-up began; the replay gives no alert for a first side, the live "
        "run gave a %s here if they had been the other way round before the warm-up",
        candle["coin"],
        candle["vs"],
        format_time(end),
        end,
        side,
        "buy_hint" if side == "above" else "sell_hint",
        extra={"coin": candle["coin"], "vs": candle["vs"]},
    )


def _now_ms(_value: Any, _key: Any, _timestamp: int, _headers: Any) -> int:
    return time.time_ns() // 1_000_000


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _second(pair: tuple[Any, Any]) -> Any:
    return pair[1]


def _publish_alert(alert: Alert) -> bytes:
    """Count and log the alert; its JSON is what goes to the alerts topic."""
    _log_alert(alert)
    return alert.to_json()


def _log_alert(alert: Alert) -> Alert:
    metrics.ALERTS.labels(alert.kind).inc()
    log.warning(
        "ALERT %s [%s] %s (id %s)",
        alert.key,
        alert.severity,
        alert.message,
        alert.id,
        extra={"coin": alert.coin, "vs": alert.vs, "alert_id": alert.id, "kind": alert.kind},
    )
    return alert


def _kafka_context() -> dict[str, Any]:
    """The Kafka message being processed, for every log line written while processing it."""
    from quixstreams import message_context

    ctx = message_context()
    return {"topic": ctx.topic, "partition": ctx.partition, "offset": ctx.offset}


add_context_provider(_kafka_context)
