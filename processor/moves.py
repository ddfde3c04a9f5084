"""Exact sliding windows over each pair's recent ticks, kept in Quix state.

Why not Quix's ``sliding_window``: in quixstreams 3.28.1 a tick arriving late (within the grace
period) gets a wrong aggregate for its own window — e.g. ``count=1`` where eleven ticks fall in
it (reproduced in tests/services/test_processor_reference.py; reported upstream). Alerts must not depend
on arrival order, so each key keeps the ticks of the longest window plus the grace period (a few
hundred at CoinGecko's cadence) and every emission is computed from them exactly. A late tick
re-emits every window end it falls into, so InfluxDB's last write per end is always the right
aggregate; a tick repeating an event time (a producer restart) replaces, never double-counts.
Candles are computed the same way, from state (processor.candles).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from processor.state import BUFFER_KEY, StateLike
from processor.windows import duration_label, window_change


def sliding_changes(
    coin: str,
    vs: str,
    event_time: int,
    price: float,
    windows_ms: Sequence[int],
    grace_ms: int,
    state: StateLike,
) -> list[dict[str, Any]]:
    """Insert one tick of ``coin``/``vs`` and return the change record of every window end it affects."""
    ticks: list[list[float]] = state.get(BUFFER_KEY, [])
    times = [int(t) for t, _p in ticks]
    # The newest buffered tick is the newest accepted one (pruning only drops old ones), so it is
    # the watermark.
    watermark = max(times[-1], event_time) if times else event_time
    if event_time < watermark - grace_ms:
        return []  # later than the grace period allows: stored as a price, not windowed
    i = bisect.bisect_left(times, event_time)
    if i < len(times) and times[i] == event_time:
        ticks[i] = [event_time, price]
    else:
        ticks.insert(i, [event_time, price])
        times.insert(i, event_time)
    longest = max(windows_ms)
    keep_from = bisect.bisect_left(times, watermark - longest - grace_ms)
    if keep_from:
        del ticks[:keep_from], times[:keep_from]
    state.set(BUFFER_KEY, ticks)

    prices = [p for _t, p in ticks]
    # this tick's own window, then (if it came late) every later window that contains it
    lo = bisect.bisect_left(times, event_time)
    out = []
    for window_ms in windows_ms:
        label = duration_label(window_ms)
        hi = bisect.bisect_right(times, event_time + window_ms)
        for j in range(lo, hi):
            end = times[j]
            first_j = bisect.bisect_left(times, end - window_ms, 0, j + 1)
            inside = prices[first_j : j + 1]
            agg = {
                "start": end - window_ms,
                "end": end,
                "first": inside[0],
                "last": inside[-1],
                "high": max(inside),
                "low": min(inside),
                "ticks": len(inside),
            }
            out.append(window_change(agg, coin, vs, label, window_ms))
    if len(out) > 1:
        out.sort(key=lambda c: (c["end"], c["window_ms"]))
    return out
