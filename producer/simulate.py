"""An offline market: a seeded random walk with scheduled drops and spikes, in real time.

It lets the whole pipeline run without CoinGecko (no network, no key, no rate limit) and still
show what users care about: every ``event_every`` one coin (round robin) falls or rises by
``event_size_pct`` over ``event_over``, so alerts appear within minutes of ``run-local``.
The same seed and clock give the same prices, which the tests rely on.

Every quote carries what a CoinGecko quote carries (symbol, market cap, 24 h volume and 24 h
change), because the dashboards show those fields: a source that left them out would show
"No data" panels on the stack users try first (compose's default source is this one).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crypto_watcher.messages import Tick
from producer.quotes import ParsedQuotes

START_PRICES_USD = {
    "bitcoin": 60_000.0,
    "ethereum": 3_000.0,
    "solana": 150.0,
    "ripple": 0.6,
    "cardano": 0.45,
    "dogecoin": 0.15,
    "tether": 1.0,
    "usd-coin": 1.0,
    "binancecoin": 550.0,
    "polkadot": 7.0,
    "litecoin": 80.0,
}
SYMBOLS = {
    "bitcoin": "btc",
    "ethereum": "eth",
    "solana": "sol",
    "ripple": "xrp",
    "cardano": "ada",
    "dogecoin": "doge",
    "tether": "usdt",
    "usd-coin": "usdc",
    "binancecoin": "bnb",
    "polkadot": "dot",
    "litecoin": "ltc",
}
STABLECOINS = frozenset({"tether", "usd-coin", "dai"})
VS_RATES = {"usd": 1.0, "eur": 0.92, "gbp": 0.79, "jpy": 150.0, "chf": 0.88, "btc": 1 / 60_000.0}
VOLATILITY_PER_SQRT_MINUTE = 0.001  # 0.1 %: calm enough that only scheduled events cross 5 %.
STABLE_VOLATILITY_PER_SQRT_MINUTE = 0.00002  # a stablecoin wobbles by hundredths of a percent
SUPPLY = 19_000_000.0
"""Circulating supply used for every coin's market cap: the cap only needs to move with the price."""
TURNOVER_PER_DAY = 0.04
"""24 h volume as a share of market cap on a calm day (bitcoin's is typically 2-5 %)."""
VOLUME_PER_MOVE = 10.0
"""How much a move lifts volume: a 10 % move over 24 h doubles it, as sell-offs and rallies do."""
DAY_MS = 86_400_000
HISTORY_STEP_MS = 60_000
"""Prices are remembered once a minute for the 24 h change: at most 1,441 per coin, whatever the poll rate."""


@dataclass(frozen=True)
class MarketEvent:
    """A scripted move: ``coin`` goes up (``size_pct`` > 0) or down over ``over_ms`` from ``start_ms``."""

    coin: str
    start_ms: int
    size_pct: float
    over_ms: int

    def factor(self, now_ms: int) -> float:
        if now_ms <= self.start_ms:
            return 1.0
        progress = min(1.0, (now_ms - self.start_ms) / self.over_ms)
        return 1.0 + self.size_pct / 100.0 * progress


def _start_price(coin: str) -> float:
    if coin in START_PRICES_USD:
        return START_PRICES_USD[coin]
    digest = int(hashlib.sha256(coin.encode()).hexdigest()[:8], 16)
    return round(0.01 * 10 ** (digest % 600 / 100), 6)  # 0.01 .. 10,000, stable per coin


