"""Signal scorecard: where the price went after each hint, against where it went after any moment.

Pure functions over prices and alerts: no Kafka, no InfluxDB, no clock. ``processor.scorecard_run``
feeds them what the replay machinery produced; tests feed them series built by hand and compare
every number with a pandas computation over the same ticks. The price look-ups and statistics
(``PriceSeries``, ``Stats``, ``quantile``) are in ``processor.forward_returns``.

The definitions, and why each is the one chosen:

- **Price at a moment** ``t``: the last tick of the pair whose event time is at or before ``t``
  ("as of" ``t``). That is the price a user looking at ``t`` saw; a later tick would be look-ahead.
  Ticks repeating an event time (a producer restart) count once: the last one read wins, as in the
  processor's sliding windows (``processor.moves``).
- **Forward return** at horizon ``h``: price as of ``t + h`` over price as of ``t``, minus 1, in
  percent: ``(p1 / p0 - 1) * 100``, computed exactly so, so a pandas computation gives the same floats.
- **Pending**: the horizon is covered only when the pair has a tick at or after ``t + h``. Without
  one the price as of ``t + h`` is not known yet (the next tick could still fall before ``t + h``):
  such a hint is counted apart, as pending, and never as right or wrong. Hints near the end of
  the data are pending at the long horizons first.
- **Direction** of a hint: ``buy_hint`` and ``spike`` say up, ``sell_hint`` and ``drop`` say down (a
  drop hint is right when the price went on falling), ``volatility`` says the way its candle moved
  (the sign of ``change_pct``). Volatility hints are scored per direction, so each group has one.
- **Right**: the forward return is strictly in the hinted direction; an unchanged price is neither.
- **Moment of a hint**: its event time. For a candle rule that is the candle's end; live delivers
  the alert once the grace period has passed, so the scorecard grants candle hints up to that
  head start (a minute by default; small beside hours).
- **Baseline**: every tick of the pair inside the range is a moment, scored the same way. A hint
  whose right-share is no better than the baseline's share in the same direction is a coin flip
  on this history, however good its hit rate looks alone.
- **Quartiles**: linear interpolation between order statistics (Hyndman & Fan type 7, what
  ``pandas.Series.quantile`` and ``numpy.quantile`` do by default); the median is the 0.5 quantile.

Forward returns of hints close together overlap (two hints 10 minutes apart share 50 of the
next 60 minutes), so a group of n hints holds less evidence than n independent trials: the
numbers describe this history; they promise nothing about the next hint.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crypto_watcher.durations import format_duration
from crypto_watcher.messages import Alert
from crypto_watcher.times import format_time
from processor.forward_returns import Direction, PriceSeries, Stats, plain_fields

DEFAULT_HORIZONS: dict[str, int] = {"1h": 3_600_000, "4h": 4 * 3_600_000, "24h": 24 * 3_600_000}
"""How far after a hint its price is looked at: one hour, four hours, a day."""

UP_KINDS = frozenset({"buy_hint", "spike"})
DOWN_KINDS = frozenset({"sell_hint", "drop"})


def horizon_name(ms: int) -> str:
    """``24h`` rather than ``1d`` (a day is read as 24 hours of trading, ``48h`` as two), else as windows are named."""
    return f"{ms // 3_600_000}h" if ms % 3_600_000 == 0 else format_duration(ms)


def horizons_from(spec: Sequence[int]) -> dict[str, int]:
    """Horizons in ms -> ``{"1h": 3600000, ...}``, shortest first."""
    out: dict[str, int] = {}
    for ms in sorted(set(spec)):
        if ms <= 0:
            raise ValueError(f"a horizon must be positive, got {ms} ms")
        out[horizon_name(ms)] = ms
    if not out:
        raise ValueError("name at least one horizon")
    return out


def direction_of(alert: Alert) -> Direction:
    """The way the hint says the price will go (see the module docstring)."""
    if alert.kind in UP_KINDS:
        return "up"
    if alert.kind in DOWN_KINDS:
        return "down"
    return "up" if alert.change_pct > 0 else "down"


@dataclass(frozen=True)
class ScoredHint:
    """One hint (an alert the rules raised) and the price after it, per horizon (None: pending)."""

    alert: Alert
    direction: Direction
    price: float
    """The price as of the hint's event time (the scoring's entry price)."""
    returns: dict[str, float | None]

    def right(self, horizon: str) -> bool | None:
        """Whether the price moved in the hinted direction by ``horizon``; None while pending."""
        ret = self.returns[horizon]
        if ret is None:
            return None
        return ret > 0 if self.direction == "up" else ret < 0

    def as_dict(self) -> dict[str, Any]:
        a = self.alert
        return {
            "id": a.id,
            "coin": a.coin,
            "vs": a.vs,
            "kind": a.kind,
            "rule": a.rule,
            "window": a.window,
            "direction": self.direction,
            "event_time": a.event_time,
            "time": format_time(a.event_time),
            "price": self.price,
            "returns_pct": dict(self.returns),
            "right": {h: self.right(h) for h in self.returns},
        }


GroupKey = tuple[str, str, str, str, str, str]
"""coin, vs, kind, rule, window, direction."""

Moment = tuple[int, float, dict[str, float | None]]
"""A baseline moment: event time, price, forward return per horizon."""


@dataclass(frozen=True)
class GroupScore:
    """All hints of one kind, rule and window on one pair (one direction), per horizon, beside the baseline."""

    coin: str
    vs: str
    kind: str
    rule: str
    window: str
    direction: Direction
    hints: int
    stats: dict[str, Stats]
    baseline: dict[str, Stats]

    def right_pct(self, horizon: str) -> float | None:
        return self.stats[horizon].share(self.direction)

    def baseline_pct(self, horizon: str) -> float | None:
        """The share of all the pair's moments that moved in this group's direction (the coin flip)."""
        return self.baseline[horizon].share(self.direction)

    def edge_pp(self, horizon: str) -> float | None:
        """Right-share minus baseline share, in percentage points."""
        right, base = self.right_pct(horizon), self.baseline_pct(horizon)
        return None if right is None or base is None else right - base

    def as_dict(self) -> dict[str, Any]:
        return {
            **plain_fields(self, "stats", "baseline"),
            "horizons": {
                h: {
                    **{k: v for k, v in s.as_dict().items() if k not in ("count", "up_pct", "down_pct")},
                    "right_pct": self.right_pct(h),
                    "baseline_pct": self.baseline_pct(h),
                    "edge_pp": self.edge_pp(h),
                }
                for h, s in self.stats.items()
            },
        }


@dataclass
class Scorecard:
    """The whole result: every scored hint, the groups and every pair's baseline."""

    from_ms: int
    to_ms: int
    horizons: dict[str, int]
    hints: list[ScoredHint]
    groups: list[GroupScore]
    baselines: dict[tuple[str, str], dict[str, Stats]]
    moments: dict[tuple[str, str], list[Moment]] = field(repr=False)
    """Per pair, every baseline moment: (event time, price, forward return per horizon)."""
    rules: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": format_time(self.from_ms),
            "to": format_time(self.to_ms),
            "from_ms": self.from_ms,
            "to_ms": self.to_ms,
            "rules": self.rules,
            "horizons": dict(self.horizons),
            "groups": [g.as_dict() for g in self.groups],
            "baseline": [
                {
                    "coin": coin,
                    "vs": vs,
                    "moments": len(self.moments[(coin, vs)]),
                    "horizons": {h: s.as_dict() for h, s in stats.items()},
                }
                for (coin, vs), stats in sorted(self.baselines.items())
            ],
            "hints": [h.as_dict() for h in self.hints],
        }


