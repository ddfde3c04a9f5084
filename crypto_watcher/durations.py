"""Human durations ("90s", "15m", "1h", "1d") as used in configuration, window names and tags.

One parser and one formatter so that a window configured as ``15m`` is tagged ``15m`` in InfluxDB
and named ``15m`` in alerts, whatever spelling the user chose.
"""

from __future__ import annotations

import re

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration_ms(text: str | int | float) -> int:
    """Parse ``"15m"`` to 900000; bare numbers are seconds (the unit people mean in env vars)."""
    if isinstance(text, bool):
        raise ValueError(f"duration must be like '90s', '15m', '1h' or '1d', got {text!r}")
    if isinstance(text, int | float):
        if text <= 0:
            raise ValueError(f"duration must be positive, got {text!r}")
        return int(text * 1000)
    match = _PATTERN.match(text)
    if match is None:
        if re.fullmatch(r"\s*\d+(\.\d+)?\s*", text):
            return parse_duration_ms(float(text))
        raise ValueError(f"duration must be like '90s', '15m', '1h' or '1d', got {text!r}")
    value = float(match.group(1)) * _UNITS_MS[match.group(2)]
    if value <= 0:
        raise ValueError(f"duration must be positive, got {text!r}")
    return int(value)


def format_duration(ms: int) -> str:
    """The shortest exact spelling: 900000 -> ``15m``, 5400000 -> ``90m``, 1500 -> ``1500ms``."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
