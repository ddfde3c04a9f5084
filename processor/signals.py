"""From window aggregates to changes, candles and alerts: pure functions over values and state.

The Quix pipeline calls these with values and a per-key state object; tests call them directly
with ``DictState``. Nothing here reads a clock: every decision uses event time, so a replay decides
exactly as the live run did.

Two families of signal:
- *move* rules (drop, spike) on every sliding-window emission: how far the newest price is from the
  window's high (drop) or low (spike);
- *candle* rules on each closed candle: volatility (z-score of the candle's return against the
  previous ``baseline`` returns), crossover of fast and slow moving averages of closes, and RSI.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from crypto_watcher.durations import format_duration
from crypto_watcher.messages import Alert, AlertKind, pct_change
from processor.rules import CrossoverSettings, RsiSettings, RuleConfig, RuleSet, VolatilitySettings


class StateLike(Protocol):
    """The part of Quix's per-key ``State`` the rules use (a dict-backed one serves in tests)."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...


class DictState:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


_MISSING = object()

MOVE_STATE = "signals:moves"
"""State key of the move rules' cooldowns and re-arm flags (one dict per pair)."""
MOVE_STATE_LEGACY = tuple(f"{what}:{rule}" for rule in ("drop", "spike") for what in ("engaged", "disarmed", "fired"))
CANDLE_STATE = "signals:candles"
"""State key of the candle rules' history: closes, returns, averages, RSI (one dict per pair)."""
CANDLE_STATE_LEGACY = (
    "closes",
    "returns",
    "fired:volatility",
    "ema_fast",
    "ema_slow",
    "cross_side",
    "rsi_n",
    "rsi_gain",
    "rsi_loss",
    "rsi_armed",
    "rsi_zone",
)


def _copy(value: Any) -> Any:
    # Shallow copies suffice to tell a change: stored dicts and lists hold only scalars.
    return value.copy() if isinstance(value, dict | list) else value


class PackedState:
    """A group of values a rule family keeps per pair, stored as one dict under one state key.

    Quix serialises the key (and the value) on every state access, and the rules use up to eleven
    values per candle and several per window change: as one dict that is one read when the group
    is first used and one write in :meth:`flush`, only if something changed. The rules see the same
    ``get``/``set`` of named values as before. State written by earlier versions, one key per value
    (``legacy``), is read once and moved into the dict, so an upgraded processor carries on exactly
    where the old one stopped.
    """

    __slots__ = ("_key", "_legacy", "_moved", "_original", "_state", "_values")

    def __init__(self, state: StateLike, key: str, legacy: Sequence[str] = ()) -> None:
        self._state = state
        self._key = key
        self._legacy = legacy
        self._values: dict[str, Any] | None = None
        self._original: dict[str, Any] = {}
        self._moved: list[str] = []

    def _load(self) -> dict[str, Any]:
        packed: dict[str, Any] | None = self._state.get(self._key)
        if packed is None:
            packed = {}
            for name in self._legacy:
                value = self._state.get(name, _MISSING)
                if value is not _MISSING:
                    packed[name] = value
                    self._moved.append(name)
        self._values = packed
        self._original = {k: _copy(v) for k, v in packed.items()}
        return packed

    def get(self, key: str, default: Any = None) -> Any:
        values = self._values if self._values is not None else self._load()
        return values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        values = self._values if self._values is not None else self._load()
        values[key] = value

    def delete(self, key: str) -> None:
        values = self._values if self._values is not None else self._load()
        values.pop(key, None)

    def flush(self) -> None:
        values = self._values
        if values is None:
            return
        original = self._original
        changed = values.keys() != original.keys() or any(
            type(v) is not type(original[k]) or v != original[k] for k, v in values.items()
        )
        if changed or self._moved:
            self._state.set(self._key, values)
            self._original = {k: _copy(v) for k, v in values.items()}
        for name in self._moved:
            self._state.delete(name)
        self._moved = []


@dataclass(frozen=True)
class MoveRule:
    """Alert when a pair moves ``threshold_pct`` within a window from the window's extreme.

    A drop is measured from the window's high to the newest price (a fall that follows a rise
    inside the window still counts); a spike from the window's low. After firing, the rule is quiet
    for ``cooldown_ms`` of event time *across all windows* (one crash is one alert, not one per
    window) and until the move has eased below ``rearm_ratio`` x threshold in every window
    (hysteresis), so a price hovering at the threshold cannot fire again and again.
    """

    name: str
    kind: Literal["drop", "spike"]
    threshold_pct: float
    cooldown_ms: int
    rearm_ratio: float = 0.5
    windows: frozenset[str] | None = None


