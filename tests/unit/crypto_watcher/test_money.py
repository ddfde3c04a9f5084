"""One money format: an alert's sentence and the notifier's lines around it show a price alike."""

from __future__ import annotations

import math

import pytest

from crypto_watcher.money import money
from notifier.text import render
from processor.move_alerts import MoveRule, evaluate
from processor.windows import window_change
from tests.support.state import DictState

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (57_041.486, "57,041.49 USD"),
        (1.0, "1.00 USD"),
        (0.5, "0.5000 USD"),
        (0.001234, "0.001234 USD"),
        (0.0000123456, "0.00001235 USD"),
        (0.0, "0 USD"),
        (math.nan, "nan USD"),
    ],
)
def test_money_keeps_cents_above_one_and_four_digits_below(value: float, shown: str) -> None:
    assert money(value, "usd") == shown


@pytest.mark.parametrize("price", [57_041.486, 0.001234])
def test_the_console_line_shows_one_format_for_one_price(price: float) -> None:
    reference = price * 1.06
    agg = {
        "start": T0,
        "end": T0 + 15 * MIN,
        "first": reference,
        "last": price,
        "high": reference,
        "low": price,
        "ticks": 5,
    }
    (alert,) = evaluate(
        window_change(agg, "bitcoin", "usd", "15m", 15 * MIN),
        [MoveRule("drop", "drop", 5.0, cooldown_ms=15 * MIN)],
        DictState(),
    )
    line = render(alert).line
    # The notifier's own part and the processor's sentence inside it name the same two strings.
    assert line.count(money(price, "usd")) == 2 and line.count(money(reference, "usd")) == 2
