"""Move alerts (drop, spike) on every sliding-window change: how far the newest price is from the
window's high (drop) or low (spike).

Nothing here reads a clock: cooldowns run on event time, so a replay decides exactly as the live
run did. State (per pair, packed under ``processor.state.MOVE_STATE``) keeps each rule's last
firing and its re-arm flags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from crypto_watcher.messages import Alert
from crypto_watcher.money import money
from processor.alerts import make_alert, severity_of
from processor.long_windows import is_long
from processor.rules import RuleSet
from processor.state import MOVE_STATE, StateLike


@dataclass(frozen=True)
class MoveRule:
    """Alert when a pair moves ``threshold_pct`` within a window from the window's extreme.

    A drop is measured from the window's high to the newest price (a fall that follows a rise
    inside the window still counts); a spike from the window's low. After firing, the rule is quiet
    for ``cooldown_ms`` of event time *across all windows* (one crash is one alert, not one per
    window) and until the move has eased below ``rearm_ratio`` x threshold in every window
    (hysteresis), so a price hovering at the threshold cannot fire again and again. The hour
    windows and the long ones (over an hour) re-arm apart: each family once all its windows eased.
    """

    name: str
    kind: Literal["drop", "spike"]
    threshold_pct: float
    cooldown_ms: int
    rearm_ratio: float = 0.5
    windows: frozenset[str] | None = None


def move_rules(ruleset: RuleSet, coin: str) -> list[MoveRule]:
    """The drop and spike rules ``ruleset`` sets for ``coin`` (none, one or both)."""
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


def evaluate(change: Mapping[str, Any], rules: list[MoveRule], state: StateLike) -> list[Alert]:
    """Move alerts this window change triggers; ``state`` (per key) keeps cooldowns and re-arm flags."""
    return evaluate_changes([change], rules, state)


def evaluate_changes(changes: Sequence[Mapping[str, Any]], rules: list[MoveRule], state: StateLike) -> list[Alert]:
    """:func:`evaluate` on each change in turn (one tick's windows), reading and writing state once.

    The per-tick step hands in a :class:`processor.state.TickState`, where this dict is part of
    the one value the tick writes anyway: it is written back whole, with no check for changes."""
    values: dict[str, Any] = state.get(MOVE_STATE) or {}
    alerts: list[Alert] = []
    for change in changes:
        alerts += _evaluate(change, rules, values)
    state.set(MOVE_STATE, values)
    return alerts


def _measure(change: Mapping[str, Any], rule: MoveRule) -> tuple[float, float, bool, bool]:
    """The rule's move in this window, its reference price, and whether it crossed / eased."""
    if rule.kind == "drop":
        move = change["drawdown_pct"]
        return move, change["high"], move <= -rule.threshold_pct, move > -rule.threshold_pct * rule.rearm_ratio
    move = change["runup_pct"]
    return move, change["low"], move >= rule.threshold_pct, move < rule.threshold_pct * rule.rearm_ratio


def _family(rule: MoveRule, change: Mapping[str, Any]) -> str:
    """The re-arm flags' owner: the hour windows, or the long ones (``<rule>@long``).

    A crash keeps a 24h window engaged all day; if the hour windows had to wait for it to ease too,
    a second crash hours later would go unreported."""
    return f"{rule.name}@long" if is_long(int(change["window_ms"])) else rule.name


def _disarmed(family: str, window: str, eased: bool, values: dict[str, Any]) -> bool:
    """Record whether the move holds in ``window``; the family re-arms once it has eased in *every*
    one of its windows: a 1h window keeps seeing a crash for an hour after the 5m window forgot
    it, and that is still the same crash. (``values``: the packed state's dict, used directly on
    this per-tick, per-window, per-rule path.)"""
    engaged: dict[str, bool] = values.setdefault(f"engaged:{family}", {})
    engaged[window] = not eased
    disarmed_key = f"disarmed:{family}"
    if values.get(disarmed_key, False):
        if any(engaged.values()):
            return True
        values[disarmed_key] = False
    return False


def _evaluate(change: Mapping[str, Any], rules: list[MoveRule], values: dict[str, Any]) -> list[Alert]:
    alerts = []
    end = int(change["end"])
    window = change["window"]
    for rule in rules:
        if rule.windows is not None and window not in rule.windows:
            continue
        move, reference, crossed, eased = _measure(change, rule)
        if _disarmed(_family(rule, change), window, eased, values) or not crossed:
            continue
        last_fired = values.get(f"fired:{rule.name}")
        if last_fired is not None and end - int(last_fired) < rule.cooldown_ms:
            continue
        # One move, one alert: the cooldown is the rule's, and firing disarms both families (the
        # hour windows seeing a crash first, then the 4h window, is still that crash).
        values[f"fired:{rule.name}"] = end
        values[f"disarmed:{rule.name}"] = True
        values[f"disarmed:{rule.name}@long"] = True
        alerts.append(_move_alert(change, rule, move, reference))
    return alerts


def _move_alert(change: Mapping[str, Any], rule: MoveRule, move: float, reference: float) -> Alert:
    verb, where = ("fell", "high") if rule.kind == "drop" else ("rose", "low")
    coin, vs, window, last = change["coin"], change["vs"], change["window"], change["last"]
    message = (
        f"{coin} {verb} {abs(move):.2f}% within {window}: {money(last, vs)}, "
        f"from the window {where} of {money(reference, vs)}"
    )
    return make_alert(
        coin=coin,
        vs=vs,
        rule=rule.name,
        kind=rule.kind,
        window=window,
        window_ms=change["window_ms"],
        event_time=int(change["end"]),
        change_pct=move,
        price=last,
        reference_price=reference,
        threshold_pct=rule.threshold_pct,
        message=message,
        severity=severity_of(move, rule.threshold_pct),
    )
