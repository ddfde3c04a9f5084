"""The scorecard's statistics (processor.scorecard), checked against pandas over the same ticks.

No server: the hints here are alerts built by hand at chosen moments, so every case the
definitions name is hit on purpose (ticks repeating an event time, hints between ticks, hints
whose horizon is not covered yet). tests/services/test_scorecard.py runs the real pipeline.

- every forward return equals pandas' ``merge_asof`` (price as of t and as of t + h, backward)
  computed as ``(p1 / p0 - 1) * 100``, float for float; so do the medians, quartiles
  (``Series.quantile``) and shares of every group and of every baseline;
- a hint whose horizon passes the pair's last tick is pending: counted apart, in no share;
- the direction of each kind (a drop is right when the price fell), volatility by its sign;
- the InfluxDB rows carry the same numbers, and a pending row carries no return and no ``right``.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest

from crypto_watcher.messages import Alert
from processor.forward_returns import PriceSeries, Stats, quantile
from processor.points import scorecard_baseline_line, scorecard_line
from processor.scorecard import (
    DEFAULT_HORIZONS,
    direction_of,
    format_table,
    horizons_from,
    score,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
MIN = 60_000
HOUR = 60 * MIN
KINDS = ("drop", "spike", "volatility", "buy_hint", "sell_hint")
RULE_OF = {"drop": "drop", "spike": "spike", "volatility": "volatility", "buy_hint": "rsi", "sell_hint": "crossover"}


def make_alert(coin: str, kind: str, event_time: int, change_pct: float = -1.0, window: str = "15m") -> Alert:
    rule = RULE_OF[kind]
    return Alert(
        id=Alert.make_id(coin, "usd", rule, kind, window, event_time),
        coin=coin,
        vs="usd",
        kind=kind,  # type: ignore[arg-type]
        rule=rule,
        window=window,
        window_ms=15 * MIN,
        change_pct=change_pct,
        price=1.0,
        reference_price=1.0,
        event_time=event_time,
        message="test",
    )


def random_market(seed: int) -> tuple[dict[str, list[tuple[int, float]]], list[Alert], int, int]:
    """Three coins with irregular tick times (some repeated), three days of ticks; alerts at tick
    times and between ticks, some so late their horizons are not covered."""
    rng = random.Random(seed)
    ticks: dict[str, list[tuple[int, float]]] = {}
    alerts: list[Alert] = []
    from_ms, to_ms = T0 + 2 * HOUR, T0 + 60 * HOUR
    for coin in ("bitcoin", "ethereum", "solana"):
        t, price, rows = T0, rng.uniform(10, 50_000), []
        while t < T0 + 72 * HOUR:
            rows.append((t, price))
            if rng.random() < 0.03:
                rows.append((t, price * 1.001))  # a repeated event time: the later one counts
            t += rng.choice((20_000, 60_000, 61_000, 300_000, 45 * MIN))
            price = round(price * math.exp(rng.gauss(0.0, 0.004)), 6)
        rng.shuffle(rows)  # arrival order is not event-time order
        ticks[coin] = rows
        times = sorted({r[0] for r in rows})
        for _ in range(120):
            kind = rng.choice(KINDS)
            at = rng.choice(times) if rng.random() < 0.5 else rng.randrange(from_ms, to_ms)
            at = min(max(at, from_ms), to_ms)
            alerts.append(make_alert(coin, kind, at, change_pct=rng.choice((-2.5, 3.0))))
        alerts.append(make_alert(coin, "buy_hint", to_ms, window="1m"))  # at the very end: pending at 24h
    alerts.append(alerts[0])  # a re-read batch hands an alert over twice: it counts once
    return ticks, alerts, from_ms, to_ms


def pandas_prices(rows: list[tuple[int, float]]) -> pd.DataFrame:
    """The ticks as pandas sees them: one price per event time (the last read), in time order."""
    frame = pd.DataFrame(rows, columns=["t", "price"])
    return frame.drop_duplicates("t", keep="last").sort_values("t").reset_index(drop=True)


def pandas_forward(prices: pd.DataFrame, moments: np.ndarray, horizon_ms: int) -> pd.Series:
    """Forward return in percent from the price as of each moment to the price as of moment + h;
    NaN where no tick at or after moment + h exists (pending)."""
    at = pd.DataFrame({"t": moments.astype("int64")})
    p0 = pd.merge_asof(at, prices, on="t", direction="backward")["price"]
    later = pd.DataFrame({"t": (moments + horizon_ms).astype("int64")})
    p1 = pd.merge_asof(later, prices, on="t", direction="backward")["price"]
    covered = (moments + horizon_ms) <= prices["t"].max()
    return ((p1 / p0 - 1.0) * 100.0).where(covered)


def pandas_stats(returns: pd.Series) -> dict[str, float | int | None]:
    scored = returns.dropna()
    if scored.empty:
        return {"count": len(returns), "pending": len(returns), "median_pct": None}
    return {
        "count": len(returns),
        "pending": int(returns.isna().sum()),
        "median_pct": float(scored.quantile(0.5)),
        "q1_pct": float(scored.quantile(0.25)),
        "q3_pct": float(scored.quantile(0.75)),
        "up_pct": float((scored > 0).mean() * 100),
        "down_pct": float((scored < 0).mean() * 100),
    }


def ours(stats: Stats) -> dict[str, float | int | None]:
    out = stats.as_dict()
    del out["scored"]
    if stats.scored == 0:
        return {k: out[k] for k in ("count", "pending", "median_pct")}
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_forward_returns_and_shares_equal_pandas(seed: int) -> None:
    ticks, alerts, from_ms, to_ms = random_market(seed)
    series = {(coin, "usd"): PriceSeries(rows) for coin, rows in ticks.items()}
    card = score(alerts, series, from_ms, to_ms)
    assert len(card.hints) == len({a.id for a in alerts})

    hints = pd.DataFrame(
        [
            {
                "id": a.id,
                "coin": a.coin,
                "kind": a.kind,
                "rule": a.rule,
                "window": a.window,
                "t": a.event_time,
                "direction": "up"
                if a.kind in ("buy_hint", "spike") or (a.kind == "volatility" and a.change_pct > 0)
                else "down",
            }
            for a in alerts
        ]
    ).drop_duplicates("id")
    pending_seen = 0
    for coin, rows in ticks.items():
        prices = pandas_prices(rows)
        mine = hints[hints["coin"] == coin].sort_values("t").reset_index(drop=True)
        moments = prices[(prices["t"] >= from_ms) & (prices["t"] <= to_ms)]
        baseline = card.baselines[(coin, "usd")]
        for name, ms in DEFAULT_HORIZONS.items():
            # every hint's forward return, exactly
            expected = pandas_forward(prices, mine["t"].to_numpy(), ms)
            by_id = {h.alert.id: h for h in card.hints if h.alert.coin == coin}
            for hint_id, value in zip(mine["id"], expected, strict=True):
                got = by_id[hint_id].returns[name]
                if math.isnan(value):
                    assert got is None, (coin, name, hint_id)
                    pending_seen += 1
                else:
                    assert got == value, (coin, name, hint_id, got, value)
            # every group's statistics
            mine = mine.assign(ret=expected.to_numpy())
            for key, members in mine.groupby(["kind", "rule", "window", "direction"]):
                kind, rule, window, direction = key
                (group,) = [
                    g
                    for g in card.groups
                    if (g.coin, g.kind, g.rule, g.window, g.direction) == (coin, kind, rule, window, direction)
                ]
                assert group.hints == len(members)
                assert ours(group.stats[name]) == pandas_stats(members["ret"]), (coin, key, name)
                assert group.baseline is baseline
            # the baseline: every tick of the range
            base = pandas_forward(prices, moments["t"].to_numpy(), ms)
            assert ours(baseline[name]) == pandas_stats(base), (coin, name)
    assert pending_seen > 0, "the late hints must be pending at 24h"


def test_pending_hints_are_counted_apart_never_right_or_wrong() -> None:
    rows = [(T0 + i * MIN, 100.0 + i) for i in range(0, 6 * 60 + 1)]  # rises for 6 hours, then no ticks
    series = {("bitcoin", "usd"): PriceSeries(rows)}
    early, late, last = T0 + HOUR, T0 + 5 * HOUR + 30 * MIN, T0 + 6 * HOUR
    alerts = [make_alert("bitcoin", "buy_hint", t, window="1m") for t in (early, late, last)]
    card = score(alerts, series, T0, T0 + 6 * HOUR)
    (group,) = card.groups
    one, four, day = (group.stats[h] for h in ("1h", "4h", "24h"))
    assert (one.count, one.pending, one.up_pct) == (3, 2, 100.0)  # 5h30+1h and 6h+1h lie past the last tick
    assert (four.count, four.pending, four.up_pct) == (3, 2, 100.0)
    assert (day.count, day.pending, day.up_pct, day.median_pct) == (3, 3, None, None)
    assert group.right_pct("24h") is None and group.edge_pp("24h") is None
    assert [h.right("1h") for h in card.hints] == [True, None, None]
    # a horizon ending exactly on the last tick is covered
    exact = score([make_alert("bitcoin", "buy_hint", T0 + 5 * HOUR, window="1m")], series, T0, T0 + 6 * HOUR)
    assert exact.hints[0].returns["1h"] == (460.0 / 400.0 - 1) * 100


def test_direction_of_each_kind() -> None:
    assert direction_of(make_alert("a", "buy_hint", T0)) == "up"
    assert direction_of(make_alert("a", "spike", T0)) == "up"
    assert direction_of(make_alert("a", "sell_hint", T0)) == "down"
    assert direction_of(make_alert("a", "drop", T0)) == "down"
    assert direction_of(make_alert("a", "volatility", T0, change_pct=2.0)) == "up"
    assert direction_of(make_alert("a", "volatility", T0, change_pct=-2.0)) == "down"


def test_a_drop_is_right_when_the_price_fell_and_flat_is_neither() -> None:
    rows = [(T0, 100.0), (T0 + HOUR, 90.0), (T0 + 2 * HOUR, 90.0), (T0 + 30 * HOUR, 95.0)]
    series = {("bitcoin", "usd"): PriceSeries(rows)}
    drop, spike = make_alert("bitcoin", "drop", T0), make_alert("bitcoin", "spike", T0 + HOUR)
    card = score([drop, spike], series, T0, T0 + 2 * HOUR)
    by_kind = {h.alert.kind: h for h in card.hints}
    assert by_kind["drop"].right("1h") is True  # 100 -> 90
    assert by_kind["spike"].right("1h") is False  # 90 -> 90: unchanged is not right
    base = card.baselines[("bitcoin", "usd")]["1h"]
    assert (base.count, base.up_pct, base.down_pct) == (3, 0.0, 1 / 3 * 100)  # 100->90 down, 90->90, 90->90


def test_quantile_is_numpy_linear_to_the_bit() -> None:
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 4, 5, 10, 101, 1000):
        values = sorted(rng.normal(0, 3, n).tolist())
        for q in (0.25, 0.5, 0.75, 0.1, 0.9):
            assert quantile(values, q) == float(np.quantile(values, q)), (n, q)
            assert quantile(values, q) == float(pd.Series(values).quantile(q)), (n, q)


def test_horizons_are_named_like_windows() -> None:
    assert list(horizons_from([86_400_000, 3_600_000, 14_400_000]).items()) == list(DEFAULT_HORIZONS.items())
    assert list(horizons_from([5_400_000, 172_800_000, 90_000])) == ["90s", "90m", "48h"]
    with pytest.raises(ValueError):
        horizons_from([])


def test_influx_rows_carry_the_scores_and_pending_rows_no_return() -> None:
    alert = make_alert("bitcoin", "drop", T0)
    scored = scorecard_line(alert, "down", "1h", 100.0, 90.0, -10.0)
    assert scored == (
        "scorecard,coin=bitcoin,direction=down,horizon=1h,kind=drop,rule=drop,vs=usd,window=15m "
        f'exit_price=90,id="{alert.id}",pending=0,price=100,ret_pct=-10,right=1 {T0}'
    )
    pending = scorecard_line(alert, "down", "24h", 100.0, None, None)
    assert pending.endswith(f'id="{alert.id}",pending=1,price=100 {T0}')
    assert "ret_pct" not in pending and "right" not in pending
    base = scorecard_baseline_line("bitcoin", "usd", "4h", T0, 100.0, 101.0, 1.0)
    assert base == (
        "scorecard_baseline,coin=bitcoin,horizon=4h,vs=usd "
        f"down=0,exit_price=101,pending=0,price=100,ret_pct=1,up=1 {T0}"
    )


def test_json_and_table_say_everything_and_warn() -> None:
    ticks, alerts, from_ms, to_ms = random_market(11)
    card = score(alerts, {(c, "usd"): PriceSeries(r) for c, r in ticks.items()}, from_ms, to_ms, rules="<defaults>")
    document = json.loads(json.dumps(card.as_dict(), allow_nan=False))
    assert document["horizons"] == DEFAULT_HORIZONS
    assert len(document["hints"]) == len(card.hints) and len(document["groups"]) == len(card.groups)
    first = document["groups"][0]["horizons"]["1h"]
    assert set(first) == {"scored", "pending", "median_pct", "q1_pct", "q3_pct", "right_pct", "baseline_pct", "edge_pp"}
    table = format_table(card)
    assert "Past hit rates are no promise" in table
    assert all(f"{g.coin}:{g.vs}" in table for g in card.groups)
