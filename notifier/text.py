"""What a person reads: the title, body and console line of an alert.

Everything is built from the alert's own fields, never from the time it is delivered, so a retried
or re-sent notification reads exactly like the first one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from crypto_watcher.messages import Alert
from crypto_watcher.money import money
from crypto_watcher.times import ms_to_s

# What the reference price is for the rules that measure from a window extreme (processor rules).
_REFERENCE = {"drop": "window high", "spike": "window low"}
# Rules whose threshold is a percentage; others use their indicator's own unit (z-score, RSI level).
_PERCENT_RULES = {"drop", "spike"}


@dataclass(frozen=True)
class Notification:
    alert: Alert
    title: str
    body: str
    line: str


def iso_utc(ms: int) -> str:
    """``2026-01-01T00:00:00Z``; milliseconds only when the time has them."""
    spec = "seconds" if ms % 1000 == 0 else "milliseconds"
    return datetime.fromtimestamp(ms_to_s(ms), UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _rule(alert: Alert) -> str:
    """``rule drop, threshold 5%`` / ``rule rsi, threshold 70, indicator 75.3``: units depend on the rule."""
    parts = [f"rule {alert.rule}"]
    if alert.threshold_pct is not None:
        unit = "%" if alert.rule in _PERCENT_RULES else ""
        parts.append(f"threshold {alert.threshold_pct:g}{unit}")
    if alert.indicator is not None:
        parts.append(f"indicator {alert.indicator:.4g}")
    return ", ".join(parts)


def render(alert: Alert) -> Notification:
    pair = alert.key
    kind = alert.kind.replace("_", " ")
    change = f"{alert.change_pct:+.2f}%"
    reference = _REFERENCE.get(alert.rule, "reference")
    when = iso_utc(alert.event_time)
    price = money(alert.price, alert.vs)
    ref_price = money(alert.reference_price, alert.vs)
    title = f"[{alert.severity.upper()}] {pair} {kind} {change} in {alert.window}"
    body = "\n".join(
        [
            _one_line(alert.message),
            "",
            f"Pair: {pair}",
            f"Change: {change} in {alert.window} ({_rule(alert)})",
            f"Price: {price}",
            f"Reference: {ref_price} ({reference})",
            f"Window: {alert.window}",
            f"Severity: {alert.severity}",
            f"Time: {when}",
            f"Alert id: {alert.id}",
        ]
    )
    line = (
        f"{when} {alert.severity.upper():<8} {pair} {kind} {change} in {alert.window}: {price} (ref {ref_price})"
        f" - {_one_line(alert.message)} [id {alert.id}]"
    )
    return Notification(alert, title, body, line)
