"""One way to show a price, so an alert's sentence and the notifier's lines around it agree.

Two formats in one console line ("57,041.49 USD (ref ...) - ... 57,041.486 USD") read as two
different prices; cents for prices of 1 and more, four significant digits below (a token at
0.001234 USD must not show as 0.00 USD).
"""

from __future__ import annotations

import math


def money(value: float, currency: str) -> str:
    """``56,983.10 USD``; prices below 1 keep four significant digits (``0.001234 USD``)."""
    if not math.isfinite(value) or value <= 0:
        return f"{value:g} {currency.upper()}"  # never a valid price; shown as it is, not hidden
    if value >= 1:
        text = f"{value:,.2f}"
    else:
        decimals = max(2, 3 - math.floor(math.log10(value)))
        text = f"{value:.{decimals}f}"
    return f"{text} {currency.upper()}"
