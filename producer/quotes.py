"""Turn CoinGecko answers into validated ticks, one bad record never spoiling the rest.

``/simple/price`` (live quotes), ``/coins/{id}/market_chart/range`` (history) and the ids of a
``/coins/markets`` page (the top-N list). A response is untrusted input: any coin's entry may lack
fields or carry null, negative, NaN, infinite or string prices. Each such record is skipped with a
``Problem`` naming the coin, the field and the value, and every good record still becomes a ``Tick``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crypto_watcher.messages import MessageError, Source, Tick

if TYPE_CHECKING:
    from producer.coingecko import CoinGeckoError

# The ``reason`` label of cw_producer_records_skipped_total.
BAD_VALUE = "bad_value"
MISSING_FIELD = "missing_field"
UNKNOWN_ID = "unknown_id"


@dataclass(frozen=True)
class Problem:
    reason: str
    coin: str
    vs: str | None
    detail: str
    skipped: bool = True
    """False when only an optional figure was dropped and the tick itself was still published."""

    def __str__(self) -> str:
        pair = f"{self.coin}:{self.vs}" if self.vs else self.coin
        return f"{'skipped' if self.skipped else 'kept'} {pair}: {self.detail}"


@dataclass
class ParsedQuotes:
    ticks: list[Tick]
    problems: list[Problem]
    error: CoinGeckoError | None = None
    """Set when a call failed part-way through a poll: ``ticks`` holds what arrived before it."""
    stopped: bool = False
    """The producer is stopping and the poll ended early: ``ticks`` holds what arrived before."""


def _number(value: Any) -> float | None:
    """A finite JSON number, else None. Strings are refused: CoinGecko never quotes numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def simple_price_params(coins: Iterable[str], vs_currencies: Iterable[str]) -> dict[str, str]:
    return {
        "ids": ",".join(coins),
        "vs_currencies": ",".join(vs_currencies),
        "include_market_cap": "true",
        "include_24hr_vol": "true",
        "include_24hr_change": "true",
        "include_last_updated_at": "true",
        "precision": "full",
    }


def parse_simple_price(
    payload: Any,
    coins: Iterable[str],
    vs_currencies: Iterable[str],
    fetch_time_ms: int,
    source: Source = "coingecko",
    symbols: Mapping[str, str] | None = None,
) -> ParsedQuotes:
    """Ticks for every requested (coin, vs) the payload quotes correctly; problems for the rest."""
    result = ParsedQuotes([], [])
    vs_list = list(vs_currencies)
    if not isinstance(payload, dict):
        result.problems.append(Problem(BAD_VALUE, "*", None, f"response is {type(payload).__name__}, not an object"))
        return result
    for coin in coins:
        entry = payload.get(coin)
        if entry is None:
            result.problems.append(Problem(UNKNOWN_ID, coin, None, "not in the response (unknown or delisted id?)"))
            continue
        if not isinstance(entry, dict):
            result.problems.append(Problem(BAD_VALUE, coin, None, f"entry is {entry!r:.60}, not an object"))
            continue
        updated = entry.get("last_updated_at")
        if "last_updated_at" not in entry:
            result.problems.append(Problem(MISSING_FIELD, coin, None, "field last_updated_at is missing"))
            continue
        updated_s = _number(updated)
        if updated_s is None or updated_s <= 0:
            result.problems.append(
                Problem(BAD_VALUE, coin, None, f"field last_updated_at has bad value {updated!r:.60}")
            )
            continue
        for vs in vs_list:
            tick = _tick(result, entry, coin, vs, int(updated_s * 1000), fetch_time_ms, source, symbols)
            if tick is not None:
                result.ticks.append(tick)
    return result


def _tick(
    result: ParsedQuotes,
    entry: Mapping[str, Any],
    coin: str,
    vs: str,
    event_time_ms: int,
    fetch_time_ms: int,
    source: Source,
    symbols: Mapping[str, str] | None,
) -> Tick | None:
    if vs not in entry:
        result.problems.append(Problem(MISSING_FIELD, coin, vs, f"field {vs} (price) is missing"))
        return None
    price = _number(entry[vs])
    if price is None or price <= 0:
        result.problems.append(Problem(BAD_VALUE, coin, vs, f"field {vs} (price) has bad value {entry[vs]!r:.60}"))
        return None
    optional: dict[str, float | None] = {}
    for name, field in (
        ("market_cap", f"{vs}_market_cap"),
        ("volume_24h", f"{vs}_24h_vol"),
        ("change_24h_pct", f"{vs}_24h_change"),
    ):
        raw = entry.get(field)
        number = _number(raw)
        # Optional figures: a bad one is dropped (logged by the caller), the price still counts.
        if raw is not None and (number is None or (name != "change_24h_pct" and number < 0)):
            result.problems.append(
                Problem(
                    BAD_VALUE, coin, vs, f"field {field} has bad value {raw!r:.60}; stored without it", skipped=False
                )
            )
            number = None
        optional[name] = number
    try:
        return Tick.create(
            coin=coin,
            symbol=(symbols or {}).get(coin),
            vs=vs,
            price=price,
            source=source,
            event_time=event_time_ms,
            fetch_time=fetch_time_ms,
            **optional,
        )
    except MessageError as exc:
        result.problems.append(Problem(BAD_VALUE, coin, vs, str(exc)))
        return None


