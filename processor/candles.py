"""Tumbling candles per pair, kept in the pair's own state inside the one per-tick step.

Why not Quix's ``tumbling_window``: each one scans RocksDB for windows to expire on every tick and
runs as its own dataframe branch with its own state store; the processor had two (the candle in
progress for InfluxDB, the closed candle for the candle rules), which were ~37 % of its CPU per
tick (docs/performance.md). The same semantics, computed here on one small list per pair:

- a tick belongs to the candle ``[t - t % interval, + interval)``;
- the pair's watermark is its newest accepted tick; a candle closes once the watermark has
  passed its end by ``grace`` (``end <= watermark - grace``), and a tick for a closed candle is
  too late to count (it is still stored as a price);
- open is the earliest tick by event time (the first to arrive on a tie), close the latest (the
  last to arrive on a tie), high and low the extremes, ticks the count of accepted ticks
  (a repeated event time counts again, as in Quix's ``Count``).

``tests/unit/processor/test_candles.py`` pins each rule; ``bench/verify_identical.py`` compared the
candles and the alerts on them with Quix's own window on a feed of late and repeated ticks (every
point identical); ``tests/services/test_processor_reference.py`` checks candles against pandas.
"""

from __future__ import annotations

import logging
from typing import Any

from processor.state import BUFFER_KEY, CANDLES_KEY, StateLike

log = logging.getLogger(__name__)

_START, _OPEN, _OPEN_MS, _HIGH, _LOW, _CLOSE, _CLOSE_MS, _TICKS = range(8)


def _as_window(row: list[Any], interval_ms: int) -> dict[str, Any]:
    """A candle as Quix's window result had it: start, end and the aggregates."""
    start = int(row[_START])
    return {
        "start": start,
        "end": start + interval_ms,
        "open": row[_OPEN],
        "high": row[_HIGH],
        "low": row[_LOW],
        "close": row[_CLOSE],
        "ticks": int(row[_TICKS]),
    }


def _add(rows: list[list[Any]], start: int, event_time: int, price: float) -> list[Any]:
    """Fold one tick into the candle starting at ``start`` (made if new) and return that candle."""
    for i, row in enumerate(rows):
        if row[_START] == start:
            if event_time < row[_OPEN_MS]:
                row[_OPEN], row[_OPEN_MS] = price, event_time
            if event_time >= row[_CLOSE_MS]:
                row[_CLOSE], row[_CLOSE_MS] = price, event_time
            row[_HIGH] = max(row[_HIGH], price)
            row[_LOW] = min(row[_LOW], price)
            row[_TICKS] += 1
            return row
        if row[_START] > start:
            new = [start, price, event_time, price, price, price, event_time, 1]
            rows.insert(i, new)
            return new
    new = [start, price, event_time, price, price, price, event_time, 1]
    rows.append(new)
    return new


def _upgraded(ticks: list[list[float]] | None, interval_ms: int, grace_ms: int) -> dict[str, Any]:
    """A pair's candles as a processor from before this module (Quix's windows) left them, rebuilt
    from the sliding windows' tick buffer (processor.moves), which it also kept.

    The buffer's newest tick is the watermark Quix's window had (the newest tick is always taken by
    both), so ticks go on being late or not as they were. The open candles are rebuilt from the
    buffered ticks, which is exact unless one of them repeated an event time (the buffer kept the
    last, the window counted both) or came after ``grace`` but within its still open candle (the
    buffer dropped it). With no buffer (a new pair) the candles start empty."""
    if not ticks:
        return {"watermark": 0, "open": []}
    watermark = int(ticks[-1][0])
    closed_from = watermark - grace_ms - interval_ms
    rows: list[list[Any]] = []
    for t, price in ticks:
        event_time = int(t)
        start = event_time - event_time % interval_ms
        if start > closed_from:
            _add(rows, start, event_time, price)
    return {"watermark": watermark, "open": rows}


def advance_candles(
    event_time: int, price: float, interval_ms: int, grace_ms: int, state: StateLike
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Fold one tick into its pair's candles.

    Returns the tick's candle as it now stands (None if the tick came after its candle closed) and
    every candle this tick closed, oldest first, each as ``{start, end, open, high, low, close,
    ticks}``. Call it before :func:`processor.moves.sliding_changes` with the same tick (an upgraded
    pair's candles are rebuilt from the buffer that function keeps, as it was before this tick)."""
    stored: dict[str, Any] = state.get(CANDLES_KEY) or _upgraded(state.get(BUFFER_KEY), interval_ms, grace_ms)
    rows: list[list[Any]] = stored["open"]
    watermark = max(event_time, int(stored["watermark"]))
    closed_from = watermark - grace_ms - interval_ms  # candles starting at or before this are closed
    start = event_time - event_time % interval_ms
    current = None
    if start > closed_from:
        current = _as_window(_add(rows, start, event_time, price), interval_ms)
    else:
        log.debug("tick at %d is after its candle %d closed (watermark %d)", event_time, start, watermark)
    closed = [_as_window(row, interval_ms) for row in rows if row[_START] <= closed_from]
    if closed:
        rows = [row for row in rows if row[_START] > closed_from]
    if current is not None:  # a late tick changes nothing (nor closes anything: the watermark stays)
        state.set(CANDLES_KEY, {"watermark": watermark, "open": rows})
    return current, closed
