"""Long windows (4h, 24h) from closed candles: exact over their bucket-aligned span, bounded state,
and move rules that judge them apart from the hour windows."""

from __future__ import annotations

import random
from typing import Any

from crypto_watcher.messages import pct_change
from processor.long_windows import LONG_KEY, bucket_ms, history_ms, is_long, long_changes
from processor.move_alerts import evaluate_changes, move_rules
from processor.rules import RuleSet
from processor.windows import candle_record, window_change
from tests.support.state import DictState

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_767_225_600_000  # a midnight, so buckets line up with the clock


def candles(n: int, seed: int, gap_every: int = 37) -> list[dict[str, Any]]:
    """Closed one-minute candles, oldest first, with a missing minute now and then (a quiet feed)."""
    rng = random.Random(seed)
    out, price = [], 100.0
    for i in range(n):
        if i % gap_every == gap_every - 1:
            continue
        o = price
        price *= 1 + rng.gauss(0, 0.003)
        hi, lo = max(o, price) * (1 + rng.random() / 500), min(o, price) * (1 - rng.random() / 500)
        agg = {"start": T0 + i * MIN, "end": T0 + (i + 1) * MIN, "open": o, "high": hi, "low": lo, "close": price}
        out.append(candle_record({**agg, "ticks": rng.randrange(1, 5)}, "bitcoin", "usd", MIN))
    return out


def expected(history: list[dict[str, Any]], window_ms: int) -> dict[str, Any]:
    """The window ending at the newest candle, straight from its definition."""
    end = history[-1]["end"]
    b = bucket_ms(window_ms, MIN)
    start = (end - window_ms) - (end - window_ms) % b
    inside = [c for c in history if c["start"] >= start]
    return {
        "start": start,
        "end": end,
        "first": inside[0]["open"],
        "last": inside[-1]["close"],
        "high": max(c["high"] for c in inside),
        "low": min(c["low"] for c in inside),
        "ticks": sum(c["ticks"] for c in inside),
    }


def test_buckets_are_a_48th_of_the_window_in_whole_candles() -> None:
    assert bucket_ms(4 * HOUR, MIN) == 5 * MIN and bucket_ms(24 * HOUR, MIN) == 30 * MIN
    assert bucket_ms(2 * HOUR, MIN) == 2 * MIN and bucket_ms(90 * MIN, MIN) == MIN
    assert not is_long(HOUR) and is_long(HOUR + MIN)
    assert history_ms(HOUR, MIN) == HOUR and history_ms(24 * HOUR, MIN) == 24 * HOUR + 31 * MIN


def test_long_windows_equal_their_definition_over_thirty_hours() -> None:
    state = DictState()
    history: list[dict[str, Any]] = []
    windows = [("4h", 4 * HOUR), ("24h", 24 * HOUR)]
    for candle in candles(30 * 60, seed=1):
        history.append(candle)
        got = long_changes(candle, windows, MIN, state)
        assert [c["window"] for c in got] == ["4h", "24h"]
        for change, (_name, window_ms) in zip(got, windows, strict=True):
            want = expected(history, window_ms)
            assert {k: change[k] for k in want} == want
            assert change["change_pct"] == pct_change(want["last"], want["first"])
        # bounded: at most one bucket more than the window holds
        assert all(len(rows) <= 49 for rows in state.get(LONG_KEY).values())


def day_fall(state: DictState, rules: list[Any], hours: int = 26) -> list[Any]:
    """10 % down over a day, never 5 % within an hour, candle by candle through the long windows."""
    alerts, price, step = [], 100.0, 0.9 ** (1 / (24 * 60))
    for i in range(hours * 60):
        agg = {"start": T0 + i * MIN, "end": T0 + (i + 1) * MIN, "open": price, "high": price, "low": price * step}
        price *= step
        candle = candle_record({**agg, "close": price, "ticks": 2}, "bitcoin", "usd", MIN)
        alerts += evaluate_changes(
            long_changes(candle, [("4h", 4 * HOUR), ("24h", 24 * HOUR)], MIN, state), rules, state
        )
    return alerts


def hour_change(end: int, drawdown_pct: float) -> dict[str, Any]:
    """A 1h window whose newest price is ``drawdown_pct`` below its high."""
    last = 100.0 * (1 + drawdown_pct / 100)
    agg = {"start": end - HOUR, "end": end, "first": 100.0, "last": last, "high": 100.0, "low": last, "ticks": 60}
    return window_change(agg, "bitcoin", "usd", "1h", HOUR)


def test_a_day_long_fall_alerts_once_on_24h_and_the_hour_windows_stay_armed() -> None:
    rules = move_rules(RuleSet.defaults(), "bitcoin")
    state = DictState()
    alerts = day_fall(state, rules)
    assert [(a.kind, a.window) for a in alerts] == [("drop", "24h")]
    assert alerts[0].change_pct <= -5.0
    fired = alerts[0].event_time
    # one move, one alert: the cooldown is shared ...
    assert evaluate_changes([hour_change(fired + 5 * MIN, -6.0)], rules, state) == []
    # ... but a crash after it is a new move: the hour windows re-arm on their next tick, where
    # they see the slow fall as the small move it is within an hour
    other = DictState()
    assert day_fall(other, rules) == alerts
    assert evaluate_changes([hour_change(fired + MIN, -0.4)], rules, other) == []
    later = evaluate_changes([hour_change(fired + 20 * MIN, -6.0)], rules, other)
    assert [(a.kind, a.window) for a in later] == [("drop", "1h")]


def test_a_crash_the_hour_windows_reported_is_not_reported_again_by_the_4h_window() -> None:
    rules = move_rules(RuleSet.defaults(), "bitcoin")
    state = DictState()
    end = T0 + 10 * HOUR
    assert len(evaluate_changes([hour_change(end, -8.0)], rules, state)) == 1
    # the 4h window keeps seeing the crash for hours, long after the cooldown
    for minutes in (1, 20, 90, 200):
        agg = {"start": end - 4 * HOUR, "end": end + minutes * MIN, "first": 100.0, "last": 92.0}
        change = window_change({**agg, "high": 100.0, "low": 92.0, "ticks": 240}, "bitcoin", "usd", "4h", 4 * HOUR)
        assert evaluate_changes([change], rules, state) == []


def test_windows_no_longer_configured_are_forgotten() -> None:
    state = DictState()
    for candle in candles(10, seed=2):
        long_changes(candle, [("4h", 4 * HOUR), ("24h", 24 * HOUR)], MIN, state)
    long_changes(candles(11, seed=2)[-1], [("4h", 4 * HOUR)], MIN, state)
    assert list(state.get(LONG_KEY)) == ["4h"]
