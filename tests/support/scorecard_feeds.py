"""Synthetic markets for the scorecard tests, and the pandas reference the scorecard must equal.

- :func:`rising_after_buy`: per coin, a cycle of 28 hours: a short crash (a few 1-minute candles
  losing ~1 % each), a fast rebound above the pre-crash price, then a slow, strictly rising drift
  until the next crash. The default rules' buy hints come only from the crash and the rebound
  (RSI entering oversold on the first crash candle, the EMA crossover turning up in the rebound),
  and every price from there on, up to 24 hours and more later, is higher: by construction each buy
  hint is followed by a rise at 1 h, 4 h and 24 h.
- :func:`random_walk`: independent geometric Gaussian random walks, zero drift: whatever a hint
  saw, the next increments are independent of it, so a hint goes the way it said with
  probability 1/2, exactly as any tick does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crypto_watcher.messages import Tick

MIN = 60_000
HOUR = 60 * MIN
CYCLE_MS = 28 * HOUR


@dataclass(frozen=True)
class Crash:
    """One coin's cycle: ``drift`` per minute, then at each cycle start ``minutes`` of ``fall`` per
    minute and 30 minutes of ``rebound`` per minute."""

    base: float
    drift: float
    fall: float
    minutes: int
    rebound: float

    def __post_init__(self) -> None:
        # the rebound must end above the pre-crash price, or a hint in the crash could end lower
        assert (1 - self.fall) ** self.minutes * (1 + self.rebound) ** 30 > 1.0


CRASHES = {
    "alpha": Crash(base=100.0, drift=0.0002, fall=0.01, minutes=5, rebound=0.0017),
    "beta": Crash(base=2_500.0, drift=0.00025, fall=0.012, minutes=4, rebound=0.002),
}


def rising_after_buy(start_ms: int, first_crash_ms: int, end_ms: int) -> list[Tick]:
    """One tick a minute per coin from ``start_ms`` to ``end_ms``; crashes at ``first_crash_ms`` + k x 28 h."""
    ticks = []
    for coin, c in CRASHES.items():
        price = c.base
        for t in range(start_ms, end_ms + 1, MIN):
            ticks.append(Tick(coin=coin, vs="usd", price=round(price, 9), source="test", event_time=t))
            into = (t - first_crash_ms) % CYCLE_MS if t >= first_crash_ms else -1
            if 0 <= into < c.minutes * MIN:
                price *= 1 - c.fall
            elif c.minutes * MIN <= into < (c.minutes + 30) * MIN:
                price *= 1 + c.rebound
            else:
                price *= 1 + c.drift
    return ticks


def crash_times(first_crash_ms: int, end_ms: int) -> list[int]:
    return list(range(first_crash_ms, end_ms + 1, CYCLE_MS))


WALK_COINS = tuple(f"walk{i:02d}" for i in range(16))
WALK_STEP_MS = 5 * MIN
WALK_SIGMA = 0.0035
"""Standard deviation of the log-price step every 5 minutes (about 1.2 % an hour)."""


def random_walk(start_ms: int, end_ms: int, seed: int = 20261202) -> list[Tick]:
    rng = random.Random(seed)
    ticks = []
    for i, coin in enumerate(WALK_COINS):
        log_price = math.log(10.0 ** (i % 6 - 1))
        for t in range(start_ms, end_ms + 1, WALK_STEP_MS):
            ticks.append(Tick(coin=coin, vs="usd", price=round(math.exp(log_price), 9), source="test", event_time=t))
            log_price += rng.gauss(0.0, WALK_SIGMA)
    return ticks


# --- the pandas reference -----------------------------------------------------------------------


def pandas_prices(ticks: list[Tick]) -> dict[tuple[str, str], pd.DataFrame]:
    """Per pair, one price per event time (the last published), in time order."""
    frame = pd.DataFrame([(t.coin, t.vs, t.event_time, t.price) for t in ticks], columns=["coin", "vs", "t", "price"])
    out = {}
    for (coin, vs), rows in frame.groupby(["coin", "vs"]):
        clean = rows.drop_duplicates("t", keep="last").sort_values("t")[["t", "price"]].reset_index(drop=True)
        out[(str(coin), str(vs))] = clean
    return out


def pandas_forward(prices: pd.DataFrame, moments: np.ndarray, horizon_ms: int) -> pd.Series:
    """Percent change from the price as of each moment to the price as of moment + h (``merge_asof``
    backward); NaN (pending) where no tick at or after moment + h exists."""
    at = pd.DataFrame({"t": moments.astype("int64")})
    p0 = pd.merge_asof(at, prices, on="t", direction="backward")["price"]
    later = pd.DataFrame({"t": (moments + horizon_ms).astype("int64")})
    p1 = pd.merge_asof(later, prices, on="t", direction="backward")["price"]
    covered = (moments + horizon_ms) <= prices["t"].max()
    return ((p1 / p0 - 1.0) * 100.0).where(covered)


def overlap_sd(times_by_coin: dict[str, list[int]], horizon_ms: int) -> float:
    """An upper bound on the standard deviation of a share of n outcomes whose forward windows overlap.

    Each outcome minus its probability is a martingale difference: given everything known at a
    moment, the increments after it are independent of it (random walk), so two outcomes whose
    windows [t, t + h] do not overlap are uncorrelated, whatever made the moments be chosen. Hence
    Var(sum) <= 1/4 x (number of ordered pairs, self included, of the same coin less than h apart),
    and SD(share) <= sqrt(pairs) / (2 n). Coins are independent walks: no pair across coins counts.
    """
    n = sum(len(times) for times in times_by_coin.values())
    pairs = 0
    for times in times_by_coin.values():
        ordered = np.sort(np.asarray(times, dtype="int64"))
        lo = np.searchsorted(ordered, ordered - horizon_ms, side="right")
        hi = np.searchsorted(ordered, ordered + horizon_ms, side="left")
        pairs += int((hi - lo).sum())
    return math.sqrt(pairs) / (2 * n)