def score(
    alerts: Iterable[Alert],
    series: Mapping[tuple[str, str], PriceSeries],
    from_ms: int,
    to_ms: int,
    horizons: Mapping[str, int] = DEFAULT_HORIZONS,
    rules: str = "",
) -> Scorecard:
    """Score every alert in ``[from_ms, to_ms]`` against its pair's prices, and every tick as baseline.

    ``series`` maps ``(coin, vs)`` to the pair's ticks: those of the range and, for the forward
    returns, those after it (as far as they exist). Alerts repeated (same id: a re-read batch)
    count once."""
    horizons = dict(horizons)
    hints = _score_hints(alerts, series, from_ms, to_ms, horizons)
    moments, baselines = _baselines(series, from_ms, to_ms, horizons)
    return Scorecard(from_ms, to_ms, horizons, hints, _groups(hints, baselines, horizons), baselines, moments, rules)


def _score_hints(
    alerts: Iterable[Alert],
    series: Mapping[tuple[str, str], PriceSeries],
    from_ms: int,
    to_ms: int,
    horizons: dict[str, int],
) -> list[ScoredHint]:
    """Each distinct alert (by id) in the range, with its entry price and forward returns, in time order."""
    seen: set[str] = set()
    hints: list[ScoredHint] = []
    for alert in sorted(alerts, key=lambda a: (a.event_time, a.coin, a.vs, a.rule, a.kind, a.window)):
        if alert.id in seen or not from_ms <= alert.event_time <= to_ms:
            continue
        seen.add(alert.id)
        prices = series.get((alert.coin, alert.vs))
        if prices is None:
            raise ValueError(f"no ticks of {alert.coin}:{alert.vs}, which alert {alert.id} is about")
        price = prices.price_at(alert.event_time)
        returns = {name: prices.forward_return(alert.event_time, ms) for name, ms in horizons.items()}
        assert price is not None  # forward_return raised otherwise
        hints.append(ScoredHint(alert, direction_of(alert), price, returns))
    return hints