def move_rules(ruleset: RuleSet, coin: str) -> list[MoveRule]:
    config = ruleset.for_coin(coin)
    out = []
    for kind in ("drop", "spike"):
        settings = getattr(config, kind)
        if settings is None:
            continue
        out.append(
            MoveRule(
                name=kind,
                kind=kind,
                threshold_pct=settings.threshold_pct,
                cooldown_ms=ruleset.cooldown(coin, settings.cooldown),
                rearm_ratio=settings.rearm_ratio,
                windows=frozenset(settings.windows) if settings.windows else None,
            )
        )
    return out


def window_change(agg: Mapping[str, Any], key: str, window: str, window_ms: int) -> dict[str, Any]:
    """The change record for one sliding-window result (``end`` is the newest tick's event time)."""
    coin, _, vs = key.partition(":")
    first, last, high, low = agg["first"], agg["last"], agg["high"], agg["low"]
    return {
        "coin": coin,
        "vs": vs,
        "window": window,
        "window_ms": window_ms,
        "start": agg["start"],
        "end": agg["end"],
        "first": first,
        "last": last,
        "high": high,
        "low": low,
        "ticks": agg["ticks"],
        "change_pct": pct_change(last, first),
        "drawdown_pct": pct_change(last, high),
        "runup_pct": pct_change(last, low),
    }


def _money(value: float, vs: str) -> str:
    return f"{value:,.8g} {vs.upper()}"


def _alert(
    coin: str,
    vs: str,
    rule: str,
    kind: AlertKind,
    window: str,
    window_ms: int,
    event_time: int,
    change_pct: float,
    price: float,
    reference: float,
    threshold: float | None,
    message: str,
    severity: Literal["info", "warning", "critical"],
    indicator: float | None = None,
) -> Alert:
    return Alert(
        id=Alert.make_id(coin, vs, rule, kind, window, event_time),
        coin=coin,
        vs=vs,
        kind=kind,
        rule=rule,
        window=window,
        window_ms=window_ms,
        change_pct=change_pct,
        price=price,
        reference_price=reference,
        threshold_pct=threshold,
        indicator=indicator,
        event_time=event_time,
        severity=severity,
        message=message,
    )


def evaluate(change: Mapping[str, Any], rules: list[MoveRule], state: StateLike) -> list[Alert]:
    """Move alerts this window change triggers; ``state`` (per key) keeps cooldowns and re-arm flags."""
    return evaluate_changes([change], rules, state)


def evaluate_changes(changes: Sequence[Mapping[str, Any]], rules: list[MoveRule], state: StateLike) -> list[Alert]:
    """:func:`evaluate` on each change in turn (one tick's windows), reading and writing state once."""
    cache = PackedState(state, MOVE_STATE, MOVE_STATE_LEGACY)
    alerts: list[Alert] = []
    for change in changes:
        alerts += _evaluate(change, rules, cache)
    cache.flush()
    return alerts


def _evaluate(change: Mapping[str, Any], rules: list[MoveRule], state: StateLike) -> list[Alert]:
    alerts = []
    end = int(change["end"])
    window = change["window"]
    for rule in rules:
        if rule.windows is not None and window not in rule.windows:
            continue
        if rule.kind == "drop":
            move, reference = change["drawdown_pct"], change["high"]
            crossed = move <= -rule.threshold_pct
            eased = move > -rule.threshold_pct * rule.rearm_ratio
        else:
            move, reference = change["runup_pct"], change["low"]
            crossed = move >= rule.threshold_pct
            eased = move < rule.threshold_pct * rule.rearm_ratio
        # Re-arm only once the move has eased in *every* window: a 1h window keeps seeing a crash
        # for an hour after the 5m window forgot it, and that is still the same crash.
        engaged: dict[str, bool] = state.get(f"engaged:{rule.name}", {})
        engaged[window] = not eased
        state.set(f"engaged:{rule.name}", engaged)
        disarmed = state.get(f"disarmed:{rule.name}", False)
        if disarmed and not any(engaged.values()):
            state.set(f"disarmed:{rule.name}", False)
            disarmed = False
        if not crossed or disarmed:
            continue
        last_fired = state.get(f"fired:{rule.name}")
        if last_fired is not None and end - int(last_fired) < rule.cooldown_ms:
            continue
        state.set(f"fired:{rule.name}", end)
        state.set(f"disarmed:{rule.name}", True)
        verb, where = ("fell", "high") if rule.kind == "drop" else ("rose", "low")
        vs = change["vs"]
        alerts.append(
            _alert(
                change["coin"],
                vs,
                rule.name,
                rule.kind,
                window,
                change["window_ms"],
                end,
                move,
                change["last"],
                reference,
                rule.threshold_pct,
                f"{change['coin']} {verb} {abs(move):.2f}% within {window}: {_money(change['last'], vs)}, "
                f"from the window {where} of {_money(reference, vs)}",
                "critical" if abs(move) >= 2 * rule.threshold_pct else "warning",
            )
        )
    return alerts


