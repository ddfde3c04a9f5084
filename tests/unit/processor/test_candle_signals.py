"""Candle signals: each fires on a path that should trigger it and stays silent on one that should not."""

from __future__ import annotations

import math
import random

from crypto_watcher.messages import Alert
from processor.candle_alerts import evaluate_candle
from processor.rules import CrossoverSettings, RsiSettings, RuleConfig, VolatilitySettings
from processor.windows import candle_record
from tests.support.state import DictState

T0 = 1_767_225_600_000
MIN = 60_000
ONLY_VOL = RuleConfig(drop=None, spike=None, volatility=VolatilitySettings(), crossover=None, rsi=None)
ONLY_CROSS = RuleConfig(drop=None, spike=None, volatility=None, crossover=CrossoverSettings(fast=3, slow=8), rsi=None)
ONLY_RSI = RuleConfig(drop=None, spike=None, volatility=None, crossover=None, rsi=RsiSettings(period=14))


def run(closes: list[float], config: RuleConfig) -> list[Alert]:
    state, alerts = DictState(), []
    for i, close in enumerate(closes):
        agg = {
            "start": T0 + i * MIN,
            "end": T0 + (i + 1) * MIN,
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "ticks": 3,
        }
        alerts += evaluate_candle(candle_record(agg, "bitcoin", "usd", MIN), config, 15 * MIN, state)
    return alerts


def noise(n: int, seed: int = 3, sigma: float = 0.001) -> list[float]:
    rng, price, out = random.Random(seed), 100.0, []
    for _ in range(n):
        price *= math.exp(rng.gauss(0, sigma))
        out.append(price)
    return out


def test_volatility_fires_on_a_candle_far_outside_recent_returns() -> None:
    closes = noise(60)
    closes.append(closes[-1] * 0.97)  # a -3% candle after returns of ~0.1%
    alerts = run(closes, ONLY_VOL)
    assert [(a.kind, a.rule) for a in alerts] == [("volatility", "volatility")]
    assert alerts[0].indicator is not None and alerts[0].indicator < -4
    assert alerts[0].event_time == T0 + 61 * MIN and alerts[0].change_pct == round(-3.0, 9)
    assert "plunged 3.00% in one 1m candle" in alerts[0].message


def test_volatility_silent_on_ordinary_noise_and_before_enough_samples() -> None:
    assert run(noise(200), ONLY_VOL) == []
    closes = noise(10)
    closes.append(closes[-1] * 0.9)  # a big move, but only 10 returns of history (< min_samples)
    assert run(closes, ONLY_VOL) == []


def test_crossover_fires_buy_then_sell_hint() -> None:
    closes = [100 - i * 0.5 for i in range(15)] + [93 + i * 1.0 for i in range(15)] + [108 - i * 1.0 for i in range(15)]
    alerts = run(closes, ONLY_CROSS)
    assert [a.kind for a in alerts] == ["buy_hint", "sell_hint"]
    assert all(a.rule == "crossover" and a.window == "ema3/8@1m" and a.severity == "info" for a in alerts)
    assert alerts[0].indicator is not None and alerts[0].indicator > 0 > (alerts[1].indicator or 0)


def test_crossover_silent_on_a_steady_trend() -> None:
    assert run([100 + i * 0.3 for i in range(60)], ONLY_CROSS) == []


def test_rsi_oversold_then_overbought_with_rearm_at_midline() -> None:
    falling = [100 - i for i in range(20)]
    rising = [80 + i * 1.5 for i in range(25)]
    alerts = run(falling + rising, ONLY_RSI)
    assert [(a.kind, a.rule) for a in alerts] == [("buy_hint", "rsi"), ("sell_hint", "rsi")]
    assert alerts[0].indicator is not None and alerts[0].indicator < 30
    assert "oversold" in alerts[0].message and "overbought" in alerts[1].message


def test_rsi_does_not_repeat_while_staying_oversold_and_is_neutral_when_flat() -> None:
    assert len(run([100 - i * 0.5 for i in range(80)], ONLY_RSI)) == 1
    assert run([100.0] * 60, ONLY_RSI) == []


def test_crossover_ignores_noise_around_flat_prices() -> None:
    default_cross = RuleConfig(drop=None, spike=None, volatility=None, crossover=CrossoverSettings(), rsi=None)
    assert run(noise(500, seed=9, sigma=0.001), default_cross) == []
    loose = RuleConfig(drop=None, spike=None, volatility=None, crossover=CrossoverSettings(min_gap_pct=0), rsi=None)
    assert len(run(noise(500, seed=9, sigma=0.001), loose)) > 5  # without hysteresis the same noise flaps
