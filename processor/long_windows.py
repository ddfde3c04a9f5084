"""Windows longer than an hour (4h and 24h by default), computed from the pair's closed candles.

A fall of 10 % over a day that never falls 5 % within an hour is invisible to the hour-long
windows. The exact sliding windows (processor.moves) keep every tick of their longest window,
which for a day would be ~3,000 ticks per pair read and written on every tick; a long window is
instead kept as at most ~49 buckets of closed candles per pair, updated once per candle:

- a window of length ``W`` has buckets of ``b = W / 48`` rounded down to whole candles (5 min for
  4h, 30 min for 24h; one candle for windows under 48 candles);
- it is emitted when a candle closes, with ``end`` the candle's end, and covers every tick of the
  candles that start at or after ``floor_b(end - W)``: between ``W`` and ``W + b`` of ticks
  (24h to 24h30m), so its first price, high, low and tick count are exact over that span (the
  reference tests compute the same span with pandas);
- candles are final when they close (a later tick is too late for them), so each emission is
  final too: the same whatever order the ticks arrived in.

Move rules judge long windows with re-arm flags of their own (processor.move_alerts): a crash keeps
a 24h window engaged all day, and sharing the hour windows' flags would silence them for that long.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from processor.state import StateLike
from processor.windows import window_change

TICK_WINDOW_MAX_MS = 3_600_000
"""Windows up to this long are exact over ticks on every tick (processor.moves); longer ones are here."""
BUCKETS = 48
"""Buckets per long window: the window spans at most 1/48 (about 2 %) more than its length."""
LONG_KEY = "windows:long"
"""State key of a pair's long-window buckets: ``{label: [[start, open, high, low, close, ticks], ...]}``."""


def is_long(window_ms: int) -> bool:
    return window_ms > TICK_WINDOW_MAX_MS


def bucket_ms(window_ms: int, interval_ms: int) -> int:
    """A long window's bucket: ``window / 48`` in whole candles, at least one candle."""
    return interval_ms * max(1, window_ms // (BUCKETS * interval_ms))


def history_ms(window_ms: int, interval_ms: int) -> int:
    """How much history a window needs before its end: its length; for a long one also a bucket,
    and a candle (a replay's first candle may start before its first tick)."""
    if not is_long(window_ms):
        return window_ms
    return window_ms + bucket_ms(window_ms, interval_ms) + interval_ms


def _fold(rows: list[list[Any]], start: int, candle: Mapping[str, Any]) -> None:
    """Add a closed candle to the bucket starting at ``start`` (candles come oldest first)."""
    if rows and rows[-1][0] == start:
        row = rows[-1]
        row[2] = max(row[2], candle["high"])
        row[3] = min(row[3], candle["low"])
        row[4] = candle["close"]
        row[5] += candle["ticks"]
    else:
        rows.append([start, candle["open"], candle["high"], candle["low"], candle["close"], candle["ticks"]])


def long_changes(
    candle: Mapping[str, Any], windows: Sequence[tuple[str, int]], interval_ms: int, state: StateLike
) -> list[dict[str, Any]]:
    """Fold one closed candle (a ``processor.windows.candle_record``) into the pair's long windows,
    given as (name as configured, ms), and return each window's change record ending at the
    candle's end."""
    stored: dict[str, list[list[Any]]] = state.get(LONG_KEY) or {}
    kept: dict[str, list[list[Any]]] = {}
    out = []
    end = int(candle["end"])
    for label, window_ms in windows:
        b = bucket_ms(window_ms, interval_ms)
        rows = stored.get(label, [])
        _fold(rows, int(candle["start"]) - int(candle["start"]) % b, candle)
        keep_from = min((end - window_ms) - (end - window_ms) % b, rows[-1][0])  # a window shorter than a candle
        rows = [row for row in rows if row[0] >= keep_from]
        kept[label] = rows
        agg = {
            "start": keep_from,
            "end": end,
            "first": rows[0][1],
            "last": rows[-1][4],
            "high": max(row[2] for row in rows),
            "low": min(row[3] for row in rows),
            "ticks": sum(row[5] for row in rows),
        }
        out.append(window_change(agg, candle["coin"], candle["vs"], label, window_ms))
    state.set(LONG_KEY, kept)  # windows no longer configured are forgotten
    return out
