"""Window results as records: a sliding window's change and a tumbling window's candle.

Both are plain dicts, what the stream carries, ``processor.points`` writes and the rules read.
Coin and vs come from the tick (sliding windows) or the message key (candles: Quix's tumbling
windows hand over their aggregate and key only, and carrying the names through the aggregation
would store them with every tick).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from crypto_watcher.durations import format_duration
from crypto_watcher.messages import pct_change


@functools.cache
def duration_label(ms: int) -> str:
    """``5m``, ``1h``: a window's or interval's name, formatted once per length."""
    return format_duration(ms)


def window_change(agg: Mapping[str, Any], coin: str, vs: str, window: str, window_ms: int) -> dict[str, Any]:
    """The change record for one sliding-window result (``end`` is the newest tick's event time)."""
    first, last, high, low = agg["first"], agg["last"], agg["high"], agg["low"]
    return {
        "coin": coin,
        "vs": vs,
        "window": window,
        "window_ms": window_ms,
        "start": agg["start"],
        "end": agg["end"],
        "first": first,
        "last": last,
        "high": high,
        "low": low,
        "ticks": agg["ticks"],
        "change_pct": pct_change(last, first),
        "drawdown_pct": pct_change(last, high),
        "runup_pct": pct_change(last, low),
    }


def candle_record(agg: Mapping[str, Any], coin: str, vs: str, interval_ms: int) -> dict[str, Any]:
    """The candle record for one tumbling-window result (open, high, low, close and tick count)."""
    return {
        "coin": coin,
        "vs": vs,
        "interval": duration_label(interval_ms),
        "interval_ms": interval_ms,
        "start": agg["start"],
        "end": agg["end"],
        "open": agg["open"],
        "high": agg["high"],
        "low": agg["low"],
        "close": agg["close"],
        "ticks": agg["ticks"],
    }
