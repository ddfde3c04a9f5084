"""A replay that starts inside the data gives the live run's values and alerts (issue 14, item 4).

tests/services/test_processor_reference.py replays ranges whose warm-up reaches back to the first tick, where
the replay and the live run start from the same empty state. Here the data runs for ten hours
before and after the range, so the replay starts from its own state in the middle of a random walk
while the live run has been going for hours. Through the real Kafka, the real processor and the real
InfluxDB: the points within ``[from, to]`` equal the live run's, the RSI and crossover values
(each alert's ``indicator``, a crossover's slow average) agree within the tolerances
processor.replay states, and the alerts are the same ones (same ids, times, prices and messages).

A third coin shows the one difference the README expects here: its crossover's averages stay
close together through the whole warm-up, so the replay does not know the side the live run had
them on, misses the live run's crossover alert, and logs a warning saying so.

Before the warm-up was derived from the indicators' decay (62 minutes with these rules: 3% of the
RSI state before it survived), the RSI values of the range differed by tenths of a point.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from crypto_watcher.messages import Alert, Tick
from processor.replay import replay, tolerances, warmup_ms
from processor.rules import load_rules
from tests.support.pipeline import LiveRun, live_run
from tests.support.services import Influx, Services, read_topic, unique

pytestmark = pytest.mark.services

T0 = 1_767_225_600_000
MIN = 60_000
HOURS = 10
FROM, TO = T0 + 5 * 60 * MIN, T0 + 9 * 60 * MIN  # hours 5 to 9 of 10
COINS = (("bitcoin", 50_000.0), ("ethereum", 3_000.0))

# Thresholds set so that a random walk alerts often enough to compare: RSI zones at 40/60 rather
# than 30/70, moves of 2% rather than 5%, volatility at 3 standard deviations rather than 4.
RULES = """\
defaults:
  windows: [5m, 15m, 1h]
  candle_interval: 1m
  grace: 60s
  cooldown: 15m
  rules:
    drop: {threshold_pct: 2}
    spike: {threshold_pct: 2}
    volatility: {z_threshold: 3}
    crossover: {fast: 9, slow: 21, average: ema}
    rsi: {period: 14, oversold: 40, overbought: 60}
"""


CALM = "calmcoin"
CALM_FROM, CALM_TO = 80, 330
"""Minutes of the calm coin's quiet stretch, after a rise and before a fall: it holds the warm-up."""


def calm_step(minute: float, rng: random.Random) -> float:
    """The calm coin's move per tick: up 0.05% until minute 80, nearly still until 330, down 0.15% until 370."""
    if minute < CALM_FROM:
        return 0.0005 + rng.gauss(0, 0.00005)
    if CALM_TO <= minute < CALM_TO + 40:
        return -0.0015 + rng.gauss(0, 0.00005)
    return rng.gauss(0, 0.0001)


def make_feed(seed: int = 14) -> tuple[list[Tick], list[Tick]]:
    """(ticks in event-time order, the same ticks in arrival order: 10% up to 40 s late)."""
    rng = random.Random(seed)
    ticks: list[Tick] = []
    for coin, price in (*COINS, (CALM, 1.0)):
        t = T0 + rng.randrange(0, 20_000)
        while t < T0 + HOURS * 60 * MIN:
            price *= 1 + (calm_step((t - T0) / MIN, rng) if coin == CALM else rng.gauss(0, 0.0018))
            ticks.append(Tick(coin=coin, vs="usd", price=round(price, 9), source="test", event_time=t))
            t += rng.randrange(12_000, 28_000)
    by_time = sorted(ticks, key=lambda k: (k.event_time, k.coin))
    arrival = sorted(by_time, key=lambda k: k.event_time + (rng.randrange(1, 40_000) if rng.random() < 0.1 else 0))
    return by_time, arrival


