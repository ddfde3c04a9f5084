"""Human durations ("90s", "15m", "1h", "1d") as used in configuration, window names and tags.

One parser and one formatter so that a window configured as ``15m`` is tagged ``15m`` in InfluxDB
and named ``15m`` in alerts, whatever spelling the user chose; and one set of pydantic types
(``Duration``, ...) that every settings model and the rules file declare their durations with, so
``CW_COOLDOWN=15m`` and ``cooldown: 15m`` in a rules file are read by the same code.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic.fields import FieldInfo

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


def duration_from_text(value: Any) -> Any:
    """Text from the environment, a flag or a rules file is a duration ("90s"); ints from code are ms."""
    return parse_duration_ms(value) if isinstance(value, str) else value


def retention_from_text(value: Any) -> Any:
    """Like a duration, but "0" or "forever" mean Kafka keeps the data for ever (0)."""
    if isinstance(value, str) and value.strip().lower() in ("0", "forever", "infinite", "-1"):
        return 0
    return duration_from_text(value)


DURATION_TEXT = BeforeValidator(duration_from_text)
RETENTION_TEXT = BeforeValidator(retention_from_text)

Duration = Annotated[int, DURATION_TEXT, Field(gt=0)]
"""Milliseconds, more than zero; every settings model and the rules file read it from text like ``90s``."""
DurationOrZero = Annotated[int, DURATION_TEXT, Field(ge=0)]
"""A duration that code may set to 0 (text is always positive: "0s" is refused as a typo)."""
Retention = Annotated[int, RETENTION_TEXT, Field(ge=0)]
"""A Kafka retention in milliseconds; 0 means for ever."""


def is_duration(field: FieldInfo) -> bool:
    """Whether a settings field is one of the duration types above (the README shows it as ``15m``)."""
    return any(marker in (DURATION_TEXT, RETENTION_TEXT) for marker in field.metadata)
