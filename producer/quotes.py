"""Turn a CoinGecko ``/simple/price`` answer into validated ticks, one bad record never spoiling the rest.

A response is untrusted input: any coin's entry may lack fields or carry null, negative, NaN,
infinite or string prices. Each such record is skipped with a ``Problem`` naming the coin, the
field and the value, and every good record still becomes a ``Tick``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from crypto_watcher.messages import MessageError, Source, Tick

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
