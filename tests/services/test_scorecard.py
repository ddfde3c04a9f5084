"""``crypto-processor scorecard`` through its CLI against the real Kafka and InfluxDB.

- **what live would alert**: the scorecard's hints are exactly the alerts ``crypto-processor
  replay`` publishes for the same range (same ids), and nothing reaches an alerts topic, nor the
  live dead-letter topic: the alerts are collected, not published;
- **exactness**: every forward return and every share in ``--json`` equals a pandas computation
  (``merge_asof``) over the ticks that were published, and the rows in InfluxDB carry the same numbers;
- **a hint followed by a rise scores 100 %**: on :func:`rising_after_buy` every buy hint is right at
  1 h, 4 h and 24 h;
- **a random walk scores near the baseline**: on 16 independent zero-drift random walks (7 days of
  5-minute ticks each: 16 x 2,017 = 32,272 baseline moments; about 1,090 hints, 209 to 329 per
  pooled kind/rule/direction group), each group's right-share is within 4 standard deviations of
  the baseline's share in its direction, and all hints together within 4 of the true 50 %. The
  deviations are bounded from the hints' own spacing (``overlap_sd``): given the past, a walk's
  next increments are independent of it, so outcomes whose horizons do not overlap are
  uncorrelated whatever chose the moments, and the variance of a share is at most a quarter of the
  overlapping pairs over n squared. That gives, at 1 h, 16-19 percentage points per group and 7.5
  for all hints (observed: within 5 points); at 24 h the overlap makes the bound loose (about 50
  points), said rather than hidden. 4 standard deviations: a correct scorecard fails it with
  probability under 1/16 by Chebyshev, about 6e-5 if the share is near normal. The figures are printed (``-s``);
- **pending**: hints whose horizon passes the last tick are counted apart, in no share;
- the target rule is the replay's: no database named exits 2 before anything runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka.admin import AdminClient

from crypto_watcher.messages import Alert, Tick
from processor.cli import main
from tests.support.pipeline import publisher
from tests.support.root_logging import restored_root_logging
from tests.support.scorecard_cli import run_scorecard, scorecard_args
from tests.support.scorecard_feeds import (
    HOUR,
    MIN,
    WALK_COINS,
    crash_times,
    overlap_sd,
    pandas_forward,
    pandas_prices,
    random_walk,
    rising_after_buy,
)
from tests.support.services import Influx, Services, read_topic, unique

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
DAY = 24 * HOUR
HORIZONS = {"1h": HOUR, "4h": 4 * HOUR, "24h": DAY}


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def card(self) -> dict[str, Any]:
        assert self.code == 0, self.err
        return dict(json.loads(self.out))


def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    *args: str,
) -> Run:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    with restored_root_logging():  # main() points a log handler at capsys' stream
        code = main(list(args))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def publish(services: Services, ticks: list[Tick], tag: str) -> str:
    topic = f"{unique(tag)}.ticks"
    out = publisher(services, topic, partitions=2)
    for tick in ticks:
        out.publish(tick)
    assert out.flush(60) == 0
    return topic


@dataclass
class Scored:
    """A scorecard run over a published feed: its JSON, the ticks, and where everything went."""

    ticks: list[Tick]
    topic: str
    card: dict[str, Any]
    from_ms: int
    to_ms: int
    database: str
    env: dict[str, str]


def env_for(services: Services, topic: str) -> dict[str, str]:
    """The live processor's settings (v1 here; the Grafana test runs v2), with topics of the test's own."""
    return {
        "CW_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "CW_TICKS_TOPIC": topic,
        "CW_ALERTS_TOPIC": f"{topic}.alerts-live",
        "CW_DLQ_TOPIC": f"{topic}.dlq-live",
        "CW_TOPIC_RETENTION": "0",
        "CW_INFLUX_API": "v1",
        "CW_INFLUX_URL": services.influx_url,
        "CW_INFLUX_DB": unique("live"),
    }


def scorecard(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    from_ms: int,
    to_ms: int,
    database: str,
    state: Path,
) -> dict[str, Any]:
    run = run_cli(monkeypatch, capsys, env, *scorecard_args(from_ms, to_ms, ["--influx-db", database], state))
    return run.card


@pytest.fixture(scope="module")
def walk(
    services: Services,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scored]:
    """16 random walks of 5-minute ticks: 6 hours of warm-up, 7 days scored, 1 more day for the horizons."""
    ticks = random_walk(T0 - 6 * HOUR, T0 + 8 * DAY)
    topic = publish(services, ticks, "scorecard_walk")
    env = env_for(services, topic)
    database = unique("scorecard")
    from_ms, to_ms = T0, T0 + 7 * DAY
    card = run_scorecard(
        env, scorecard_args(from_ms, to_ms, ["--influx-db", database], tmp_path_factory.mktemp("walk"))
    )
    yield Scored(ticks, topic, card, from_ms, to_ms, database, env)
    Influx(services.influx_url).drop(database)


FIRST_CRASH = T0 + 2 * HOUR
RISING_END = FIRST_CRASH + 4 * 28 * HOUR - MIN  # the fifth crash never comes


@pytest.fixture(scope="module")
def rising(
    services: Services,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scored]:
    """Two coins crashing and rebounding every 28 hours (:func:`rising_after_buy`), four crashes scored."""
    ticks = rising_after_buy(T0 - 6 * HOUR, FIRST_CRASH, RISING_END)
    topic = publish(services, ticks, "scorecard_rising")
    env = env_for(services, topic)
    database = unique("scorecard")
    from_ms, to_ms = T0, FIRST_CRASH + 3 * 28 * HOUR + 2 * HOUR  # each crash with its rebound
    state = tmp_path_factory.mktemp("rising")
    card = run_scorecard(env, scorecard_args(from_ms, to_ms, ["--influx-db", database], state))
    yield Scored(ticks, topic, card, from_ms, to_ms, database, env)
    Influx(services.influx_url).drop(database)


# --- what live would alert, and nothing published ----------------------------------------------


@pytest.mark.services
def test_hints_are_the_alerts_replay_publishes_and_none_is_published(
    rising: Scored,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # The scorecard published nothing: neither the live alerts topic nor the live dead-letter topic
    # exists (looked at before the replay below, which creates its dead-letter topic).
    topics = AdminClient({"bootstrap.servers": services.kafka_bootstrap}).list_topics(timeout=10).topics
    assert rising.env["CW_ALERTS_TOPIC"] not in topics
    assert rising.env["CW_DLQ_TOPIC"] not in topics
    whatif = unique("whatif")
    alerts_topic = f"{rising.topic}.replay-alerts"
    try:
        run = run_cli(
            monkeypatch,
            capsys,
            rising.env,
            "replay",
            "--from",
            str(rising.from_ms),
            "--to",
            str(rising.to_ms),
            "--influx-db",
            whatif,
            "--alerts-topic",
            alerts_topic,
            "--state-dir",
            str(tmp_path / "replay"),
            "--no-progress",
        )
        assert run.code == 0, run.err
    finally:
        Influx(services.influx_url).drop(whatif)
    published = [Alert.from_json(value) for _key, value, _ts in read_topic(services.kafka_bootstrap, alerts_topic)]
    assert published, "the crashes must raise alerts"
    replayed = {a.id: a for a in published}
    hints = {h["id"]: h for h in rising.card["hints"]}
    assert set(hints) == set(replayed), "the scorecard scores exactly the alerts the replay publishes"
    for alert_id, hint in hints.items():
        alert = replayed[alert_id]
        assert (hint["coin"], hint["kind"], hint["rule"], hint["window"], hint["event_time"]) == (
            alert.coin,
            alert.kind,
            alert.rule,
            alert.window,
            alert.event_time,
        )
    kinds = {h["kind"] for h in rising.card["hints"]}
    assert {"buy_hint", "sell_hint", "spike", "volatility"} <= kinds, kinds


# --- exactness ------------------------------------------------------------------------------------


@pytest.mark.services
def test_forward_returns_and_shares_equal_pandas_over_the_published_ticks(walk: Scored) -> None:
    prices = pandas_prices(walk.ticks)
    card = walk.card
    assert card["horizons"] == HORIZONS
    hints_by_coin: dict[str, list[dict[str, Any]]] = {}
    for hint in card["hints"]:
        hints_by_coin.setdefault(hint["coin"], []).append(hint)
    checked = 0
    for coin, hints in hints_by_coin.items():
        frame = prices[(coin, "usd")]
        times = np.array([h["event_time"] for h in hints], dtype="int64")
        for name, ms in HORIZONS.items():
            expected = pandas_forward(frame, times, ms)
            for hint, value in zip(hints, expected, strict=True):
                got = hint["returns_pct"][name]
                assert (got is None) if math.isnan(value) else got == value, (hint["id"], name, got, value)
                checked += 1
    assert checked == 3 * len(card["hints"]) > 300

    for group in card["groups"]:
        members = [
            h
            for h in card["hints"]
            if (h["coin"], h["kind"], h["rule"], h["window"], h["direction"])
            == (group["coin"], group["kind"], group["rule"], group["window"], group["direction"])
        ]
        assert group["hints"] == len(members)
        frame = prices[(group["coin"], "usd")]
        times = np.array([h["event_time"] for h in members], dtype="int64")
        for name, ms in HORIZONS.items():
            returns = pandas_forward(frame, times, ms)
            scored = returns.dropna()
            stats = group["horizons"][name]
            assert (stats["scored"], stats["pending"]) == (len(scored), int(returns.isna().sum()))
            if scored.empty:
                continue
            assert stats["median_pct"] == scored.quantile(0.5)
            assert (stats["q1_pct"], stats["q3_pct"]) == (scored.quantile(0.25), scored.quantile(0.75))
            moved = scored > 0 if group["direction"] == "up" else scored < 0
            assert stats["right_pct"] == moved.mean() * 100, (group, name)

    for base in card["baseline"]:
        frame = prices[(base["coin"], "usd")]
        moments = frame[(frame["t"] >= walk.from_ms) & (frame["t"] <= walk.to_ms)]["t"].to_numpy()
        assert base["moments"] == len(moments) == 7 * 288 + 1
        for name, ms in HORIZONS.items():
            scored = pandas_forward(frame, moments, ms).dropna()
            stats = base["horizons"][name]
            assert stats["median_pct"] == scored.quantile(0.5)
            assert (stats["up_pct"], stats["down_pct"]) == ((scored > 0).mean() * 100, (scored < 0).mean() * 100)


@pytest.mark.services
def test_influx_rows_carry_the_json_numbers(walk: Scored, services: Services) -> None:
    influx = Influx(services.influx_url)
    rows = influx.query(walk.database, 'SELECT * FROM "scorecard" GROUP BY *')
    assert len(rows) == 3 * len(walk.card["hints"])
    by_key = {(r["id"], r["horizon"]): r for r in rows}
    for hint in walk.card["hints"]:
        for name in HORIZONS:
            row = by_key[(hint["id"], name)]
            assert row["time"] == hint["event_time"] and row["price"] == hint["price"]
            assert (row["kind"], row["rule"], row["window"], row["direction"]) == (
                hint["kind"],
                hint["rule"],
                hint["window"],
                hint["direction"],
            )
            assert row.get("ret_pct") == hint["returns_pct"][name]
            right = hint["right"][name]
            assert row.get("right") == (None if right is None else float(right))
            assert row["pending"] == (1.0 if right is None else 0.0)
    base = influx.query(walk.database, 'SELECT count("price") AS "n" FROM "scorecard_baseline" GROUP BY "horizon"')
    assert {r["horizon"]: r["n"] for r in base} == {h: len(WALK_COINS) * (7 * 288 + 1) for h in HORIZONS}
    assert influx.query(walk.database, 'SELECT * FROM "price" LIMIT 1') == [], "the replay stored no prices"


# --- a random walk scores near its baseline ------------------------------------------------------


@pytest.mark.services
def test_a_random_walk_scores_near_the_baseline(walk: Scored) -> None:
    card = walk.card
    baseline = {b["coin"]: b for b in card["baseline"]}
    moments = {c: list(range(walk.from_ms, walk.to_ms + 1, 5 * MIN)) for c in WALK_COINS}
    tested = []
    for name, ms in HORIZONS.items():
        base_sd = overlap_sd(moments, ms)
        # pooled over the 16 coins: one share per hint kind, rule and direction
        pools: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for hint in card["hints"]:
            if hint["returns_pct"][name] is not None:
                pools.setdefault((hint["kind"], hint["rule"], hint["direction"]), []).append(hint)
        for (kind, rule, direction), hints in sorted(pools.items()):
            n = len(hints)
            if n < 40:
                continue
            right = sum(1 for h in hints if h["right"][name]) / n * 100
            up_or_down = "up_pct" if direction == "up" else "down_pct"
            # the baseline share the same coins would have had, weighted as the hints are
            base = sum(baseline[h["coin"]]["horizons"][name][up_or_down] for h in hints) / n
            times: dict[str, list[int]] = {}
            for h in hints:
                times.setdefault(h["coin"], []).append(h["event_time"])
            sd = overlap_sd(times, ms)
            tolerance = 4 * (sd + base_sd) * 100
            line = (
                f"{kind}/{rule} {direction} at {name}: n={n}, right {right:.1f}%, baseline {base:.1f}%, "
                f"difference {right - base:+.1f} pp, tolerance {tolerance:.1f} pp (4 x ({sd:.3f} + {base_sd:.3f}))"
            )
            print(line)
            tested.append(line)
            assert abs(right - base) <= tolerance, line
        # every hint together, against the walk's true share (1/2: zero drift, no ties)
        scored = [h for h in card["hints"] if h["returns_pct"][name] is not None]
        times = {}
        for h in scored:
            times.setdefault(h["coin"], []).append(h["event_time"])
        right = sum(1 for h in scored if h["right"][name]) / len(scored) * 100
        tolerance = 4 * overlap_sd(times, ms) * 100
        line = f"all {len(scored)} hints at {name}: right {right:.1f}%, true 50%, tolerance {tolerance:.1f} pp"
        print(line)
        assert abs(right - 50) <= tolerance, line
        for coin in WALK_COINS:
            up = baseline[coin]["horizons"][name]["up_pct"]
            assert abs(up - 50) <= 4 * overlap_sd({coin: moments[coin]}, ms) * 100, (coin, name, up)
    assert sum("at 1h" in line for line in tested) >= 4, tested


# --- a buy hint followed by a rise scores 100 % ----------------------------------------------------


@pytest.mark.services
def test_buy_hints_each_followed_by_a_rise_score_100(rising: Scored) -> None:
    card = rising.card
    buys = [g for g in card["groups"] if g["kind"] == "buy_hint"]
    assert {g["rule"] for g in buys} == {"rsi", "crossover"}, buys
    assert sum(g["hints"] for g in buys) >= 2 * 4 * 2, "a buy hint from RSI and one from the crossover per crash"
    for group in buys:
        for name in HORIZONS:
            stats = group["horizons"][name]
            assert stats["pending"] == 0 and stats["scored"] == group["hints"], group
            assert stats["right_pct"] == 100.0, (group["coin"], group["rule"], name, stats)
            assert stats["q1_pct"] > 0, "every return is a rise"
    # by construction: every buy hint lies in a crash or its rebound (the only place they can come from),
    # and the price rises from there for more than a day: confirmed on the ticks themselves
    crashes = crash_times(FIRST_CRASH, RISING_END)
    prices = pandas_prices(rising.ticks)
    for hint in card["hints"]:
        if hint["kind"] == "buy_hint":
            assert any(0 <= hint["event_time"] - c <= 3 * HOUR for c in crashes), hint
            frame = prices[(hint["coin"], "usd")]
            for ms in HORIZONS.values():
                (ret,) = pandas_forward(frame, np.array([hint["event_time"]]), ms)
                assert ret > 0, (hint, ms)


# --- pending ------------------------------------------------------------------------------------


@pytest.mark.services
def test_hints_near_the_end_are_pending_not_scored(
    services: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The ticks stop 2 hours after the range: its last crash's hints are scored at 1 h, pending at 4 h and 24 h."""
    first_crash = T0 + 2 * HOUR
    last_crash = first_crash + 28 * HOUR
    to_ms = last_crash + 30 * MIN
    ticks = rising_after_buy(T0 - 6 * HOUR, first_crash, to_ms + 2 * HOUR)
    topic = publish(services, ticks, "scorecard_pending")
    database = unique("scorecard")
    try:
        card = scorecard(monkeypatch, capsys, env_for(services, topic), T0, to_ms, database, tmp_path)
    finally:
        Influx(services.influx_url).drop(database)
    late = [h for h in card["hints"] if h["event_time"] >= last_crash]
    early = [h for h in card["hints"] if h["event_time"] < last_crash]
    assert late and early
    for hint in late:
        assert hint["returns_pct"]["1h"] is not None
        assert hint["returns_pct"]["4h"] is None and hint["right"]["4h"] is None, hint
        assert hint["returns_pct"]["24h"] is None
    for hint in early:
        assert all(v is not None for v in hint["returns_pct"].values()), hint
    for group in card["groups"]:
        members = [
            h
            for h in late
            if (h["coin"], h["kind"], h["rule"], h["window"], h["direction"])
            == (group["coin"], group["kind"], group["rule"], group["window"], group["direction"])
        ]
        for name in ("4h", "24h"):
            stats = group["horizons"][name]
            assert stats["pending"] == len(members)
            assert stats["scored"] == group["hints"] - len(members)
    buy = [g for g in card["groups"] if g["kind"] == "buy_hint"]
    assert all(g["horizons"]["24h"]["right_pct"] in (100.0, None) for g in buy), "pending hints count as neither"


# --- the replay's target rule --------------------------------------------------------------------


@pytest.mark.services
def test_refuses_the_live_database_and_bad_horizons_before_running(
    services: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env = env_for(services, unique("never_read"))
    base = ["scorecard", "--from", "2026-01-01", "--to", "2026-01-08", "--state-dir", str(tmp_path), "--no-progress"]
    run = run_cli(monkeypatch, capsys, env, *base)
    assert run.code == 2, run.err
    assert run.err.startswith("crypto-processor scorecard: ") and "--into-live" in run.err, run.err
    assert f"'{env['CW_INFLUX_DB']}' (CW_INFLUX_DB)" in run.err
    run = run_cli(monkeypatch, capsys, env, *base, "--influx-db", "x", "--horizons", "1h,soon")
    assert run.code == 2 and "--horizons '1h,soon'" in run.err, run.err
    run = run_cli(monkeypatch, capsys, env, *base, "--influx-bucket", "x")
    assert run.code == 2 and "--influx-bucket does not apply to the InfluxDB v1 API" in run.err, run.err
    assert not any(tmp_path.iterdir()), "refused before the pipeline was built"
