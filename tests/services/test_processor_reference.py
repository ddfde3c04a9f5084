"""The processor against a plain pandas computation, and replay against the live run.

The feed: three coins, two hours of ticks at irregular 15-45 s gaps (random walk with a scripted
crash and a rally), published in *arrival* order where some ticks come late (up to 40 s, within
the 60 s grace period). What InfluxDB holds for each window end or candle must equal the
aggregate over every tick whose event time falls in that window, whatever order they arrived in.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from crypto_watcher.messages import Alert, Tick
from processor.replay import replay
from tests.support.pipeline import LiveRun, live_run
from tests.support.services import Influx, Services, read_topic, unique

pytestmark = pytest.mark.services

T0 = 1_767_225_600_000
MIN = 60_000
WINDOWS = {"5m": 5 * MIN, "15m": 15 * MIN, "1h": 60 * MIN}


def make_feed(seed: int = 7) -> tuple[list[Tick], list[Tick]]:
    """(ticks in event-time order, the same ticks in arrival order)."""
    rng = random.Random(seed)
    ticks: list[Tick] = []
    for coin, price in (("bitcoin", 50_000.0), ("ethereum", 3_000.0), ("solana", 150.0)):
        t = T0 + rng.randrange(0, 20_000)
        while t < T0 + 120 * MIN:
            minute = (t - T0) / MIN
            drift = -0.012 if coin == "bitcoin" and 40 <= minute < 48 else 0.0  # ~9% crash
            drift = 0.011 if coin == "solana" and 80 <= minute < 86 else drift  # ~7% rally
            price *= 1 + drift + rng.gauss(0, 0.0015)
            ticks.append(Tick(coin=coin, vs="usd", price=round(price, 6), source="test", event_time=t))
            t += rng.randrange(15_000, 45_000)
    by_time = sorted(ticks, key=lambda k: (k.event_time, k.coin))
    arrival = sorted(by_time, key=lambda k: k.event_time + (rng.randrange(1, 40_000) if rng.random() < 0.15 else 0))
    assert arrival != by_time  # some ticks really are out of order
    return by_time, arrival


@pytest.fixture(scope="module")
def live(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRun]:
    by_time, arrival = make_feed()
    run = live_run(services, "ref", by_time, arrival, tmp_path_factory.mktemp("live-state"))
    yield run
    Influx(services.influx_url).drop(run.settings.influx_db)


def frame(ticks: list[Tick]) -> pd.DataFrame:
    return pd.DataFrame([{"coin": t.coin, "t": t.event_time, "price": t.price} for t in ticks])


def reference_changes(ticks: list[Tick], window_ms: int) -> pd.DataFrame:
    rows = []
    for coin, group in frame(ticks).groupby("coin"):
        g = group.sort_values("t")
        for t in g["t"]:
            inside = g[(g["t"] >= t - window_ms) & (g["t"] <= t)]
            first = inside.loc[inside["t"].idxmin(), "price"]
            last = inside.loc[inside["t"].idxmax(), "price"]
            rows.append(
                {
                    "coin": coin,
                    "time": t,
                    "first": first,
                    "last": last,
                    "high": inside["price"].max(),
                    "low": inside["price"].min(),
                    "ticks": float(len(inside)),
                }
            )
    return pd.DataFrame(rows).sort_values(["coin", "time"]).reset_index(drop=True)


def reference_candles(ticks: list[Tick], interval_ms: int = MIN) -> pd.DataFrame:
    df = frame(ticks).sort_values("t")
    df["time"] = df["t"] - df["t"] % interval_ms
    out = (
        df.groupby(["coin", "time"])
        .agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            ticks=("price", "size"),
        )
        .reset_index()
    )
    out["ticks"] = out["ticks"].astype(float)
    return out.sort_values(["coin", "time"]).reset_index(drop=True)


def stored(influx: Influx, db: str, query: str, columns: list[str]) -> pd.DataFrame:
    rows = influx.query(db, query)
    return pd.DataFrame(rows)[columns].sort_values(["coin", "time"]).reset_index(drop=True)


@pytest.mark.parametrize("window", list(WINDOWS))
def test_window_changes_equal_reference(live: LiveRun, window: str) -> None:
    influx = Influx(live.services.influx_url)
    cols = ["coin", "time", "first", "last", "high", "low", "ticks"]
    got = stored(
        influx, live.settings.influx_db, f"SELECT * FROM change WHERE \"window\" = '{window}' GROUP BY coin", cols
    )
    want = reference_changes(live.ticks, WINDOWS[window])
    pd.testing.assert_frame_equal(got, want[cols], check_dtype=False)


def reference_long_changes(ticks: list[Tick], window_ms: int, grace_ms: int = MIN) -> pd.DataFrame:
    """A long window at every closed candle's end: the ticks since the start of the bucket
    (window / 48 in whole minutes) the window's length before that end (processor.long_windows)."""
    bucket = MIN * max(1, window_ms // (48 * MIN))
    rows = []
    for coin, group in frame(ticks).groupby("coin"):
        g = group.sort_values("t")
        closed_until = g["t"].max() - grace_ms  # a candle closes once the pair's newest tick is past its end + grace
        for start in sorted(set(g["t"] - g["t"] % MIN)):
            end = start + MIN
            if end > closed_until:
                continue
            since = (end - window_ms) - (end - window_ms) % bucket
            inside = g[(g["t"] >= since) & (g["t"] < end)]
            rows.append(
                {
                    "coin": coin,
                    "time": end,
                    "first": inside["price"].iloc[0],
                    "last": inside["price"].iloc[-1],
                    "high": inside["price"].max(),
                    "low": inside["price"].min(),
                    "ticks": float(len(inside)),
                }
            )
    return pd.DataFrame(rows).sort_values(["coin", "time"]).reset_index(drop=True)


@pytest.mark.parametrize("window", ["4h", "24h"])
def test_long_window_changes_equal_reference(live: LiveRun, window: str) -> None:
    """Computed from candles as each closes; the two-hour feed fits in either window whole, so this
    checks the candle bookkeeping on late ticks (tests/unit/processor/test_long_windows.py checks
    the buckets leaving a window)."""
    influx = Influx(live.services.influx_url)
    cols = ["coin", "time", "first", "last", "high", "low", "ticks"]
    got = stored(
        influx, live.settings.influx_db, f"SELECT * FROM change WHERE \"window\" = '{window}' GROUP BY coin", cols
    )
    want = reference_long_changes(live.ticks, {"4h": 240 * MIN, "24h": 1440 * MIN}[window])
    assert len(want) > 300
    pd.testing.assert_frame_equal(got, want[cols], check_dtype=False)


def test_candles_equal_reference(live: LiveRun) -> None:
    influx = Influx(live.services.influx_url)
    cols = ["coin", "time", "open", "high", "low", "close", "ticks"]
    got = stored(influx, live.settings.influx_db, "SELECT * FROM candle WHERE interval = '1m' GROUP BY coin", cols)
    pd.testing.assert_frame_equal(got, reference_candles(live.ticks)[cols], check_dtype=False)


def test_scripted_moves_alerted_once(live: LiveRun) -> None:
    moves = [(a.coin, a.kind) for a in live.alerts if a.kind in ("drop", "spike")]
    assert moves.count(("bitcoin", "drop")) == 1, [a.message for a in live.alerts]
    assert moves.count(("solana", "spike")) == 1, [a.message for a in live.alerts]
    assert len({a.id for a in live.alerts}) == len(live.alerts)


def _points(influx: Influx, db: str, start: int, end: int) -> dict[str, list[dict[str, object]]]:
    where = f"time >= {start}ms AND time <= {end}ms"
    return {m: influx.query(db, f"SELECT * FROM {m} WHERE {where} GROUP BY *") for m in ("change", "candle", "alert")}


@pytest.mark.parametrize(("start_min", "end_min"), [(0, 130), (60, 110)])
def test_replay_reproduces_the_live_run(live: LiveRun, tmp_path: Path, start_min: int, end_min: int) -> None:
    influx = Influx(live.services.influx_url)
    db = unique("ref_replay")
    alerts_topic = unique("replay") + ".alerts"
    start, end = T0 + start_min * MIN, T0 + end_min * MIN
    settings = live.settings.model_copy(
        update={
            "influx_db": db,
            "consumer_group": unique("replay"),
            "alerts_topic": alerts_topic,
            "state_dir": str(tmp_path / "state"),
        }
    )
    try:
        _pipeline, span = replay(settings, start, end, show_progress=False, idle_timeout_s=20)
        assert span.total > 0
        replayed = _points(influx, db, start, end)
        original = _points(influx, live.settings.influx_db, start, end)
        for measurement in ("change", "candle", "alert"):
            assert replayed[measurement] == original[measurement], measurement
        # candles that start before `start` are outside the range and not written
        assert all(int(r["time"]) >= start for r in influx.query(db, "SELECT * FROM candle"))  # type: ignore[call-overload]
        alerts = [Alert.from_json(v) for _k, v, _t in read_topic(live.services.kafka_bootstrap, alerts_topic) if v]
        live_ids = sorted(a.id for a in live.alerts if start <= a.event_time <= end)
        assert sorted(a.id for a in alerts) == live_ids
    finally:
        influx.drop(db)
