"""Candle alerts on each closed candle: volatility (z-score of the candle's return against the
previous ``baseline`` returns), crossover of fast and slow moving averages of closes, and RSI.

Call once per closed candle, in event-time order. Nothing here reads a clock, so a replay decides
exactly as the live run did. State (per pair, packed under ``processor.state.CANDLE_STATE``)
keeps the closes, returns, averages and RSI the rules need next time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from crypto_watcher.messages import Alert, AlertKind, Severity, pct_change
from crypto_watcher.money import money
from processor.alerts import make_alert, severity_of
from processor.indicators import ema_step, log_return, rsi_of, sma, wilder_step, zscore
from processor.rules import CrossoverSettings, RsiSettings, RuleConfig, VolatilitySettings
from processor.state import CANDLE_STATE, PackedState, StateLike

Zone = Literal["oversold", "overbought"]


def evaluate_candle(candle: Mapping[str, Any], config: RuleConfig, cooldown_ms: int, state: StateLike) -> list[Alert]:
    """Candle alerts for one *closed* candle; call once per candle, in event-time order."""
    cache = PackedState(state, CANDLE_STATE)
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


def _candle_alert(
    candle: Mapping[str, Any],
    *,
    rule: str,
    kind: AlertKind,
    window: str,
    change_pct: float,
    reference_price: float,
    threshold_pct: float | None,
    message: str,
    severity: Severity,
    indicator: float,
) -> Alert:
    """An alert about a closed candle: its pair, interval, end (the event time) and close (the price)."""
    return make_alert(
        coin=candle["coin"],
        vs=candle["vs"],
        rule=rule,
        kind=kind,
        window=window,
        window_ms=candle["interval_ms"],
        event_time=int(candle["end"]),
        change_pct=change_pct,
        price=candle["close"],
        reference_price=reference_price,
        threshold_pct=threshold_pct,
        message=message,
        severity=severity,
        indicator=indicator,
    )


def _cooled(state: StateLike, slot: str, event_time: int, cooldown_ms: int) -> bool:
    last = state.get(f"fired:{slot}")
    return last is None or event_time - int(last) >= cooldown_ms


def _volatility(
    candle: Mapping[str, Any], cfg: VolatilitySettings, cooldown: int, prev_close: float | None, state: StateLike
) -> Alert | None:
    if prev_close is None:
        return None
    ret = log_return(candle["close"], prev_close)
    returns: list[float] = state.get("returns", [])
    alert = None
    if len(returns) >= cfg.min_samples:
        z = zscore(ret, returns)
        event_time = int(candle["end"])
        if abs(z) >= cfg.z_threshold and _cooled(state, "volatility", event_time, cooldown):
            state.set("fired:volatility", event_time)
            alert = _volatility_alert(candle, cfg, prev_close, z, len(returns))
    returns = [*returns, ret][-cfg.baseline :]
    state.set("returns", returns)
    return alert


def _volatility_alert(
    candle: Mapping[str, Any], cfg: VolatilitySettings, prev_close: float, z: float, baseline: int
) -> Alert:
    change = pct_change(candle["close"], prev_close)
    direction = "jumped" if change > 0 else "plunged"
    return _candle_alert(
        candle,
        rule="volatility",
        kind="volatility",
        window=candle["interval"],
        change_pct=change,
        reference_price=prev_close,
        threshold_pct=cfg.z_threshold,
        message=f"{candle['coin']} {direction} {abs(change):.2f}% in one {candle['interval']} candle, "
        f"{abs(z):.1f} standard deviations beyond its last {baseline} candles",
        severity=severity_of(z, cfg.z_threshold),
        indicator=round(z, 6),
    )


def _averages(closes: list[float], cfg: CrossoverSettings, state: StateLike) -> tuple[float, float] | None:
    if cfg.average == "sma":
        if len(closes) < cfg.slow:
            return None
        return sma(closes, cfg.fast), sma(closes, cfg.slow)
    close = closes[-1]
    fast = ema_step(state.get("ema_fast"), close, cfg.fast)
    slow = ema_step(state.get("ema_slow"), close, cfg.slow)
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
    average = cfg.average.upper()
    return _candle_alert(
        candle,
        rule="crossover",
        kind=kind,
        window=f"{name}@{candle['interval']}",
        change_pct=gap,
        reference_price=slow,
        threshold_pct=None,
        message=f"{candle['coin']}: the {cfg.fast}-candle {average} crossed {verb} the {cfg.slow}-candle "
        f"{average} at {money(candle['close'], candle['vs'])} "
        f"({'buy' if gap > 0 else 'sell'} hint, not advice)",
        severity="info",
        indicator=gap,
    )


def _rsi_value(delta: float, period: int, state: StateLike) -> float | None:
    """Wilder's averages after one more close-to-close move, and the RSI once ``period`` moves seeded them."""
    gain, loss = max(delta, 0.0), max(-delta, 0.0)
    seen = state.get("rsi_n", 0) + 1
    state.set("rsi_n", seen)
    if seen <= period:  # seeding: the plain average of the first `period` moves
        state.set("rsi_gain", state.get("rsi_gain", 0.0) + gain / period)
        state.set("rsi_loss", state.get("rsi_loss", 0.0) + loss / period)
        if seen < period:
            return None
        avg_gain, avg_loss = state.get("rsi_gain"), state.get("rsi_loss")
    else:
        avg_gain = wilder_step(state.get("rsi_gain"), gain, period)
        avg_loss = wilder_step(state.get("rsi_loss"), loss, period)
        state.set("rsi_gain", avg_gain)
        state.set("rsi_loss", avg_loss)
    return rsi_of(avg_gain, avg_loss)


def _entered_zone(rsi: float, cfg: RsiSettings, state: StateLike) -> Zone | None:
    """The zone (oversold/overbought) the RSI has just entered while armed; re-arms once back at 50."""
    zone: Zone | None = "oversold" if rsi < cfg.oversold else "overbought" if rsi > cfg.overbought else None
    last = state.get("rsi_zone")
    if zone is None:
        if (last == "oversold" and rsi >= 50) or (last == "overbought" and rsi <= 50):
            state.set("rsi_armed", True)
        return None
    if not state.get("rsi_armed", True) and last == zone:
        return None
    state.set("rsi_armed", False)
    state.set("rsi_zone", zone)
    return zone


def _rsi(candle: Mapping[str, Any], cfg: RsiSettings, prev_close: float | None, state: StateLike) -> Alert | None:
    """Wilder's RSI over candle closes; fires on entering oversold/overbought, re-arms at 50."""
    if prev_close is None:
        return None
    rsi = _rsi_value(candle["close"] - prev_close, cfg.period, state)
    zone = _entered_zone(rsi, cfg, state) if rsi is not None else None
    if rsi is None or zone is None:
        return None
    kind: AlertKind = "buy_hint" if zone == "oversold" else "sell_hint"
    return _candle_alert(
        candle,
        rule="rsi",
        kind=kind,
        window=f"rsi{cfg.period}@{candle['interval']}",
        change_pct=pct_change(candle["close"], prev_close),
        reference_price=prev_close,
        threshold_pct=cfg.oversold if zone == "oversold" else cfg.overbought,
        message=f"{candle['coin']} is {zone}: RSI({cfg.period}) {rsi:.1f} on {candle['interval']} candles at "
        f"{money(candle['close'], candle['vs'])} ({'buy' if kind == 'buy_hint' else 'sell'} hint, not advice)",
        severity="info",
        indicator=round(rsi, 6),
    )
