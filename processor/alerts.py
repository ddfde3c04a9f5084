"""Alert construction: every rule names each field it sets, and the id is derived in one place."""

from __future__ import annotations

from crypto_watcher.messages import Alert, AlertKind, Severity


def severity_of(move: float, threshold: float) -> Severity:
    """A move at least twice its rule's threshold is critical, any smaller one that fired a warning."""
    return "critical" if abs(move) >= 2 * threshold else "warning"


def make_alert(
    *,
    coin: str,
    vs: str,
    rule: str,
    kind: AlertKind,
    window: str,
    window_ms: int,
    event_time: int,
    change_pct: float,
    price: float,
    reference_price: float,
    threshold_pct: float | None,
    message: str,
    severity: Severity,
    indicator: float | None = None,
) -> Alert:
    """An alert with its id made from what it is about (``Alert.make_id``), so a replay or a
    restarted processor gives the same id and consumers can deduplicate on it.

    Keyword-only: a price and a reference price, or two windows, cannot trade places unseen."""
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
        reference_price=reference_price,
        threshold_pct=threshold_pct,
        indicator=indicator,
        event_time=event_time,
        severity=severity,
        message=message,
    )