def _baselines(
    series: Mapping[tuple[str, str], PriceSeries], from_ms: int, to_ms: int, horizons: dict[str, int]
) -> tuple[dict[tuple[str, str], list[Moment]], dict[tuple[str, str], dict[str, Stats]]]:
    """Every tick of each pair in the range as a moment, and their statistics per horizon."""
    moments: dict[tuple[str, str], list[Moment]] = {}
    baselines: dict[tuple[str, str], dict[str, Stats]] = {}
    for pair, prices in sorted(series.items()):
        lo, hi = bisect.bisect_left(prices.times, from_ms), bisect.bisect_right(prices.times, to_ms)
        rows = [
            (t, p, {name: prices.forward_return(t, ms) for name, ms in horizons.items()})
            for t, p in zip(prices.times[lo:hi], prices.prices[lo:hi], strict=True)
        ]
        if not rows:
            continue
        moments[pair] = rows
        baselines[pair] = {name: Stats.of(r[2][name] for r in rows) for name in horizons}
    return moments, baselines


def _groups(
    hints: list[ScoredHint], baselines: dict[tuple[str, str], dict[str, Stats]], horizons: dict[str, int]
) -> list[GroupScore]:
    """The hints grouped by pair, kind, rule, window and direction, each beside its pair's baseline."""
    grouped: dict[GroupKey, list[ScoredHint]] = {}
    for hint in hints:
        a = hint.alert
        grouped.setdefault((a.coin, a.vs, a.kind, a.rule, a.window, hint.direction), []).append(hint)
    return [
        GroupScore(
            coin=coin,
            vs=vs,
            kind=kind,
            rule=rule,
            window=window,
            direction=direction,  # type: ignore[arg-type]
            hints=len(members),
            stats={name: Stats.of(h.returns[name] for h in members) for name in horizons},
            baseline=baselines[(coin, vs)],
        )
        for (coin, vs, kind, rule, window, direction), members in sorted(grouped.items())
    ]


# --- the console table -----------------------------------------------------------------------

WARNING = (
    "Past hit rates are no promise: they describe this stretch of history only, forward returns of "
    "hints close together overlap, and small groups are mostly luck."
)


def _num(value: float | None, signed: bool = False, width: int = 7) -> str:
    if value is None:
        return "-".rjust(width)
    return (f"{value:+.2f}" if signed else f"{value:.2f}").rjust(width)


def format_table(card: Scorecard) -> str:
    """The scorecard as a plain-text table: one line per group and horizon, then the baselines."""
    out = [
        f"Signal scorecard {format_time(card.from_ms)} .. {format_time(card.to_ms)}"
        + (f" (rules: {card.rules})" if card.rules else ""),
        "Forward return of the price after each hint (median and quartiles, %), the share of hints the "
        "price followed (right %), and the same share over every tick of the coin (base %).",
        "",
    ]
    head = (
        f"{'pair':<16} {'kind':<10} {'rule':<10} {'window':<14} {'dir':<4} {'horizon':>7} {'hints':>6} "
        f"{'pending':>7} {'median%':>7} {'q1%':>7} {'q3%':>7} {'right%':>7} {'base%':>7} {'edge pp':>7}"
    )
    out += [head, "-" * len(head)]
    if not card.groups:
        out.append("(no hints in the range)")
    for g in card.groups:
        for name in card.horizons:
            s = g.stats[name]
            out.append(
                f"{g.coin + ':' + g.vs:<16} {g.kind:<10} {g.rule:<10} {g.window:<14} {g.direction:<4} {name:>7} "
                f"{g.hints:>6} {s.pending:>7} {_num(s.median_pct, True)} {_num(s.q1_pct, True)} "
                f"{_num(s.q3_pct, True)} {_num(g.right_pct(name))} {_num(g.baseline_pct(name))} "
                f"{_num(g.edge_pp(name), True)}"
            )
    out += ["", "Baseline: every tick of the coin in the range", ""]
    head = (
        f"{'pair':<16} {'horizon':>7} {'moments':>8} {'pending':>7} {'median%':>7} {'q1%':>7} {'q3%':>7} "
        f"{'up%':>7} {'down%':>7}"
    )
    out += [head, "-" * len(head)]
    for (coin, vs), stats in sorted(card.baselines.items()):
        for name, s in stats.items():
            out.append(
                f"{coin + ':' + vs:<16} {name:>7} {s.count:>8} {s.pending:>7} {_num(s.median_pct, True)} "
                f"{_num(s.q1_pct, True)} {_num(s.q3_pct, True)} {_num(s.up_pct)} {_num(s.down_pct)}"
            )
    out += ["", WARNING]
    return "\n".join(out)
