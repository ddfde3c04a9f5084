"""An offline market: a seeded random walk with scheduled drops and spikes, in real time.

It lets the whole pipeline run without CoinGecko (no network, no key, no rate limit) and still
show what users care about: every ``event_every`` one coin (round robin) falls or rises by
``event_size_pct`` over ``event_over``, so alerts appear within minutes of ``run-local``.
The same seed and clock give the same prices, which the tests rely on.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence

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
    "binancecoin": 550.0,
    "polkadot": 7.0,
    "litecoin": 80.0,
}
VS_RATES = {"usd": 1.0, "eur": 0.92, "gbp": 0.79, "jpy": 150.0, "chf": 0.88, "btc": 1 / 60_000.0}
VOLATILITY_PER_SQRT_MINUTE = 0.001  # 0.1 %: calm enough that only scheduled events cross 5 %.


def _start_price(coin: str) -> float:
    if coin in START_PRICES_USD:
        return START_PRICES_USD[coin]
    digest = int(hashlib.sha256(coin.encode()).hexdigest()[:8], 16)
    return round(0.01 * 10 ** (digest % 600 / 100), 6)  # 0.01 .. 10,000, stable per coin


class SimulatedMarket:
    """Quotes as a function of wall time; ``poll`` has the same shape as the CoinGecko source."""

    def __init__(
        self,
        coins: Sequence[str],
        vs_currencies: Sequence[str],
        seed: int = 42,
        event_every_ms: int = 180_000,
        event_size_pct: float = 8.0,
        event_over_ms: int = 60_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.coins = list(coins)
        self.vs_currencies = list(vs_currencies)
        self.event_every_ms = event_every_ms
        self.event_size = event_size_pct / 100.0
        self.event_over_ms = event_over_ms
        self.clock = clock
        self._rng = random.Random(seed)
        self._start_ms = int(clock() * 1000)
        self._last_ms = self._start_ms
        self._log_walk = {coin: 0.0 for coin in self.coins}

    def _event_factor(self, coin: str, now_ms: int) -> float:
        """Product of every scheduled move of this coin up to now (each ramps linearly)."""
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
            self._log_walk[coin] += self._rng.gauss(0.0, VOLATILITY_PER_SQRT_MINUTE * math.sqrt(minutes))
            usd = _start_price(coin) * math.exp(self._log_walk[coin]) * self._event_factor(coin, now_ms)
            for vs in self.vs_currencies:
                price = usd * VS_RATES.get(vs, 1.0)
                ticks.append(
                    Tick(
                        coin=coin,
                        vs=vs,
                        price=round(price, 10),
                        source="simulate",
                        market_cap=round(price * 19_000_000, 2),
                        event_time=now_ms,
                        fetch_time=now_ms,
                    )
                )
        return ParsedQuotes(ticks, [])
