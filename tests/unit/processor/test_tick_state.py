"""processor.state.TickState: one read and one write of a pair's state per tick, the same results as
the per-key layout it replaced, upgrades from that layout, and no half-written tick."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from processor.candle_alerts import evaluate_candle
from processor.candles import advance_candles
from processor.move_alerts import MoveRule, evaluate_changes
from processor.moves import sliding_changes
from processor.rules import CrossoverSettings, RsiSettings, RuleConfig, VolatilitySettings
from processor.state import BUFFER_KEY, CANDLES_KEY, MOVE_STATE, TICK_KEYS, TICK_STATE, TickState
from processor.windows import candle_record

S = 1000
MIN = 60 * S
T0 = 1_780_000_000_000 - 1_780_000_000_000 % (60 * MIN)  # an hour's start, in 2026
WINDOWS = [5 * MIN, 15 * MIN]
GRACE = 30 * S
INTERVAL = MIN
RULES = [
    MoveRule("drop", "drop", 2.0, cooldown_ms=5 * MIN),
    MoveRule("spike", "spike", 2.0, cooldown_ms=5 * MIN),
]
# every candle rule on, with short periods, so candles close into their state within the feed
CONFIG = RuleConfig(
    volatility=VolatilitySettings(), crossover=CrossoverSettings(fast=3, slow=8), rsi=RsiSettings(period=5)
)


class QuixLikeState:
    """Per-key state that, like Quix's, stores values serialised (a read gives a fresh copy) and
    counts every access: what TickState exists to cut down."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.gets = self.sets = self.deletes = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.gets += 1
        return json.loads(self.data[key]) if key in self.data else default

    def set(self, key: str, value: Any) -> None:
        self.sets += 1
        self.data[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.deletes += 1
        self.data.pop(key, None)

    def loaded(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.data.items()}


def step(state: Any, event_time: int, price: float) -> tuple[Any, ...]:
    """What processor.app's per-tick step does to a pair's state, in the same order."""
    current, closed = advance_candles(event_time, price, INTERVAL, GRACE, state)
    changes = sliding_changes("btc", "usd", event_time, price, WINDOWS, GRACE, state)
    candle_alerts = []
    for window in closed:
        candle_alerts += evaluate_candle(candle_record(window, "btc", "usd", INTERVAL), CONFIG, 0, state)
    alerts = evaluate_changes(changes, RULES, state) if changes else []
    return current, closed, changes, [a.id for a in alerts + candle_alerts]


def packed_step(state: QuixLikeState, event_time: int, price: float) -> tuple[Any, ...]:
    tick_state = TickState(state)
    out = step(tick_state, event_time, price)
    tick_state.flush()
    return out


def feed(seed: int, n: int = 600) -> list[tuple[int, float]]:
    """A random walk with sharp moves, late ticks (within and beyond the grace) and repeats."""
    rng = random.Random(seed)
    t, price, out = T0, 100.0, []
    for _ in range(n):
        t += rng.choice([5, 10, 20]) * S
        price *= 1 + rng.gauss(0, 0.004) + (rng.choice([-0.05, 0.05]) if rng.random() < 0.02 else 0)
        r = rng.random()
        if r < 0.08:
            out.append((t - rng.randint(1, 60) * S, round(price * 1.01, 6)))  # late
        elif r < 0.12 and out:
            out.append((out[-1][0], round(price, 6)))  # an event time repeated
        out.append((t, round(price, 6)))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_packed_state_gives_what_the_per_key_state_gave(seed: int) -> None:
    per_key, packed = QuixLikeState(), QuixLikeState()
    closed = alerts = 0
    for t, p in feed(seed):
        out = packed_step(packed, t, p)
        assert out == step(per_key, t, p), f"tick at {t}"
        closed, alerts = closed + len(out[1]), alerts + len(out[3])
    assert closed > 50 and alerts > 2  # the feed closes candles and fires rules: the state is used
    want = per_key.loaded()
    got = packed.loaded()
    for key in TICK_KEYS:  # the same values, only stored together
        assert got[TICK_STATE].get(key) == want.get(key)
    assert {k: v for k, v in got.items() if k != TICK_STATE} == {k: v for k, v in want.items() if k not in TICK_KEYS}


def test_a_tick_reads_and_writes_the_state_once() -> None:
    state = QuixLikeState()
    packed_step(state, T0, 100.0)  # a new pair: the former keys are looked for once
    state.gets = state.sets = 0
    for i in range(1, 50):  # within one candle: no candle closes, so no candle rule state
        state.gets = state.sets = 0
        packed_step(state, T0 + i * S, 100.0 + i / 10)
        assert (state.gets, state.sets) == (1, 1)
    per_key = QuixLikeState()
    for i in range(50):
        step(per_key, T0 + i * S, 100.0 + i / 10)
    assert per_key.gets >= 3 * 49 and per_key.sets >= 2 * 49  # what it replaced


def test_a_late_tick_writes_nothing() -> None:
    state = QuixLikeState()
    packed_step(state, T0 + 10 * MIN, 100.0)
    before, sets = dict(state.data), state.sets
    assert packed_step(state, T0 + 5 * MIN, 90.0) == (None, [], [], [])  # beyond the grace
    assert state.sets == sets and state.data == before


def test_a_pair_left_by_the_per_key_processor_is_folded_in_and_goes_on_the_same() -> None:
    ticks = feed(7, 300)
    old, upgraded = QuixLikeState(), QuixLikeState()
    for t, p in ticks[:150]:  # the processor before TickState
        step(old, t, p)
        step(upgraded, t, p)
    assert set(TICK_KEYS) <= set(upgraded.data)
    for t, p in ticks[150:]:
        assert packed_step(upgraded, t, p) == step(old, t, p)
    left = set(upgraded.data)
    assert TICK_STATE in left and not left & set(TICK_KEYS), "the former keys are deleted once folded in"


def test_a_tick_that_raises_half_way_leaves_the_state_as_it_was() -> None:
    state = QuixLikeState()
    for i in range(0, 200, 10):
        packed_step(state, T0 + i * S, 100.0)
    before = dict(state.data)
    tick_state = TickState(state)
    advance_candles(T0 + 300 * S, 120.0, INTERVAL, GRACE, tick_state)  # closes candles, moves the watermark
    sliding_changes("btc", "usd", T0 + 300 * S, 120.0, WINDOWS, GRACE, tick_state)
    tick_state.set("signals:candles", {"closes": [1.0]})
    # ... and the step raises here, before flush: nothing of it is in the store
    assert state.data == before
    assert tick_state.get(CANDLES_KEY)["watermark"] == T0 + 300 * S  # the tick itself saw its writes
    assert tick_state.get("signals:candles") == {"closes": [1.0]}


def test_keys_outside_the_tick_group_pass_through_and_deletes_are_kept_until_flush() -> None:
    state = QuixLikeState()
    state.set("signals:candles", {"rsi_n": 3})
    tick_state = TickState(state)
    assert tick_state.get("signals:candles") == {"rsi_n": 3}
    tick_state.delete("signals:candles")
    assert tick_state.get("signals:candles", "gone") == "gone"
    assert "signals:candles" in state.data
    tick_state.set(MOVE_STATE, {"fired:drop": 1})
    tick_state.delete(BUFFER_KEY)  # absent: nothing to write for it
    tick_state.flush()
    assert "signals:candles" not in state.data
    assert state.loaded()[TICK_STATE] == {MOVE_STATE: {"fired:drop": 1}}
