"""Forward returns and their statistics: the price after a moment, and how a set of moments fared.

The definitions (price "as of" a moment, forward return, pending, quartiles) are the scorecard's:
``processor.scorecard`` states them and why each is the one chosen.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from crypto_watcher.times import format_time

Direction = Literal["up", "down"]


def plain_fields(obj: Any, *leave_out: str) -> dict[str, Any]:
    """A dataclass's fields by name, in declaration order, values as they are (not copied)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj) if f.name not in leave_out}


class PriceSeries:
    """One pair's ticks in event-time order, for "price as of t" look-ups (binary search)."""

    __slots__ = ("prices", "times")

    def __init__(self, ticks: Iterable[tuple[int, float]]) -> None:
        by_time: dict[int, float] = {}
        for event_time, price in ticks:
            by_time[int(event_time)] = float(price)  # a repeated event time: the last one read wins
        self.times: list[int] = sorted(by_time)
        self.prices: list[float] = [by_time[t] for t in self.times]

    def __len__(self) -> int:
        return len(self.times)

    @property
    def last_time(self) -> int | None:
        return self.times[-1] if self.times else None

    def price_at(self, t: int) -> float | None:
        """The last price at or before ``t``; None before the first tick."""
        i = bisect.bisect_right(self.times, t)
        return self.prices[i - 1] if i else None

    def covered(self, t: int) -> bool:
        """True when a tick at or after ``t`` exists, so the price as of ``t`` is final."""
        return bool(self.times) and self.times[-1] >= t

    def forward_return(self, t: int, horizon_ms: int) -> float | None:
        """Percent change from the price as of ``t`` to the price as of ``t + horizon_ms``; None if pending.

        Raises ``ValueError`` when there is no price at or before ``t``: a hint is always made from
        ticks at or before its time, so that means the ticks given are not the ones it came from."""
        p0 = self.price_at(t)
        if p0 is None:
            raise ValueError(f"no price at or before {format_time(t)}: the ticks do not cover the moment scored")
        if not self.covered(t + horizon_ms):
            return None
        p1 = self.price_at(t + horizon_ms)
        assert p1 is not None
        return (p1 / p0 - 1.0) * 100.0


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolating linearly (type 7, pandas' default)."""
    if not sorted_values:
        raise ValueError("quantile of nothing")
    position = (len(sorted_values) - 1) * q
    lo = math.floor(position)
    hi = min(lo + 1, len(sorted_values) - 1)
    fraction = position - lo
    low, high = sorted_values[lo], sorted_values[hi]
    # numpy's form for type 7 (lerp), so the result is the very float pandas gives
    return float(low + (high - low) * fraction) if fraction < 0.5 else float(high - (high - low) * (1 - fraction))


@dataclass(frozen=True)
class Stats:
    """Forward returns at one horizon of a set of moments: hints of one group, or every tick of a pair.

    ``count`` moments, of which ``pending`` have no covered horizon yet; the quantiles and shares
    are over the other ``scored`` ones (None when there are none). Shares are percentages of the
    scored moments whose return was above (``up_pct``) or below (``down_pct``) zero."""

    count: int
    pending: int
    median_pct: float | None
    q1_pct: float | None
    q3_pct: float | None
    up_pct: float | None
    down_pct: float | None

    @property
    def scored(self) -> int:
        return self.count - self.pending

    def share(self, direction: Direction) -> float | None:
        """The percentage of scored moments that moved in ``direction``."""
        return self.up_pct if direction == "up" else self.down_pct

    @classmethod
    def of(cls, returns: Iterable[float | None]) -> Stats:
        values = list(returns)
        scored = sorted(v for v in values if v is not None)
        pending = len(values) - len(scored)
        if not scored:
            return cls(len(values), pending, None, None, None, None, None)
        n = len(scored)
        return cls(
            count=len(values),
            pending=pending,
            median_pct=quantile(scored, 0.5),
            q1_pct=quantile(scored, 0.25),
            q3_pct=quantile(scored, 0.75),
            up_pct=sum(1 for v in scored if v > 0) / n * 100.0,
            down_pct=sum(1 for v in scored if v < 0) / n * 100.0,
        )

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "scored": self.scored, **plain_fields(self, "count")}