@pytest.fixture(scope="module")
def live(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRun]:
    influx = Influx(services.influx_url)
    folder = tmp_path_factory.mktemp("convergence")
    rules = folder / "rules.yaml"
    rules.write_text(RULES)
    by_time, arrival = make_feed()
    run = live_run(services, "conv", by_time, arrival, folder / "state", idle_s=15, rules_file=str(rules))
    db = run.settings.influx_db
    # The live run processed all ten hours: one candle per coin and minute that had a tick.
    minutes = {(t.coin, t.event_time - t.event_time % MIN) for t in by_time}
    stored = influx.query(db, "SELECT count(close) FROM candle GROUP BY coin")
    assert sum(int(r["count"]) for r in stored) == len(minutes)
    yield run
    influx.drop(db)


def _points(influx: Influx, db: str) -> dict[str, list[dict[str, Any]]]:
    where = f"time >= {FROM}ms AND time <= {TO}ms"
    return {m: influx.query(db, f"SELECT * FROM {m} WHERE {where} GROUP BY *") for m in ("change", "candle", "alert")}


def _name(alert: Alert) -> str:
    return f"{alert.coin} {alert.rule} {alert.kind} at {alert.event_time} (indicator {alert.indicator})"


RSI_IN_MESSAGE = re.compile(r"(RSI\(\d+\)) (\d+\.\d)")


def _same_alert(live: dict[str, Any], replayed: dict[str, Any], rule: str) -> None:
    """Everything equal but the indicator and a crossover's reference price (the slow average), each
    within its tolerance, and the RSI printed in the message (at most one rounding step apart)."""
    tolerance = tolerances()
    allowed = {"rsi": tolerance.rsi_points, "crossover": tolerance.gap_pct_points}.get(rule, 0.0)
    if live["indicator"] is None:  # drop and spike carry none
        assert replayed["indicator"] is None, (rule, live, replayed)
    else:
        assert abs(live["indicator"] - replayed["indicator"]) <= allowed, (rule, live, replayed)
    shown = [RSI_IN_MESSAGE.search(a["message"]) for a in (live, replayed)] if rule == "rsi" else []
    if shown:
        first, second = shown
        assert first is not None and second is not None
        assert abs(float(first.group(2)) - float(second.group(2))) <= 0.1 + 1e-9  # one rounding step at most
    masked = [RSI_IN_MESSAGE.sub(r"\1 _", a["message"]) for a in (live, replayed)]
    assert masked[0] == masked[1]
    if rule == "crossover":  # its reference price is the slow average: an EMA, within its tolerance
        ratio = replayed["reference_price"] / live["reference_price"]
        assert abs(ratio - 1) <= tolerance.ema_relative, (rule, live, replayed)
    varying = ("indicator", "message", "reference_price" if rule == "crossover" else "indicator")
    rest = [{k: v for k, v in a.items() if k not in varying} for a in (live, replayed)]
    assert rest[0] == rest[1]


