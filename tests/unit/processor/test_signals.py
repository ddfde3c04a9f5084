"""Drop/spike rules on window changes: thresholds, cooldown in event time, re-arm (hysteresis)."""

from __future__ import annotations

from typing import Any

import pytest

from processor.move_alerts import MoveRule, evaluate
from processor.windows import window_change
from tests.support.state import DictState

T0 = 1_700_000_000_000
MIN = 60_000
DROP = MoveRule("drop", "drop", 5.0, cooldown_ms=15 * MIN)
SPIKE = MoveRule("spike", "spike", 5.0, cooldown_ms=15 * MIN)


def change(end: int, first: float, last: float, high: float, low: float, key: str = "bitcoin:usd") -> dict[str, Any]:
    agg = {"start": end - 15 * MIN, "end": end, "first": first, "last": last, "high": high, "low": low, "ticks": 5}
    coin, _, vs = key.partition(":")
    return window_change(agg, coin, vs, "15m", 15 * MIN)


def test_window_change_measures_from_first_high_and_low() -> None:
    c = change(T0, first=100.0, last=93.0, high=104.0, low=92.0)
    assert (c["coin"], c["vs"], c["window"]) == ("bitcoin", "usd", "15m")
    assert c["change_pct"] == -7.0
    assert c["drawdown_pct"] == pytest.approx((93 - 104) / 104 * 100)
    assert c["runup_pct"] == pytest.approx((93 - 92) / 92 * 100)


def test_drop_fires_once_with_the_move_and_reference() -> None:
    state = DictState()
    assert evaluate(change(T0, 100, 96, 100, 96), [DROP, SPIKE], state) == []
    alerts = evaluate(change(T0 + MIN, 100, 94, 100, 94), [DROP, SPIKE], state)
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.kind, a.rule, a.coin, a.vs, a.event_time) == ("drop", "drop", "bitcoin", "usd", T0 + MIN)
    assert a.change_pct == -6.0 and a.reference_price == 100 and a.price == 94
    assert a.severity == "warning"
    assert a.message == "bitcoin fell 6.00% within 15m: 94.00 USD, from the window high of 100.00 USD"
    # still below the threshold a minute later: no second alert
    assert evaluate(change(T0 + 2 * MIN, 100, 93, 100, 93), [DROP, SPIKE], state) == []


def test_spike_and_critical_severity() -> None:
    alerts = evaluate(change(T0, 100, 111, 111, 100), [DROP, SPIKE], DictState())
    assert [(a.kind, a.severity) for a in alerts] == [("spike", "critical")]
    assert alerts[0].change_pct == 11.0


def test_cooldown_holds_even_when_rearmed() -> None:
    state = DictState()
    assert len(evaluate(change(T0, 100, 94, 100, 94), [DROP], state)) == 1
    evaluate(change(T0 + MIN, 100, 99, 100, 94), [DROP], state)  # eased: re-armed
    assert evaluate(change(T0 + 5 * MIN, 100, 90, 100, 90), [DROP], state) == []  # but within cooldown
    assert len(evaluate(change(T0 + 16 * MIN, 100, 90, 100, 90), [DROP], state)) == 1


def test_no_refire_after_cooldown_until_rearmed() -> None:
    state = DictState()
    assert len(evaluate(change(T0, 100, 94, 100, 94), [DROP], state)) == 1
    # 20 minutes later still 6% under the window high: same move, no new alert
    assert evaluate(change(T0 + 20 * MIN, 100, 94, 100, 94), [DROP], state) == []
    # eased to -2% (above half the threshold) re-arms; the next crossing fires
    assert evaluate(change(T0 + 21 * MIN, 100, 98, 100, 98), [DROP], state) == []
    assert len(evaluate(change(T0 + 22 * MIN, 100, 94.5, 100, 94.5), [DROP], state)) == 1


def test_one_move_alerts_once_across_windows_and_rules_are_independent() -> None:
    state = DictState()
    assert len(evaluate(change(T0, 100, 94, 100, 94), [DROP, SPIKE], state)) == 1
    other_window = window_change(
        {"start": 0, "end": T0 + MIN, "first": 100, "last": 93, "high": 100, "low": 93, "ticks": 3},
        "bitcoin",
        "usd",
        "1h",
        60 * MIN,
    )
    assert evaluate(other_window, [DROP], state) == []  # the same crash seen by a longer window
    assert [a.kind for a in evaluate(change(T0 + 2 * MIN, 93, 99, 99, 93), [DROP, SPIKE], state)] == ["spike"]


def test_rearm_needs_every_window_to_ease() -> None:
    state = DictState()
    long_window = lambda end, last: window_change(  # noqa: E731
        {
            "start": end - 60 * MIN,
            "end": end,
            "first": 100,
            "last": last,
            "high": 100,
            "low": min(last, 100),
            "ticks": 9,
        },
        "bitcoin",
        "usd",
        "1h",
        60 * MIN,
    )
    assert len(evaluate(change(T0, 100, 94, 100, 94), [DROP], state)) == 1
    evaluate(long_window(T0, 94), [DROP], state)
    evaluate(change(T0 + 20 * MIN, 94, 94, 94, 94), [DROP], state)  # the 15m window has forgotten the crash
    # ... but the 1h window still sees it: the same crash must not alert again
    assert evaluate(long_window(T0 + 21 * MIN, 93.9), [DROP], state) == []
    evaluate(long_window(T0 + 70 * MIN, 99), [DROP], state)  # now every window has eased: re-armed
    assert len(evaluate(change(T0 + 71 * MIN, 99, 93, 99, 93), [DROP], state)) == 1


def test_rule_limited_to_some_windows() -> None:
    only_1h = MoveRule("drop", "drop", 5.0, cooldown_ms=15 * MIN, windows=frozenset({"1h"}))
    assert evaluate(change(T0, 100, 94, 100, 94), [only_1h], DictState()) == []


def test_same_input_same_alert_id() -> None:
    a = evaluate(change(T0, 100, 94, 100, 94), [DROP], DictState())
    b = evaluate(change(T0, 100, 94, 100, 94), [DROP], DictState())
    assert a[0].id == b[0].id
    c = evaluate(change(T0 + 1, 100, 94, 100, 94), [DROP], DictState())
    assert c[0].id != a[0].id