@functools.cache
def _label(ms: int) -> str:
    return format_duration(ms)


def candle_record(agg: Mapping[str, Any], key: str, interval_ms: int) -> dict[str, Any]:
    coin, _, vs = key.partition(":")
    return {
        "coin": coin,
        "vs": vs,
        "interval": _label(interval_ms),
        "interval_ms": interval_ms,
        "start": agg["start"],
        "end": agg["end"],
        "open": agg["open"],
        "high": agg["high"],
        "low": agg["low"],
        "close": agg["close"],
        "ticks": agg["ticks"],
    }


def _cooled(state: StateLike, slot: str, event_time: int, cooldown_ms: int) -> bool:
    last = state.get(f"fired:{slot}")
    return last is None or event_time - int(last) >= cooldown_ms


def _volatility(
    candle: Mapping[str, Any], cfg: VolatilitySettings, cooldown: int, prev_close: float | None, state: StateLike
) -> Alert | None:
    if prev_close is None:
        return None
    ret = math.log(candle["close"] / prev_close)
    returns: list[float] = state.get("returns", [])
    alert = None
    if len(returns) >= cfg.min_samples:
        mean = sum(returns) / len(returns)
        std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
        z = (ret - mean) / std if std > 0 else 0.0
        event_time = int(candle["end"])
        if abs(z) >= cfg.z_threshold and _cooled(state, "volatility", event_time, cooldown):
            state.set("fired:volatility", event_time)
            change = pct_change(candle["close"], prev_close)
            direction = "jumped" if change > 0 else "plunged"
            alert = _alert(
                candle["coin"],
                candle["vs"],
                "volatility",
                "volatility",
                candle["interval"],
                candle["interval_ms"],
                event_time,
                change,
                candle["close"],
                prev_close,
                cfg.z_threshold,
                f"{candle['coin']} {direction} {abs(change):.2f}% in one {candle['interval']} candle, "
                f"{abs(z):.1f} standard deviations beyond its last {len(returns)} candles",
                "critical" if abs(z) >= 2 * cfg.z_threshold else "warning",
                indicator=round(z, 6),
            )
    returns = [*returns, ret][-cfg.baseline :]
    state.set("returns", returns)
    return alert


def _averages(closes: list[float], cfg: CrossoverSettings, state: StateLike) -> tuple[float, float] | None:
    if cfg.average == "sma":
        if len(closes) < cfg.slow:
            return None
        return sum(closes[-cfg.fast :]) / cfg.fast, sum(closes[-cfg.slow :]) / cfg.slow
    close = closes[-1]
    fast_prev, slow_prev = state.get("ema_fast"), state.get("ema_slow")
    a_fast, a_slow = 2 / (cfg.fast + 1), 2 / (cfg.slow + 1)
    fast = close if fast_prev is None else fast_prev + a_fast * (close - fast_prev)
    slow = close if slow_prev is None else slow_prev + a_slow * (close - slow_prev)
    state.set("ema_fast", fast)
    state.set("ema_slow", slow)
    return (fast, slow) if len(closes) >= cfg.slow else None  # warm-up: the slow EMA needs history


def _crossover(
    candle: Mapping[str, Any], cfg: CrossoverSettings, closes: list[float], state: StateLike
) -> Alert | None:
    averages = _averages(closes, cfg, state)
    if averages is None:
        return None
    fast, slow = averages
    gap = pct_change(fast, slow)
    side = state.get("cross_side")
    new_side = "above" if gap > cfg.min_gap_pct else "below" if gap < -cfg.min_gap_pct else side
    state.set("cross_side", new_side)
    if side is None or new_side == side:
        return None  # the first side seen is a starting point, not a crossing
    kind: AlertKind = "buy_hint" if gap > 0 else "sell_hint"
    name = f"{cfg.average}{cfg.fast}/{cfg.slow}"
    verb = "above" if gap > 0 else "below"
    return _alert(
        candle["coin"],
        candle["vs"],
        "crossover",
        kind,
        f"{name}@{candle['interval']}",
        candle["interval_ms"],
        int(candle["end"]),
        gap,
        candle["close"],
        slow,
        None,
        f"{candle['coin']}: the {cfg.fast}-candle {cfg.average.upper()} crossed {verb} the {cfg.slow}-candle "
        f"{cfg.average.upper()} at {_money(candle['close'], candle['vs'])} "
        f"({'buy' if gap > 0 else 'sell'} hint, not advice)",
        "info",
        indicator=gap,
    )


