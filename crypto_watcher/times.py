"""Moments typed by a person: one parser behind every ``--from``/``--to`` of every CLI.

Why one parser: ``crypto-producer backfill --from`` used to take epoch seconds while
``crypto-processor replay``/``scorecard --from`` took epoch milliseconds, so the same number meant
two instants a factor of 1000 apart depending on the command. Every time flag now accepts:

- ISO 8601: ``2026-01-31``, ``2026-01-31T12:00``, ``2026-01-31T12:00Z``, ``2026-01-31T13:00+01:00``
  (UTC when no zone is given; ``Z``/``z`` and numeric offsets are honoured);
- ``now``;
- relative to now: ``-2h``, ``-7d``, ``-90m`` (that long ago), ``+1h`` (that long ahead) with the
  units of ``crypto_watcher.durations`` (ms, s, m, h, d); a bare ``30d`` also means ago, the
  backfill's spelling before the parsers were merged;
- an epoch number, in seconds or milliseconds, told apart by magnitude (``SECONDS_BELOW``): a
  number below 10^11 is seconds, anything from 10^11 up is milliseconds. 10^11 seconds is the year
  5138 and 10^11 milliseconds is 1973-03-03, both far outside the range any time here may take
  (``EARLIEST_MS`` .. a day after now), so no valid instant has two readings: a number that is a
  plausible time in one unit is absurd in the other. Decimal seconds (``1767225600.5``) are fine.
  An all-digit string is always an epoch number, never the basic ISO form ``20260101``.

Every result must lie between ``EARLIEST_MS`` (2009-01-03, Bitcoin's genesis block: no price is
older, so an earlier instant is a unit or typing mistake) and a day after now (``FUTURE_SLACK_MS``:
room for clocks and time zones, not for typos like 2062). Errors say what was typed, how it was
read and why it was refused; ``time_arg`` turns them into argparse errors, which name the flag and
exit 2, and ``glue_time_values`` lets ``--from -2h`` through argparse unquoted.

Data files are a different contract: ``producer.tickfile`` reads ``event_time`` as milliseconds or
ISO 8601 only (docs/contracts.md), using ``parse_iso_ms`` from here for the ISO part.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from crypto_watcher.durations import parse_duration_ms
from crypto_watcher.messages import MIN_EVENT_TIME_MS

SECONDS_BELOW = 10**11
"""Epoch numbers below this are seconds (10^11 s: year 5138), from it up milliseconds (10^11 ms: 1973)."""

EARLIEST_MS = MIN_EVENT_TIME_MS
"""2009-01-03T00:00Z, the day of Bitcoin's genesis block: no quote is older (same bound as a Tick's)."""

FUTURE_SLACK_MS = 86_400_000
"""How far after now a time may lie: a day covers clock skew and time zones, not a wrong unit or year."""

TIME_FORMS = "ISO 8601 like 2026-01-31T12:00Z, epoch seconds or ms, `now`, or relative like -2h"
"""The accepted forms, as error messages list them."""

TIME_HELP = (
    "ISO 8601 (2026-01-31, 2026-01-31T12:00Z; UTC if no zone), epoch seconds or ms, `now`, "
    "or relative to now (-2h, -7d, -90m)"
)
"""The accepted forms, as every time flag's ``--help`` describes them."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_RELATIVE = re.compile(r"^([+-]?)(\d+(?:\.\d+)?(?:ms|s|m|h|d))$")


def ms_to_s(ms: float) -> float:
    """Milliseconds (every duration setting and event time here) as seconds: the unit of sleeps,
    timeouts, ``time.time()`` and the client libraries, converted in one place rather than by hand."""
    return ms / 1000


class TimeError(ValueError):
    """A value that is not a usable time; ``str`` says what was typed and why it was refused."""


