"""From a window's aggregate to a percent change, and from a change to an alert: pure functions.

The Quix pipeline calls these with values and a state object; tests call them directly. Nothing
here reads a clock: every decision uses event time, so a replay decides exactly as the live run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from crypto_watcher.messages import Alert, pct_change


class StateLike(Protocol):
    """The part of Quix's per-key ``State`` the rules use (a dict-backed one serves in tests)."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...


class DictState:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


@dataclass(frozen=True)
class MoveRule:
    """Alert when a pair moves ``threshold_pct`` within ``window`` from the window's extreme.

    A drop is measured from the window's high to the newest price (a fall that follows a rise
    inside the window still counts); a spike from the window's low. After firing, the rule waits
    ``cooldown_ms`` of event time and until the move has eased below ``rearm_ratio`` x threshold
    (hysteresis), so a price hovering at the threshold cannot fire again and again.
    """

    name: str
    kind: Literal["drop", "spike"]
    threshold_pct: float
    cooldown_ms: int
    rearm_ratio: float = 0.5


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


def _describe(change: Mapping[str, Any], kind: str, move: float, reference: float) -> str:
    verb = "fell" if kind == "drop" else "rose"
    where = "high" if kind == "drop" else "low"
    vs = change["vs"].upper()
    return (
        f"{change['coin']} {verb} {abs(move):.2f}% within {change['window']}: "
        f"{change['last']:,.8g} {vs}, from the window {where} of {reference:,.8g} {vs}"
    )


def evaluate(change: Mapping[str, Any], rules: list[MoveRule], state: StateLike) -> list[Alert]:
    """Alerts this change triggers; ``state`` (per key) remembers cooldowns and re-arm flags."""
    alerts = []
    end = int(change["end"])
    for rule in rules:
        if rule.kind == "drop":
            move, reference = change["drawdown_pct"], change["high"]
            crossed = move <= -rule.threshold_pct
            eased = move > -rule.threshold_pct * rule.rearm_ratio
        else:
            move, reference = change["runup_pct"], change["low"]
            crossed = move >= rule.threshold_pct
            eased = move < rule.threshold_pct * rule.rearm_ratio
        slot = f"{rule.name}:{change['window']}"
        last_fired = state.get(f"fired:{slot}")
        disarmed = state.get(f"disarmed:{slot}", False)
        if disarmed and eased:
            state.set(f"disarmed:{slot}", False)
            disarmed = False
        if not crossed or disarmed:
            continue
        if last_fired is not None and end - int(last_fired) < rule.cooldown_ms:
            continue
        state.set(f"fired:{slot}", end)
        state.set(f"disarmed:{slot}", True)
        severity: Literal["warning", "critical"] = "critical" if abs(move) >= 2 * rule.threshold_pct else "warning"
        alerts.append(
            Alert(
                id=Alert.make_id(change["coin"], change["vs"], rule.name, rule.kind, change["window"], end),
                coin=change["coin"],
                vs=change["vs"],
                kind=rule.kind,
                rule=rule.name,
                window=change["window"],
                window_ms=change["window_ms"],
                change_pct=move,
                price=change["last"],
                reference_price=reference,
                threshold_pct=rule.threshold_pct,
                event_time=end,
                severity=severity,
                message=_describe(change, rule.kind, move, reference),
            )
        )
    return alerts
