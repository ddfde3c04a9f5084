"""The replay's warm-up (issue 14, item 4): long enough for RSI and EMAs to converge, derived not guessed.

These run the real candle rules (``processor.candle_alerts``) in-process on a long random walk, once from
its first candle (the live run) and once from ``from - warmup`` (the replay), and check the
tolerances the README states. The end-to-end check through Kafka and InfluxDB is
tests/services/test_processor_replay_convergence.py.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from crypto_watcher.messages import Alert
from processor.candle_alerts import evaluate_candle
from processor.cli import build_parser
from processor.replay import (
    CALM_RATIO,
    WARMUP_RESIDUAL,
    smoothing_steps,
    tolerances,
    warmup,
    warmup_ms,
)
from processor.rules import RsiSettings, RuleConfig, RuleSet, RulesFile
from processor.state import CANDLE_STATE
from processor.windows import candle_record
from tests.support.state import DictState

T0 = 1_767_225_600_000
MIN = 60_000
RULES = RuleConfig(drop=None, spike=None, rsi=RsiSettings(oversold=40, overbought=60))
HOUR_WINDOWS = ["5m", "15m", "1h"]
"""Without the default 4h and 24h windows, which otherwise set the warm-up (see the last test)."""


def hour_rules(**overrides: object) -> RuleSet:
    return RuleSet.defaults(windows=HOUR_WINDOWS, **overrides)


def walk(n: int, seed: int, sigma: float = 0.003, trend: float = 0.0) -> list[float]:
    rng, price, out = random.Random(seed), 100.0, []
    for _ in range(n):
        price *= math.exp(trend + rng.gauss(0, sigma))
        out.append(price)
    return out


@dataclass
class Step:
    index: int
    gain: float
    loss: float
    ema_fast: float
    ema_slow: float
    alerts: list[Alert]

    @property
    def rsi(self) -> float:
        return 100.0 - 100.0 / (1.0 + self.gain / self.loss)


def run(closes: list[float], first: int, config: RuleConfig = RULES) -> Iterator[Step]:
    """The candle rules over ``closes[first:]``, as a processor that started there would run them."""
    state = DictState()
    for i in range(first, len(closes)):
        c = closes[i]
        agg = {"start": T0 + i * MIN, "end": T0 + (i + 1) * MIN, "open": c, "high": c, "low": c, "close": c, "ticks": 1}
        alerts = evaluate_candle(candle_record(agg, "bitcoin", "usd", MIN), config, 15 * MIN, state)
        s = state.get(CANDLE_STATE)
        if s.get("rsi_gain") is not None and s.get("rsi_n", 0) >= config.rsi.period:  # type: ignore[union-attr]
            yield Step(i, s["rsi_gain"], s["rsi_loss"], s["ema_fast"], s["ema_slow"], alerts)


def compare(closes: list[float], from_index: int, warm_candles: int) -> tuple[float, float, list[str], list[str]]:
    """(largest RSI difference, largest relative slow-EMA difference, live alert ids, replay alert ids)
    over the candles from ``from_index`` on, for a replay that starts ``warm_candles`` before it."""
    live = {s.index: s for s in run(closes, 0) if s.index >= from_index}
    replayed = {s.index: s for s in run(closes, from_index - warm_candles) if s.index >= from_index}
    assert live.keys() == replayed.keys()
    rsi = max(abs(live[i].rsi - replayed[i].rsi) for i in live)
    ema = max(abs(live[i].ema_slow - replayed[i].ema_slow) / live[i].ema_slow for i in live)
    ids = [[a.id for i in sorted(steps) for a in steps[i].alerts] for steps in (live, replayed)]
    return rsi, ema, ids[0], ids[1]


def default_warm_candles(rules: RuleSet) -> int:
    """Whole candles the replay's warm-up holds (the partial one at its start left out)."""
    return (warmup_ms(rules) - rules.grace) // rules.candle_interval - 1


def test_the_default_warmup_is_derived_from_rsi14_to_one_millionth() -> None:
    rules = hour_rules()
    planned = warmup(rules)
    # RSI(14): 15 closes seed Wilder's averages, then k steps with (13/14)**k <= 1e-6 < (13/14)**(k-1)
    k = smoothing_steps(1 / 14, WARMUP_RESIDUAL)
    assert (13 / 14) ** k <= WARMUP_RESIDUAL < (13 / 14) ** (k - 1)
    assert k == 187
    assert planned.ms == (15 + k + 1) * MIN + rules.grace == 204 * MIN
    assert "RSI(14)" in planned.reason
    assert warmup_ms(rules) == planned.ms  # the signature other commands call stays as it was