class _DayHistory:
    """One coin's USD price once a minute over the last 24 h, for the 24 h change.

    Before the market has run a day, the price "24 h ago" is its opening price: the market opened
    flat, as a fresh CoinGecko coin would report no change for its first day."""

    def __init__(self, opening_usd: float) -> None:
        self._opening = opening_usd
        self._points: deque[tuple[int, float]] = deque()

    def record(self, now_ms: int, usd: float) -> None:
        if not self._points or now_ms - self._points[-1][0] >= HISTORY_STEP_MS:
            self._points.append((now_ms, usd))

    def day_ago(self, now_ms: int) -> float:
        """The last remembered price at or before ``now - 24 h``."""
        cutoff = now_ms - DAY_MS
        while len(self._points) >= 2 and self._points[1][0] <= cutoff:
            self._points.popleft()
        if self._points and self._points[0][0] <= cutoff:
            return self._points[0][1]
        return self._opening


class SimulatedMarket:
    """Quotes as a function of wall time; ``poll`` has the same shape as the CoinGecko source.

    ``events`` replaces the round-robin schedule with scripted moves (tests use it to draw a
    crash and a spike exactly where they want them)."""

    def __init__(
        self,
        coins: Sequence[str],
        vs_currencies: Sequence[str],
        seed: int = 42,
        event_every_ms: int = 180_000,
        event_size_pct: float = 8.0,
        event_over_ms: int = 60_000,
        clock: Callable[[], float] = time.time,
        events: Sequence[MarketEvent] | None = None,
    ) -> None:
        self.coins = list(coins)
        self.vs_currencies = list(vs_currencies)
        self.event_every_ms = event_every_ms
        self.event_size = event_size_pct / 100.0
        self.event_over_ms = event_over_ms
        self.events = list(events) if events is not None else None
        self.clock = clock
        self._rng = random.Random(seed)
        self._start_ms = int(clock() * 1000)
        self._last_ms = self._start_ms
        self._log_walk = {coin: 0.0 for coin in self.coins}
        self._history = {coin: _DayHistory(_start_price(coin)) for coin in self.coins}

    def _event_factor(self, coin: str, now_ms: int) -> float:
        """Product of every move of this coin up to now (each ramps linearly)."""
        if self.events is not None:
            return math.prod(e.factor(now_ms) for e in self.events if e.coin == coin)
        factor = 1.0
        k = 1
        while True:
            start = self._start_ms + k * self.event_every_ms
            if start > now_ms:
                return factor
            if self.coins[(k - 1) % len(self.coins)] == coin:
                sign = -1.0 if k % 2 == 1 else 1.0  # drop first, then spike, alternating
                progress = min(1.0, (now_ms - start) / self.event_over_ms)
                factor *= 1.0 + sign * self.event_size * progress
            k += 1

    def poll(self) -> ParsedQuotes:
        now_ms = int(self.clock() * 1000)
        if now_ms <= self._last_ms:
            now_ms = self._last_ms + 1  # event time must move forward for every poll
        minutes = (now_ms - self._last_ms) / 60_000
        self._last_ms = now_ms
        ticks = []
        for coin in self.coins:
            sigma = STABLE_VOLATILITY_PER_SQRT_MINUTE if coin in STABLECOINS else VOLATILITY_PER_SQRT_MINUTE
            self._log_walk[coin] += self._rng.gauss(0.0, sigma * math.sqrt(minutes))
            usd = _start_price(coin) * math.exp(self._log_walk[coin]) * self._event_factor(coin, now_ms)
            history = self._history[coin]
            day_ago = history.day_ago(now_ms)
            history.record(now_ms, usd)
            change = usd / day_ago - 1.0
            for vs in self.vs_currencies:
                price = usd * VS_RATES.get(vs, 1.0)
                market_cap = price * SUPPLY
                ticks.append(
                    Tick(
                        coin=coin,
                        symbol=SYMBOLS.get(coin),
                        vs=vs,
                        price=round(price, 10),
                        source="simulate",
                        market_cap=round(market_cap, 2),
                        volume_24h=round(market_cap * TURNOVER_PER_DAY * (1.0 + VOLUME_PER_MOVE * abs(change)), 2),
                        change_24h_pct=round(change * 100.0, 6),
                        event_time=now_ms,
                        fetch_time=now_ms,
                    )
                )
        return ParsedQuotes(ticks, [])
