"""Alerts as the notifier tests need them: a recent, valid one with any field replaced."""

from __future__ import annotations

import time

from crypto_watcher.messages import Alert

SECRET = "s3cretPassw0rd"


def make_alert(coin: str = "bitcoin", minutes_ago: int = 5, severity: str = "warning", **fields: object) -> Alert:
    event_time = (int(time.time()) - minutes_ago * 60) * 1000
    values: dict[str, object] = {
        "id": Alert.make_id(coin, "usd", "drop", "drop", "15m", event_time),
        "coin": coin,
        "vs": "usd",
        "kind": "drop",
        "rule": "drop",
        "window": "15m",
        "window_ms": 900_000,
        "change_pct": -5.04,
        "price": 56_983.0,
        "reference_price": 60_008.0,
        "threshold_pct": 5.0,
        "event_time": event_time,
        "severity": severity,
        "message": f"{coin} fell 5.04% within 15m: 56,983 USD, from the window high of 60,008 USD",
    }
    values.update(fields)
    return Alert.create(**values)
