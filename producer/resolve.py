"""What users type (``btc``, ``Bitcoin``, ``bitcoin``) to CoinGecko coin ids, or a clear refusal.

The id is the only unambiguous name of a coin: thousands of tokens share symbols (``btc`` is
Bitcoin, and also batcat, Osmosis allBTC, ...), and a watcher that picks the wrong one publishes
nonsense. So:

1. An input that *is* a CoinGecko id passes through unchanged.
2. Otherwise it is looked up as a symbol and as a name (case-insensitive) in ``/coins/list``.
   One candidate: that coin. Several: their market caps are fetched (one ``/coins/markets`` call
   for all ambiguous inputs together) and the largest wins only if it is at least ``DOMINANCE``
   times the runner-up (``btc`` -> bitcoin); otherwise the input is ambiguous.
3. Unknown and ambiguous inputs stop the producer (exit status 2) with one message naming each
   input and its candidates (or close matches), so the user can write the id instead.

``/coins/list`` is large (~17k coins) and changes slowly: it is cached on disk
(``<cache dir>/coins-list.json``) for ``ttl_s`` and re-fetched after that; a stale cache is still
used, with a warning, when CoinGecko cannot be reached.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from producer.coingecko import CoinGeckoClient, CoinGeckoError
from producer.quotes import markets_params, parse_market_caps

log = logging.getLogger(__name__)

DOMINANCE = 10.0
"""A symbol or name shared by several coins means the largest only when it is this much larger."""
MARKETS_PAGE = 250


@dataclass(frozen=True)
class CoinRef:
    id: str
    symbol: str
    name: str


class ResolveError(ValueError):
    """Some inputs are unknown or ambiguous; the message names each with its candidates."""


@dataclass
class Resolution:
    ids: list[str]
    symbols: dict[str, str] = field(default_factory=dict)
    """id -> symbol, for the ``symbol`` field of ticks."""
    notes: list[str] = field(default_factory=list)
    """One line per input that was not an id, saying what it became."""


def _parse_coins(payload: Any) -> list[CoinRef]:
    if not isinstance(payload, list):
        raise CoinGeckoError("malformed", f"/coins/list answered {type(payload).__name__}, not a list")
    coins = []
    for row in payload:
        if isinstance(row, dict) and isinstance(row.get("id"), str) and row["id"]:
            coins.append(CoinRef(row["id"], str(row.get("symbol") or ""), str(row.get("name") or "")))
    if not coins:
        raise CoinGeckoError("malformed", "/coins/list answered an empty list")
    return coins


class CoinsList:
    """``/coins/list`` through a disk cache with a TTL, keyed by the API base URL."""

    def __init__(
        self,
        client: CoinGeckoClient,
        cache_dir: str | Path,
        ttl_s: float = 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.path = Path(cache_dir) / "coins-list.json"
        self.ttl_s = ttl_s
        self.clock = clock
        self.fetched = False
        """True when the last ``load`` called CoinGecko (tests count calls with it)."""

    def _read_cache(self) -> tuple[float, list[CoinRef]] | None:
        try:
            data = json.loads(self.path.read_text())
            if data.get("base_url") != self.client.base_url:
                return None
            coins = [CoinRef(c["id"], c["symbol"], c["name"]) for c in data["coins"]]
            return float(data["fetched_at"]), coins
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable coin list cache %s: %s", self.path, exc)
            return None

    def _write_cache(self, coins: list[CoinRef]) -> None:
        data = {
            "base_url": self.client.base_url,
            "fetched_at": self.clock(),
            "coins": [{"id": c.id, "symbol": c.symbol, "name": c.name} for c in coins],
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".coins-list.", suffix=".tmp")
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only file system costs one call per start, nothing more
            log.warning("cannot cache the coin list in %s (%s); it will be fetched again next start", self.path, exc)

    def load(self, fetch: Callable[[], Any] | None = None) -> list[CoinRef]:
        """The coin list: from the cache while fresh, else from CoinGecko (``fetch`` makes the call)."""
        self.fetched = False
        cached = self._read_cache()
        age = self.clock() - cached[0] if cached else None
        if cached and age is not None and 0 <= age < self.ttl_s:
            log.debug("coin list from cache %s (%d coins, %.0f min old)", self.path, len(cached[1]), age / 60)
            return cached[1]
        try:
            payload = fetch() if fetch is not None else self.client.get("coins/list")
            coins = _parse_coins(payload)
        except CoinGeckoError as exc:
            if cached is None:
                raise
            log.warning("coin list refresh failed (%s); using the cached one from %.1f h ago", exc, (age or 0) / 3600)
            return cached[1]
        self.fetched = True
        self._write_cache(coins)
        log.info("fetched the CoinGecko coin list (%d coins), cached in %s", len(coins), self.path)
        return coins


def _describe(coin: CoinRef, caps: dict[str, float] | None, vs: str) -> str:
    cap = ""
    if caps is not None:
        value = caps.get(coin.id)
        cap = f", market cap {value:,.0f} {vs.upper()}" if value else ", no market cap"
    return f"{coin.id} ({coin.symbol.upper()}, {coin.name}{cap})"


def _listing(coins: list[CoinRef], caps: dict[str, float] | None, vs: str, limit: int = 8) -> str:
    shown = ", ".join(_describe(c, caps, vs) for c in coins[:limit])
    more = f" and {len(coins) - limit} more" if len(coins) > limit else ""
    return shown + more


class _Index:
    """``/coins/list`` looked up by id, by symbol and by name (case-insensitive)."""

    def __init__(self, coins: list[CoinRef]) -> None:
        self.by_id = {c.id: c for c in coins}
        self.by_symbol: dict[str, list[CoinRef]] = {}
        self.by_name: dict[str, list[CoinRef]] = {}
        for c in coins:
            self.by_symbol.setdefault(c.symbol.lower(), []).append(c)
            self.by_name.setdefault(c.name.lower(), []).append(c)

    def candidates(self, key: str) -> list[CoinRef]:
        """Coins whose symbol or name is ``key``, each once (Bitcoin's symbol and name both match)."""
        return list({c.id: c for c in self.by_symbol.get(key, []) + self.by_name.get(key, [])}.values())

    def unknown(self, text: str) -> str:
        """The error for an input nothing matches, with close matches: usually a typo."""
        close = difflib.get_close_matches(text.lower(), [*self.by_id, *self.by_symbol, *self.by_name], n=5, cutoff=0.75)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"unknown coin {text!r}: not a CoinGecko id, symbol or name{hint}"


def _largest(text: str, cands: list[CoinRef], caps: dict[str, float], vs: str) -> tuple[CoinRef | None, str]:
    """The candidate that dominates by market cap, with the note saying so; else None and the error
    listing every candidate (a near tie is the user's to settle by writing the id)."""
    ranked = sorted(cands, key=lambda c: -caps.get(c.id, 0.0))
    top = caps.get(ranked[0].id, 0.0)
    runner_up = caps.get(ranked[1].id, 0.0)
    if top > 0 and top >= DOMINANCE * runner_up:
        others = ", ".join(c.id for c in ranked[1:4]) + (" ..." if len(ranked) > 4 else "")
        return ranked[0], f"{text!r} -> {ranked[0].id} (largest by market cap; also matches {others})"
    return None, (
        f"ambiguous coin {text!r} matches {len(cands)} coins: {_listing(ranked, caps, vs)}; "
        "write the CoinGecko id instead"
    )


def resolve(
    inputs: Iterable[str],
    coins: list[CoinRef],
    market_caps: Callable[[list[str]], dict[str, float]] | None = None,
    vs: str = "usd",
) -> Resolution:
    """Ids for ``inputs`` (order kept, duplicates dropped); ResolveError naming every bad input."""
    index = _Index(coins)
    wanted = [i.strip() for i in inputs if i.strip()]
    chosen: dict[str, CoinRef] = {}
    notes: dict[str, str] = {}
    ambiguous: dict[str, list[CoinRef]] = {}
    errors: list[str] = []
    for text in wanted:
        key = text.lower()
        candidates = [index.by_id[key]] if key in index.by_id else index.candidates(key)
        if len(candidates) == 1:
            chosen[text] = candidates[0]
        elif candidates:
            ambiguous[text] = candidates
        else:
            errors.append(index.unknown(text))
    if ambiguous:
        # One market-cap lookup for every ambiguous input together: one call, not one per input.
        all_ids = sorted({c.id for cands in ambiguous.values() for c in cands})
        caps = market_caps(all_ids) if market_caps is not None else {}
        for text, cands in ambiguous.items():
            coin, said = _largest(text, cands, caps, vs)
            if coin is None:
                errors.append(said)
            else:
                chosen[text], notes[text] = coin, said
    if errors:
        raise ResolveError("\n".join(f"  {e}" for e in errors))
    return _resolution(wanted, chosen, notes)


def _resolution(wanted: list[str], chosen: dict[str, CoinRef], notes: dict[str, str]) -> Resolution:
    """The ids in the order asked, each once, with a note for every input that was not the id itself."""
    result = Resolution([])
    for text in wanted:
        coin = chosen[text]
        if coin.id not in result.ids:
            result.ids.append(coin.id)
            if coin.symbol:
                result.symbols[coin.id] = coin.symbol
        if text in notes:
            result.notes.append(notes[text])
        elif coin.id != text.lower():
            result.notes.append(f"{text!r} -> {coin.id} ({coin.name})")
    return result


def market_caps_via(vs: str, get: Callable[[str, dict[str, str]], Any]) -> Callable[[list[str]], dict[str, float]]:
    """A ``market_caps`` lookup for ``resolve``: /coins/markets for the candidates, 250 per call."""

    def lookup(ids: list[str]) -> dict[str, float]:
        caps: dict[str, float] = {}
        for i in range(0, len(ids), MARKETS_PAGE):
            group = ids[i : i + MARKETS_PAGE]
            caps.update(parse_market_caps(get("coins/markets", markets_params(vs, 1, MARKETS_PAGE, group))))
        return caps

    return lookup
