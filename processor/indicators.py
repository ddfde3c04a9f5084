"""Indicator maths over candle closes: returns and their z-score, moving averages, Wilder's RSI.

Pure functions of numbers. Each keeps the exact order of floating-point operations the alerts were
first computed with: a replay and the pandas reference (tests/services/test_processor_reference.py) must
see the very same floats, and an RSI a last bit away from its threshold would decide differently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def log_return(close: float, prev_close: float) -> float:
    """One candle's return, ``ln(close / previous close)``: returns of consecutive candles add up."""
    return math.log(close / prev_close)


def zscore(value: float, samples: Sequence[float]) -> float:
    """How many sample standard deviations ``value`` lies from the samples' mean (0 when they do not vary).

    ``samples`` needs two or more values (the sample deviation divides by ``n - 1``)."""
    mean = sum(samples) / len(samples)
    std = math.sqrt(sum((r - mean) ** 2 for r in samples) / (len(samples) - 1))
    return (value - mean) / std if std > 0 else 0.0


def sma(closes: Sequence[float], n: int) -> float:
    """The simple average of the last ``n`` closes."""
    return sum(closes[-n:]) / n


def ema_step(previous: float | None, close: float, n: int) -> float:
    """An ``n``-candle exponential average after one more close; the first close seeds it."""
    alpha = 2 / (n + 1)
    return close if previous is None else previous + alpha * (close - previous)


def wilder_step(average: float, value: float, period: int) -> float:
    """Wilder's smoothing: the average keeps ``(period - 1) / period`` of itself and takes the new value's share."""
    return (average * (period - 1) + value) / period


def rsi_of(avg_gain: float, avg_loss: float) -> float:
    """RSI from Wilder's average gain and loss; 50 when the price did not move at all (neutral,
    not "overbought"), 100 when it only rose."""
    if avg_gain == 0 and avg_loss == 0:
        return 50.0
    return 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
