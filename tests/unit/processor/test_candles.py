"""Candles from the pair's state: Quix's tumbling-window rules (late ticks, ties, closing on grace).

``bench/verify_identical.py`` compares these candles and the alerts on them with the ones Quix's own
``tumbling_window`` gave, end to end on real Kafka and InfluxDB; these tests pin each rule.
"""

from __future__ import annotations

import random
from typing import Any

from processor.candles import CANDLES_KEY, advance_candles
from tests.support.state import DictState

S = 1000
MINUTE = 60 * S
GRACE = 60 * S


def feed(state: DictState, t: int, price: float) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    return advance_candles(t, price, MINUTE, GRACE, state)


def ohlc(candle: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if candle is None:
        return None
    return (candle["start"], candle["open"], candle["high"], candle["low"], candle["close"], candle["ticks"])


def test_ticks_of_one_minute_make_one_candle() -> None:
    state = DictState()
    assert ohlc(feed(state, 10 * S, 5.0)[0]) == (0, 5.0, 5.0, 5.0, 5.0, 1)
    assert ohlc(feed(state, 30 * S, 7.0)[0]) == (0, 5.0, 7.0, 5.0, 7.0, 2)
    current, closed = feed(state, 50 * S, 4.0)
    assert ohlc(current) == (0, 5.0, 7.0, 4.0, 4.0, 3)
    assert current is not None and current["end"] == MINUTE
    assert closed == []


def test_a_candle_closes_once_the_watermark_passes_its_end_by_grace() -> None:
    state = DictState()
    feed(state, 10 * S, 5.0)
    assert feed(state, 119 * S, 6.0)[1] == []  # end 60 s + grace 60 s = 120 s not reached
    current, closed = feed(state, 120 * S, 7.0)
    assert [ohlc(c) for c in closed] == [(0, 5.0, 5.0, 5.0, 5.0, 1)]
    assert ohlc(current) == (120 * S, 7.0, 7.0, 7.0, 7.0, 1)
    assert [row[0] for row in state.get(CANDLES_KEY)["open"]] == [60 * S, 120 * S]


def test_a_late_tick_within_grace_updates_its_candle_by_event_time() -> None:
    state = DictState()
    feed(state, 30 * S, 5.0)
    feed(state, 70 * S, 6.0)  # the next candle is open; the first is within grace
    current, closed = feed(state, 10 * S, 9.0)  # late: earlier than the open, so it becomes the open
    assert ohlc(current) == (0, 9.0, 9.0, 5.0, 5.0, 2)
    assert closed == []


def test_a_tick_for_a_closed_candle_is_dropped_and_changes_nothing() -> None:
    state = DictState()
    feed(state, 10 * S, 5.0)
    feed(state, 130 * S, 6.0)  # closes [0, 60)
    before = repr(state.data)
    assert feed(state, 20 * S, 1.0) == (None, [])
    assert repr(state.data) == before


def test_ties_keep_the_first_open_and_the_last_close() -> None:
    state = DictState()
    feed(state, 10 * S, 1.0)
    current, _ = feed(state, 10 * S, 2.0)  # a repeated event time counts again, as Quix's Count does
    assert ohlc(current) == (0, 1.0, 2.0, 1.0, 2.0, 2)


def test_one_tick_can_close_several_candles_oldest_first() -> None:
    state = DictState()
    feed(state, 10 * S, 1.0)
    feed(state, 70 * S, 2.0)
    _, closed = feed(state, 600 * S, 3.0)
    assert [c["start"] for c in closed] == [0, 60 * S]
    assert state.get(CANDLES_KEY)["open"][0][0] == 600 * S


def test_in_order_ticks_give_the_ohlc_of_each_minute() -> None:
    rng = random.Random(3)
    state = DictState()
    ticks, t = [], 0
    for _ in range(2000):
        t += rng.randrange(1, 40) * S
        ticks.append((t, round(rng.uniform(90, 110), 2)))
    closed: list[dict[str, Any]] = []
    for t, p in ticks:
        closed += feed(state, t, p)[1]
    expected: dict[int, list[float]] = {}
    for t, p in ticks:
        expected.setdefault(t - t % MINUTE, []).append(p)
    assert closed, "the feed should close candles"
    for candle in closed:
        prices = expected[candle["start"]]
        assert ohlc(candle) == (candle["start"], prices[0], max(prices), min(prices), prices[-1], len(prices))
    # every minute with a tick closed, except those the last tick keeps open (within grace)
    still_open = {row[0] for row in state.get(CANDLES_KEY)["open"]}
    assert {c["start"] for c in closed} | still_open == set(expected)


def test_an_upgraded_pair_rebuilds_its_open_candles_and_watermark_from_the_tick_buffer() -> None:
    """A processor from before processor.candles kept candles in Quix's windows, which this one
    does not read; it rebuilds them from the sliding windows' buffer the old one also kept."""
    from processor.moves import sliding_changes

    ticks = [(10, 1.0), (50, 3.0), (70, 2.0), (100, 4.0), (130, 5.0)]
    old, new = DictState(), DictState()
    for t, p in ticks:
        sliding_changes("btc", "usd", t * S, p, [300 * S], GRACE, old)  # what the old processor kept
        feed(new, t * S, p)
        sliding_changes("btc", "usd", t * S, p, [300 * S], GRACE, new)
    # the next tick, and one too late for its closed candle, give the same in both
    assert advance_candles(140 * S, 6.0, MINUTE, GRACE, old) == advance_candles(140 * S, 6.0, MINUTE, GRACE, new)
    assert advance_candles(30 * S, 9.0, MINUTE, GRACE, old) == (None, [])