def _rsi(candle: Mapping[str, Any], cfg: RsiSettings, prev_close: float | None, state: StateLike) -> Alert | None:
    """Wilder's RSI over candle closes; fires on entering oversold/overbought, re-arms at 50."""
    if prev_close is None:
        return None
    delta = candle["close"] - prev_close
    gain, loss = max(delta, 0.0), max(-delta, 0.0)
    seen = state.get("rsi_n", 0) + 1
    state.set("rsi_n", seen)
    if seen <= cfg.period:
        state.set("rsi_gain", state.get("rsi_gain", 0.0) + gain / cfg.period)
        state.set("rsi_loss", state.get("rsi_loss", 0.0) + loss / cfg.period)
        if seen < cfg.period:
            return None
        avg_gain, avg_loss = state.get("rsi_gain"), state.get("rsi_loss")
    else:
        avg_gain = (state.get("rsi_gain") * (cfg.period - 1) + gain) / cfg.period
        avg_loss = (state.get("rsi_loss") * (cfg.period - 1) + loss) / cfg.period
        state.set("rsi_gain", avg_gain)
        state.set("rsi_loss", avg_loss)
    if avg_gain == 0 and avg_loss == 0:
        rsi = 50.0  # no movement at all: neutral, not "overbought"
    else:
        rsi = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    zone = "oversold" if rsi < cfg.oversold else "overbought" if rsi > cfg.overbought else None
    armed = state.get("rsi_armed", True)
    if zone is None:
        if (state.get("rsi_zone") == "oversold" and rsi >= 50) or (state.get("rsi_zone") == "overbought" and rsi <= 50):
            state.set("rsi_armed", True)
        return None
    if not armed and state.get("rsi_zone") == zone:
        return None
    state.set("rsi_armed", False)
    state.set("rsi_zone", zone)
    kind: AlertKind = "buy_hint" if zone == "oversold" else "sell_hint"
    level = cfg.oversold if zone == "oversold" else cfg.overbought
    return _alert(
        candle["coin"],
        candle["vs"],
        "rsi",
        kind,
        f"rsi{cfg.period}@{candle['interval']}",
        candle["interval_ms"],
        int(candle["end"]),
        pct_change(candle["close"], prev_close),
        candle["close"],
        prev_close,
        level,
        f"{candle['coin']} is {zone}: RSI({cfg.period}) {rsi:.1f} on {candle['interval']} candles at "
        f"{_money(candle['close'], candle['vs'])} ({'buy' if kind == 'buy_hint' else 'sell'} hint, not advice)",
        "info",
        indicator=round(rsi, 6),
    )


def evaluate_candle(candle: Mapping[str, Any], config: RuleConfig, cooldown_ms: int, state: StateLike) -> list[Alert]:
    """Candle alerts for one *closed* candle; call once per candle, in event-time order."""
    cache = PackedState(state, CANDLE_STATE, CANDLE_STATE_LEGACY)
    alerts = _evaluate_candle(candle, config, cooldown_ms, cache)
    cache.flush()
    return alerts


def _evaluate_candle(candle: Mapping[str, Any], config: RuleConfig, cooldown_ms: int, state: StateLike) -> list[Alert]:
    needed = max(
        config.crossover.slow if config.crossover else 0,
        2,
    )
    closes: list[float] = state.get("closes", [])
    prev_close = closes[-1] if closes else None
    closes = [*closes, candle["close"]][-needed:]
    state.set("closes", closes)
    alerts: list[Alert | None] = []
    if config.volatility is not None:
        cooldown = config.volatility.cooldown or cooldown_ms
        alerts.append(_volatility(candle, config.volatility, cooldown, prev_close, state))
    if config.crossover is not None:
        alerts.append(_crossover(candle, config.crossover, closes, state))
    if config.rsi is not None:
        alerts.append(_rsi(candle, config.rsi, prev_close, state))
    return [a for a in alerts if a is not None]