def format_time(ms: int) -> str:
    """``2026-01-31T12:00:00Z``: how messages show an instant (UTC, seconds, ``Z``).

    Never raises, because it also describes absurd values in error messages: an instant outside
    the years 1..9999 is shown by its epoch milliseconds."""
    try:
        moment = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return f"epoch {ms} ms (outside the years 1..9999)"
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso_ms(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 date or date-time (UTC when it has no zone).

    Exact integer arithmetic (no float rounding of sub-second parts); raises ``ValueError``
    for anything ``datetime.fromisoformat`` does not accept. No bounds: callers decide those."""
    moment = datetime.fromisoformat(text.strip().upper())  # 'z' and 't' spelled lower case too
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MS


def _not_a_time(text: str, why: str = "") -> TimeError:
    return TimeError(f"not a time: {text!r}{why} (use {TIME_FORMS})")


def _epoch_ms(text: str) -> tuple[int, str]:
    """An epoch number in ms, and how it was read (seconds or ms, by ``SECONDS_BELOW``)."""
    if text.startswith("-"):
        raise _not_a_time(text, ": an epoch time cannot be negative; a relative time needs a unit, like -2h")
    number = Decimal(text)
    if number < SECONDS_BELOW:
        number, unit = number * 1000, "epoch seconds"
    else:
        unit = "epoch milliseconds"
    return int(number.to_integral_value(rounding=ROUND_HALF_EVEN)), unit


def _relative_ms(sign: str, duration: str, text: str, now_ms: int) -> int:
    try:
        span = parse_duration_ms(duration)
    except ValueError as exc:
        raise _not_a_time(text, f": {exc}") from None
    return now_ms + span if sign == "+" else now_ms - span


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Epoch milliseconds of a time as typed on a command line (the forms in the module docstring).

    ``now_ms`` is the moment ``now`` and relative times count from (default: the clock), so tests
    and callers that parse several flags can pin it. Raises ``TimeError`` naming the value and,
    for a refused instant, how it was read and the bound it broke."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = text.strip()
    how = ""
    if value.lower() == "now":
        ms = now_ms
    elif _NUMBER.match(value):
        ms, unit = _epoch_ms(value)
        how = f" (read as {unit}: numbers below 10^11 are seconds, larger ones milliseconds)"
    elif relative := _RELATIVE.match(value):
        ms = _relative_ms(relative.group(1), relative.group(2), text, now_ms)
    else:
        try:
            ms = parse_iso_ms(value)
        except ValueError:
            raise _not_a_time(text) from None
    if ms < EARLIEST_MS:
        raise TimeError(
            f"{text!r} is {format_time(ms)}{how}, before {format_time(EARLIEST_MS)[:10]} "
            "(Bitcoin's genesis block; no price is older)"
        )
    if ms > now_ms + FUTURE_SLACK_MS:
        raise TimeError(f"{text!r} is {format_time(ms)}{how}, more than a day after now ({format_time(now_ms)})")
    return ms


TIME_FLAGS = ("--from", "--to")
"""The flags ``glue_time_values`` looks after: every CLI flag whose value is a time (add new ones here)."""

_DASH_DIGIT = re.compile(r"^-\.?\d")


def glue_time_values(argv: Sequence[str], flags: Collection[str] = TIME_FLAGS) -> list[str]:
    """``argv`` with ``--from -2h`` written as ``--from=-2h``, so that relative times work unquoted.

    argparse takes any token that starts with ``-`` and is not a plain negative number for an
    option, so ``--from -2h`` fails with "expected one argument" (Python 3.11). Only a time flag
    followed by a dash and a digit is glued; nothing after ``--`` is touched."""
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        if items[i] == "--":
            return out + items[i:]
        if items[i] in flags and i + 1 < len(items) and _DASH_DIGIT.match(items[i + 1]):
            out.append(f"{items[i]}={items[i + 1]}")
            i += 2
        else:
            out.append(items[i])
            i += 1
    return out


def time_arg(clock: Callable[[], float] = time.time) -> Callable[[str], int]:
    """An argparse ``type=`` for a time flag: epoch ms, or an argparse error naming the flag (exit 2).

    ``clock`` (epoch seconds, like ``time.time``) is read once per flag at parse time; tests inject
    a fixed one instead of sleeping."""

    def parse(text: str) -> int:
        try:
            return parse_time(text, int(clock() * 1000))
        except TimeError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "time"  # argparse's fallback wording: "invalid time value"
    return parse
