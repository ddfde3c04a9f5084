"""InfluxDB line protocol for everything the processor stores: the storage schema in one place.

Measurements (database/bucket ``crypto``; docs/contracts.md, "InfluxDB", lists each):
  price   tags coin, vs, source   fields price, market_cap, volume_24h, change_24h_pct
  change  tags coin, vs, window   fields change_pct, drawdown_pct, runup_pct, first, last, high, low, ticks
  candle  tags coin, vs, interval  fields open, high, low, close, ticks  (time: candle start)
  alert   tags coin, vs, kind, rule, window, severity
          fields id, message (strings), change_pct, price, reference_price, threshold_pct, indicator
Written by ``crypto-processor scorecard`` (into its own database/bucket, processor.scorecard):
  scorecard           tags coin, vs, kind, rule, window, direction, horizon
                      fields id (string), price, exit_price, ret_pct, right, pending   (time: the hint's)
  scorecard_baseline  tags coin, vs, horizon
                      fields price, exit_price, ret_pct, up, down, pending             (time: the tick's)

A point's identity is measurement + tag set + timestamp, so re-writing the same tick, window or
alert (a replay, or a batch retried after a crash) overwrites the same point instead of adding one.
Every number is written as a float: InfluxDB fixes a field's type on first write, and an integer
written once would make every later float write fail.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from crypto_watcher.messages import Alert

PRICE = "price"
CHANGE = "change"
CANDLE = "candle"
ALERT = "alert"
SCORECARD = "scorecard"
SCORECARD_BASELINE = "scorecard_baseline"

# The escaping rules of influxdb-client's Point (tests/unit/processor/test_points.py checks byte equality with it
# for arbitrary input); formatting directly is ~5x faster than building Point objects per record.
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


def _number(value: float) -> str | None:
    if not math.isfinite(value):
        return None
    text = str(float(value))
    return text[:-2] if text.endswith(".0") else text


def _line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any], time_ms: int) -> str:
    return _format(
        measurement.translate(_ESCAPE_MEASUREMENT), _tag_prefixes(tags), _field_prefixes(fields), tags, fields, time_ms
    )


@functools.lru_cache(maxsize=1 << 16)
def _tag_value(value: str) -> str:
    """Cached: tag values are a few thousand coin names, a few currencies, sources and windows."""
    escaped = value.translate(_ESCAPE_KEY)
    return escaped + " " if escaped.endswith("\\") else escaped


def _tag_prefixes(keys: Iterable[str]) -> list[tuple[str, str]]:
    """Each tag key, sorted, with its escaped ``,key=`` text."""
    return [(key, f",{key.translate(_ESCAPE_KEY)}=") for key in sorted(keys)]


def _field_prefixes(keys: Iterable[str]) -> list[tuple[str, str]]:
    """Each field key, sorted, with its escaped ``key=`` text."""
    return [(key, f"{key.translate(_ESCAPE_KEY)}=") for key in sorted(keys)]


def _format(
    head: str,
    tags: list[tuple[str, str]],
    fields: list[tuple[str, str]],
    tag_values: Mapping[str, Any],
    field_values: Mapping[str, Any],
    time_ms: int,
    number: Callable[[float], str | None] = _number,
    tag_value: Callable[[str], str] = _tag_value,
) -> str:
    """One point from its escaped measurement, prefixes and values. Empty tags and missing fields
    are left out; a point with no field is ``""`` (as Point says nothing rather than something invalid).

    ``number`` and ``tag_value`` are bound as defaults, local names, for the per-tick callers."""
    text = head
    for key, prefix in tags:
        value = tag_values[key]
        if value is not None and value != "":
            text += prefix + tag_value(value)
    parts = []
    for key, prefix in fields:
        value = field_values[key]
        if value is None:
            continue
        if value.__class__ is float:  # nearly every field: _number inlined, ~10 % of a tick's CPU
            if value - value == 0.0:  # finite (inf - inf and nan - nan are nan)
                text_value = repr(value)
                parts.append(prefix + (text_value[:-2] if text_value.endswith(".0") else text_value))
            continue
        if isinstance(value, str):
            parts.append(f'{prefix}"{value.translate(_ESCAPE_STRING)}"')
            continue
        formatted = number(value)
        if formatted is not None:
            parts.append(prefix + formatted)
    if not parts:
        return ""
    return f"{text} {','.join(parts)} {int(time_ms)}"


def _record_formatter(
    measurement: str, tag_keys: tuple[str, ...], field_keys: tuple[str, ...], time_key: str
) -> Callable[[Mapping[str, Any]], str]:
    """``_line`` specialised to one schema: the same bytes, without sorting and escaping the
    (constant) measurement, tag keys and field keys of every record again.

    Tags and fields are read from one record (a tick, change or candle dict) by their names.
    """
    head = measurement.translate(_ESCAPE_MEASUREMENT)
    tags, fields = _tag_prefixes(tag_keys), _field_prefixes(field_keys)

    def line(record: Mapping[str, Any]) -> str:
        return _format(head, tags, fields, record, record, record[time_key])

    return line


price_line = _record_formatter(
    PRICE, ("coin", "vs", "source"), ("price", "market_cap", "volume_24h", "change_24h_pct"), "event_time"
)
"""The ``price`` point of a tick given as a dict of its fields (what the processor's stream carries)."""


change_line = _record_formatter(
    CHANGE,
    ("coin", "vs", "window"),
    ("change_pct", "drawdown_pct", "runup_pct", "first", "last", "high", "low", "ticks"),
    "end",
)
"""A window result from :func:`processor.windows.window_change`."""

candle_line = _record_formatter(CANDLE, ("coin", "vs", "interval"), ("open", "high", "low", "close", "ticks"), "start")
"""A candle from :func:`processor.windows.candle_record`; rewritten in place as it fills up."""


def alert_line(alert: Alert) -> str:
    return _line(
        ALERT,
        {
            "coin": alert.coin,
            "vs": alert.vs,
            "kind": alert.kind,
            "rule": alert.rule,
            "window": alert.window,
            "severity": alert.severity,
        },
        {
            "id": alert.id,
            "message": alert.message,
            "change_pct": alert.change_pct,
            "price": alert.price,
            "reference_price": alert.reference_price,
            "threshold_pct": alert.threshold_pct,
            "indicator": alert.indicator,
        },
        alert.event_time,
    )


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


def scorecard_line(
    alert: Alert, direction: str, horizon: str, price: float, exit_price: float | None, ret_pct: float | None
) -> str:
    """One hint at one horizon. A pending hint (``ret_pct`` None) has ``pending`` 1 and no return or
    ``right``, so ``mean("right")`` is the share of scored hints that went the hinted way and
    ``sum("pending")`` counts the others."""
    fields: dict[str, Any] = {"id": alert.id, "price": price, "pending": _flag(ret_pct is None)}
    if ret_pct is not None:
        fields.update(
            exit_price=exit_price, ret_pct=ret_pct, right=_flag(ret_pct > 0 if direction == "up" else ret_pct < 0)
        )
    tags = {
        "coin": alert.coin,
        "vs": alert.vs,
        "kind": alert.kind,
        "rule": alert.rule,
        "window": alert.window,
        "direction": direction,
        "horizon": horizon,
    }
    return _line(SCORECARD, tags, fields, alert.event_time)


def scorecard_baseline_line(
    coin: str, vs: str, horizon: str, time_ms: int, price: float, exit_price: float | None, ret_pct: float | None
) -> str:
    """One tick of a pair (a baseline moment) at one horizon; ``up``/``down`` are 1 when the price rose/fell."""
    fields: dict[str, Any] = {"price": price, "pending": _flag(ret_pct is None)}
    if ret_pct is not None:
        fields.update(exit_price=exit_price, ret_pct=ret_pct, up=_flag(ret_pct > 0), down=_flag(ret_pct < 0))
    return _line(SCORECARD_BASELINE, {"coin": coin, "vs": vs, "horizon": horizon}, fields, time_ms)