@dataclass
class Replayed:
    points: dict[str, list[dict[str, Any]]]
    alerts: list[Alert]
    warnings: list[str]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def replayed(live: LiveRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    """``replay`` of [FROM, TO] into its own database and alerts topic, with its warnings."""
    influx = Influx(live.services.influx_url)
    assert live.settings.rules_file is not None
    read_from = FROM - warmup_ms(load_rules(live.settings.rules_file))
    # The warm-up starts inside the data, hours after the live run did, and inside the calm stretch.
    assert T0 + CALM_FROM * MIN < read_from < T0 + CALM_TO * MIN
    db = unique("conv_replay")
    alerts_topic = unique("conv_replay") + ".alerts"
    settings = live.settings.model_copy(
        update={
            "influx_db": db,
            "consumer_group": unique("conv_replay"),
            "alerts_topic": alerts_topic,
            "state_dir": str(tmp_path_factory.mktemp("replay-state")),
        }
    )
    collect = _Collect()
    logging.getLogger("processor").addHandler(collect)
    try:
        _pipeline, span = replay(settings, FROM, TO, show_progress=False, idle_timeout_s=30)
        assert span.total == len(live.ticks)
        alerts = [Alert.from_json(v) for _k, v, _t in read_topic(live.services.kafka_bootstrap, alerts_topic) if v]
        yield Replayed(_points(influx, db), alerts, collect.messages)
    finally:
        logging.getLogger("processor").removeHandler(collect)
        influx.drop(db)


def _expected_difference(live: LiveRun) -> list[Alert]:
    """The live run's calm-coin crossover alerts in the range: the one difference README "Replay" expects."""
    return [a for a in live.alerts if a.coin == CALM and a.rule == "crossover" and FROM <= a.event_time <= TO]


def test_a_replay_starting_inside_the_data_matches_the_live_run(live: LiveRun, replayed: Replayed) -> None:
    original = _points(Influx(live.services.influx_url), live.settings.influx_db)

    # Bounded history: equal to the last bit.
    for measurement in ("change", "candle"):
        assert replayed.points[measurement], measurement
        assert replayed.points[measurement] == original[measurement], measurement

    # Alerts: the same ones, in Kafka and in InfluxDB, their indicators within the tolerance.
    expected = {a.id for a in _expected_difference(live)}
    live_alerts = {a.id: a for a in live.alerts if FROM <= a.event_time <= TO and a.id not in expected}
    replay_alerts = {a.id: a for a in replayed.alerts}
    assert len(replay_alerts) == len(replayed.alerts), "an alert was published twice"
    by_rule = [a.rule for a in live_alerts.values() if a.coin != CALM]
    assert by_rule.count("rsi") >= 10 and by_rule.count("crossover") >= 3, by_rule  # enough to compare
    missing = sorted(_name(a) for i, a in live_alerts.items() if i not in replay_alerts)
    extra = sorted(_name(a) for i, a in replay_alerts.items() if i not in live_alerts)
    assert (missing, extra) == ([], []), "alerts only the live run gave, and only the replay gave"
    allowed = {"rsi": tolerances().rsi_points, "crossover": tolerances().gap_pct_points}
    too_far = [
        (_name(alert), f"replay {replay_alerts[alert_id].indicator}", f"tolerance {allowed.get(alert.rule, 0.0)}")
        for alert_id, alert in live_alerts.items()
        if alert.indicator is not None
        and abs(alert.indicator - (replay_alerts[alert_id].indicator or 0.0)) > allowed.get(alert.rule, 0.0)
    ]
    assert too_far == [], "indicators beyond the tolerance"
    for alert_id, alert in live_alerts.items():
        _same_alert(alert.model_dump(), replay_alerts[alert_id].model_dump(), alert.rule)
    stored = {r["id"]: r for r in replayed.points["alert"]}
    live_stored = [r for r in original["alert"] if r["id"] not in expected]
    assert sorted(stored) == sorted(r["id"] for r in live_stored) == sorted(live_alerts)
    for row in live_stored:
        _same_alert(row, stored[row["id"]], row["rule"])


def test_a_crossover_side_older_than_the_warmup_is_the_difference_the_replay_warns_about(
    live: LiveRun, replayed: Replayed
) -> None:
    """The calm coin rose (fast average above the slow one), stayed still through the whole warm-up,
    then fell inside the range: the live run alerted the fall's crossover, the replay, which never
    saw the averages apart before, takes the fall as its first side, gives no alert and says so."""
    differences = _expected_difference(live)
    assert [(a.kind, a.coin) for a in differences] == [("sell_hint", CALM)]
    crossing = differences[0]
    assert T0 + CALM_TO * MIN < crossing.event_time < T0 + (CALM_TO + 40) * MIN
    assert crossing.id not in {a.id for a in replayed.alerts}
    said = [m for m in replayed.warnings if "crossover" in m and f"({crossing.event_time})" in m]
    assert len(said) == 1 and f"{CALM}:usd" in said[0] and "sell_hint" in said[0], replayed.warnings
    # No other pair's crossover needed a warning: their averages parted during the warm-up.
    assert [m for m in replayed.warnings if "crossover" in m] == said