def test_longer_rules_lengthen_the_warmup() -> None:
    base = warmup_ms(hour_rules())
    slow_rsi = RuleSet(
        RulesFile.model_validate(
            {"defaults": {"windows": HOUR_WINDOWS}, "coins": {"dogecoin": {"rules": {"rsi": {"period": 50}}}}}
        )
    )
    planned = warmup(slow_rsi)
    assert planned.ms > base and "RSI(50)" in planned.reason and "dogecoin" in planned.reason
    long_cooldown = hour_rules(cooldown="3h")  # a move alert 3h before --from still silences it
    assert warmup_ms(long_cooldown) >= 60 * MIN + 2 * 180 * MIN
    ema_only = hour_rules(rules={"rsi": None, "volatility": None, "crossover": {"fast": 20, "slow": 100}})
    assert "EMA(100)" in warmup(ema_only).reason
    assert warmup_ms(hour_rules(), 1e-3) < base < warmup_ms(hour_rules(), 1e-9)


def test_residual_outside_zero_one_is_refused() -> None:
    for bad in (0.0, 1.0, -1e-6):
        with pytest.raises(ValueError, match="between 0 and 1"):
            warmup_ms(RuleSet.defaults(), bad)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["replay", "--from", "2026-01-01", "--to", "now", "--warmup-residual", "0"])
    args = build_parser().parse_args(["replay", "--from", "2026-01-01", "--to", "now", "--warmup-residual", "1e-9"])
    assert args.warmup_residual == 1e-9


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_replay_inside_the_data_matches_the_live_run_within_the_tolerance(seed: int) -> None:
    closes = walk(900, seed)
    tolerance = tolerances()
    rsi, ema, live, replayed = compare(closes, 600, default_warm_candles(hour_rules()))
    assert rsi <= tolerance.rsi_points
    assert ema <= tolerance.ema_relative
    assert replayed == live and len(live) > 10


def test_the_old_warmup_was_too_short() -> None:
    """61 candles (the old warm-up of the default rules) leave ~3% of the state before them."""
    rsi, _ema, _live, _replayed = compare(walk(900, 1), 600, 61)
    assert rsi > 10 * tolerances().rsi_points


def test_the_rsi_bound_holds_where_the_seed_differs_most() -> None:
    """A steady fall before the warm-up (the live run's RSI near 0) and a calmer market after it.

    The bound of ``tolerances``: |RSI difference| <= 100 * residual * (largest average one-candle
    move at the seed / the one at the candle), checked candle by candle with the actual ratio, and
    within 0.01 points while that ratio stays under CALM_RATIO."""
    falling = walk(500, 4, sigma=0.002, trend=-0.01)  # down ~1% a candle up to the warm-up's start
    closes = falling + [c * falling[-1] / 100 for c in walk(500, 5, sigma=0.001)]
    from_index = 700
    first = from_index - default_warm_candles(hour_rules())
    assert 490 <= first <= 500
    live = {s.index: s for s in run(closes, 0)}
    replayed = {s.index: s for s in run(closes, first)}
    seed_index = min(replayed)  # the replay's first RSI: its averages are seeded there
    assert live[seed_index].rsi < 10 < replayed[seed_index].rsi  # far apart where the replay starts
    seed_move = max(
        live[seed_index].gain + live[seed_index].loss, replayed[seed_index].gain + replayed[seed_index].loss
    )
    residual = (13 / 14) ** (from_index - seed_index)
    assert residual <= WARMUP_RESIDUAL
    for i in range(from_index, len(closes)):
        ratio = seed_move / (live[i].gain + live[i].loss)
        bound = 100 * (13 / 14) ** (i - seed_index) * seed_move / (live[i].gain + live[i].loss)
        assert abs(live[i].rsi - replayed[i].rsi) <= bound * (1 + 1e-9) + 1e-9
        if ratio <= CALM_RATIO:
            assert abs(live[i].rsi - replayed[i].rsi) <= tolerances().rsi_points


def test_the_default_windows_set_the_default_warmup_since_4h_and_24h() -> None:
    """The 24h window needs its day, its 30-minute bucket and a candle; the drop/spike cooldown
    twice on top (an alert up to two cooldowns earlier still counts), and the grace period."""
    rules = RuleSet.defaults()
    planned = warmup(rules)
    assert planned.ms == (24 * 60 + 30 + 1 + 2 * 15) * MIN + rules.grace
    assert planned.reason == "the longest window and 2x the drop/spike cooldown"