def _pairs(value: Any) -> list[tuple[int, Any]] | None:
    """``[[ms, value], ...]`` as (ms, raw value) pairs; None if not a list. Bad pairs get ts -1."""
    if not isinstance(value, list):
        return None
    out: list[tuple[int, Any]] = []
    for pair in value:
        ts = _number(pair[0]) if isinstance(pair, list) and len(pair) == 2 else None
        if ts is None or ts != int(ts) or ts <= 0:
            out.append((-1, pair))
        else:
            out.append((int(ts), pair[1]))
    return out


CHART_EXTRAS = (("market_cap", "market_caps"), ("volume_24h", "total_volumes"))
"""Tick field <- the market_chart series joined to ``prices`` by timestamp."""


def _chart_figures(series: Any) -> dict[int, float]:
    """A market_chart series as timestamp -> figure, its bad points dropped: they are optional
    figures, and a tick without one is still a good tick."""
    figures: dict[int, float] = {}
    for ts, raw in _pairs(series) or []:
        number = _number(raw)
        if ts > 0 and number is not None and number >= 0:
            figures[ts] = number
    return figures


def _within(ts: int, start_ms: int | None, end_ms: int | None) -> bool:
    """``ts`` in [start_ms, end_ms), either end open when None."""
    return (start_ms is None or ts >= start_ms) and (end_ms is None or ts < end_ms)


def parse_market_chart(
    payload: Any,
    coin: str,
    vs: str,
    fetch_time_ms: int,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    source: Source = "backfill",
    symbol: str | None = None,
) -> ParsedQuotes:
    """Ticks from ``/coins/{id}/market_chart/range``: one per ``prices`` point in [start_ms, end_ms).

    Event time is the point's own timestamp (ms); market cap and volume are joined by timestamp
    (a missing or bad one leaves the field empty). Points outside the range (the request may be
    wider than the range to get the wanted granularity) are dropped silently; repeated timestamps
    keep the last point, so every tick of a chunk has a distinct event time.
    """
    result = ParsedQuotes([], [])
    if not isinstance(payload, dict):
        result.problems.append(Problem(BAD_VALUE, coin, vs, f"response is {type(payload).__name__}, not an object"))
        return result
    prices = _pairs(payload.get("prices"))
    if prices is None:
        result.problems.append(Problem(MISSING_FIELD, coin, vs, "field prices is missing or not a list"))
        return result
    extras = {name: _chart_figures(payload.get(field)) for name, field in CHART_EXTRAS}
    by_time: dict[int, Tick] = {}
    for i, (ts, raw) in enumerate(prices):
        if ts < 0:
            result.problems.append(Problem(BAD_VALUE, coin, vs, f"field prices[{i}] has bad value {raw!r:.60}"))
            continue
        if not _within(ts, start_ms, end_ms):
            continue
        price = _number(raw)
        if price is None or price <= 0:
            result.problems.append(Problem(BAD_VALUE, coin, vs, f"field prices[{i}] at {ts} has bad value {raw!r:.60}"))
            continue
        try:
            by_time[ts] = Tick.create(
                coin=coin,
                symbol=symbol,
                vs=vs,
                price=price,
                market_cap=extras["market_cap"].get(ts),
                volume_24h=extras["volume_24h"].get(ts),
                source=source,
                event_time=ts,
                fetch_time=fetch_time_ms,
            )
        except MessageError as exc:
            result.problems.append(Problem(BAD_VALUE, coin, vs, f"prices[{i}]: {exc}"))
    result.ticks = [by_time[t] for t in sorted(by_time)]
    return result


def parse_market_ids(payload: Any) -> list[tuple[str, str | None]]:
    """(id, symbol) of each row of a ``/coins/markets`` page, in the page's order; bad rows are skipped."""
    if not isinstance(payload, list):
        return []
    out: list[tuple[str, str | None]] = []
    for row in payload:
        if isinstance(row, dict) and isinstance(row.get("id"), str) and row["id"]:
            symbol = row.get("symbol")
            out.append((row["id"], symbol if isinstance(symbol, str) else None))
    return out


def parse_market_caps(payload: Any) -> dict[str, float]:
    """Market cap per coin id from a ``/coins/markets`` page (rows without a usable cap are left out)."""
    caps: dict[str, float] = {}
    if isinstance(payload, list):
        for row in payload:
            if isinstance(row, dict) and isinstance(row.get("id"), str):
                cap = _number(row.get("market_cap"))
                if cap is not None and cap > 0:
                    caps[row["id"]] = cap
    return caps


def markets_params(vs: str, page: int = 1, per_page: int = 250, ids: Iterable[str] | None = None) -> dict[str, str]:
    params = {"vs_currency": vs, "order": "market_cap_desc", "per_page": str(per_page), "page": str(page)}
    if ids is not None:
        params["ids"] = ",".join(ids)
    return params
