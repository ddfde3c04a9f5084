"""crypto_watcher.times: the one parser behind every --from/--to (ISO 8601, epoch s or ms, now, -2h)."""

from __future__ import annotations

import argparse

import pytest

from crypto_watcher.times import (
    EARLIEST_MS,
    SECONDS_BELOW,
    TIME_FORMS,
    TimeError,
    format_time,
    glue_time_values,
    parse_iso_ms,
    parse_time,
    time_arg,
)
from processor.cli import main as processor_main
from producer.cli import build_backfill_parser
from producer.cli import main as producer_main
from tests.support.producer import restore_root_logging  # noqa: F401 (fixture)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = T0 + 30 * 86_400_000  # a fixed clock: 2026-01-31T00:00:00Z
HOUR, DAY = 3_600_000, 86_400_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01", T0),  # a date: midnight UTC
        ("2026-01-01T01:00", T0 + HOUR),  # no zone: UTC
        ("2026-01-01T01:00Z", T0 + HOUR),
        ("2026-01-01t01:00z", T0 + HOUR),  # lower case too
        ("2026-01-01 01:00:00", T0 + HOUR),
        ("2026-01-01T02:00+01:00", T0 + HOUR),  # offsets are honoured
        ("2025-12-31T20:00-05:00", T0 + HOUR),
        ("2026-01-01T00:00:00.250Z", T0 + 250),  # exact milliseconds, no float rounding
        ("  2026-01-01  ", T0),
    ],
)
def test_iso_8601(text: str, expected: int) -> None:
    assert parse_time(text, NOW) == expected


def test_now_and_relative_times_count_from_the_given_clock() -> None:
    assert parse_time("now", NOW) == parse_time("NOW", NOW) == NOW
    assert parse_time("-2h", NOW) == NOW - 2 * HOUR
    assert parse_time("-7d", NOW) == NOW - 7 * DAY
    assert parse_time("-90m", NOW) == NOW - 90 * 60_000
    assert parse_time("-1.5h", NOW) == NOW - 90 * 60_000
    assert parse_time("30d", NOW) == NOW - 30 * DAY  # the backfill's older spelling: ago
    assert parse_time("+1h", NOW) == NOW + HOUR  # ahead (a --to), within a day of now


def test_epoch_seconds_and_milliseconds_are_told_apart_by_magnitude() -> None:
    seconds = T0 // 1000
    assert parse_time(str(seconds), NOW) == T0
    assert parse_time(str(T0), NOW) == T0  # the same instant in milliseconds
    assert parse_time(f"{seconds}.25", NOW) == T0 + 250  # decimal seconds
    assert parse_time(f"{T0}.0", NOW) == T0
    # The boundary, both sides: just below 10^11 is seconds (year 5138), 10^11 is ms (1973). Both
    # are refused, and the message says which reading was taken.
    with pytest.raises(TimeError, match=r"5138-.*read as epoch seconds.*more than a day after now"):
        parse_time(str(SECONDS_BELOW - 1), NOW)
    with pytest.raises(TimeError, match=r"1973-03-03.*read as epoch milliseconds.*before 2009-01-03"):
        parse_time(str(SECONDS_BELOW), NOW)


def test_no_valid_instant_has_two_readings() -> None:
    """Every allowed instant, written in seconds, is below the boundary, and in ms above it."""
    latest = NOW + DAY
    assert latest // 1000 < SECONDS_BELOW <= EARLIEST_MS
    assert parse_time(str(EARLIEST_MS // 1000), NOW) == EARLIEST_MS
    assert parse_time(str(EARLIEST_MS), NOW) == EARLIEST_MS


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2026-13-01", "not a time: '2026-13-01'"),
        ("yesterday", "not a time: 'yesterday'"),
        ("", "not a time: ''"),
        ("-2H", "not a time"),  # units are lower case, as in every duration setting
        ("-5", "an epoch time cannot be negative; a relative time needs a unit"),
        ("-0h", "duration must be positive"),
        ("0", "1970-01-01T00:00:00Z (read as epoch seconds"),
        ("1230940799", "before 2009-01-03 (Bitcoin's genesis block"),  # a second before the bound
        ("2008-12-31", "'2008-12-31' is 2008-12-31T00:00:00Z, before 2009-01-03"),
        ("-7000d", "before 2009-01-03"),
        ("20260101", "read as epoch seconds"),  # all digits: an epoch number, not basic ISO
        ("2026-02-01T00:00:01Z", "more than a day after now (2026-01-31T00:00:00Z)"),
        ("+25h", "more than a day after now"),
        ("1" + "0" * 20, "outside the years 1..9999"),
    ],
)
def test_refusals_say_what_was_typed_and_why(text: str, why: str) -> None:
    with pytest.raises(TimeError) as info:
        parse_time(text, NOW)
    assert why in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unparseable_values_list_the_accepted_forms() -> None:
    with pytest.raises(TimeError, match="not a time") as info:
        parse_time("soon", NOW)
    assert TIME_FORMS in str(info.value)


def test_a_day_ahead_is_the_limit() -> None:
    assert parse_time(str(NOW + DAY), NOW) == NOW + DAY
    assert parse_time("+24h", NOW) == NOW + DAY
    with pytest.raises(TimeError):
        parse_time(str(NOW + DAY + 1), NOW)


def test_parse_iso_ms_is_the_unbounded_iso_reading() -> None:
    assert parse_iso_ms("1970-01-01T00:00:01Z") == 1000
    assert parse_iso_ms("2026-01-01T01:00:00+01:00") == T0
    with pytest.raises(ValueError):
        parse_iso_ms("2026-13-01")


def test_format_time() -> None:
    assert format_time(T0 + 1500) == "2026-01-01T00:00:01Z"


def test_time_arg_reads_the_injected_clock_and_reports_through_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="demo")
    parser.add_argument("--from", dest="start", type=time_arg(lambda: NOW / 1000))
    parser.add_argument("--to", dest="end", default="now", type=time_arg(lambda: NOW / 1000))
    args = parser.parse_args(glue_time_values(["--from", "-2h"]))
    assert (args.start, args.end) == (NOW - 2 * HOUR, NOW)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--from", "2026-13-01"])
    assert info.value.code == 2
    assert "demo: error: argument --from: not a time: '2026-13-01' (use ISO 8601" in capsys.readouterr().err


def test_glue_time_values_lets_negative_relative_times_through_argparse() -> None:
    assert glue_time_values(["replay", "--from", "-2h", "--to", "now"]) == ["replay", "--from=-2h", "--to", "now"]
    assert glue_time_values(["--to", "-1.5h", "--until", "-7d"]) == ["--to=-1.5h", "--until", "-7d"]
    assert glue_time_values(["--until", "-7d"], flags=("--until",)) == ["--until=-7d"]
    assert glue_time_values(["--from", "--to", "now"]) == ["--from", "--to", "now"]  # an option, not a value
    assert glue_time_values(["--rules", "-2h", "--", "--from", "-2h"]) == ["--rules", "-2h", "--", "--from", "-2h"]


# --- every CLI names the flag and the value -------------------------------------------------------


def test_producer_backfill_names_the_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        producer_main(["backfill", "--from", "-7d", "--to", "2026-13-01"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "crypto-producer backfill: error: argument --to: not a time: '2026-13-01'" in err, err


@pytest.mark.usefixtures("restore_root_logging")  # main() sets logging up
def test_backfill_takes_seconds_and_ms_alike_and_reports_its_range_in_utc(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_backfill_parser()
    seconds, ms = (parser.parse_args(["--from", t, "--to", "2026-01-02"]) for t in ("1767225600", "1767225600000"))
    assert seconds.start == ms.start == T0 and seconds.end == T0 + DAY
    # refused before any service is asked (settings only)
    assert producer_main(["backfill", "--from", "2026-01-02", "--to", "2026-01-01T00:00+00:00"]) == 2
    err = capsys.readouterr().err
    assert "--from (2026-01-02T00:00:00Z) must be before --to (2026-01-01T00:00:00Z)" in err, err


@pytest.mark.parametrize("command", ["replay", "scorecard"])
def test_processor_replay_and_scorecard_name_the_bad_flag(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        processor_main([command, "--from", "2026-13-01", "--to", "now"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"crypto-processor {command}: error: argument --from: not a time: '2026-13-01'" in err, err
    with pytest.raises(SystemExit):
        processor_main([command, "--from", "-2h", "--to", "1000000000"])  # seconds, 2001: too old
    err = capsys.readouterr().err
    assert "argument --to: '1000000000' is 2001-09-09T01:46:40Z (read as epoch seconds" in err, err


def test_every_time_flag_shares_the_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    for main, argv in (
        (producer_main, ["backfill", "--help"]),
        (processor_main, ["replay", "--help"]),
        (processor_main, ["scorecard", "--help"]),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal width
        assert "--from TIME" in text and "epoch seconds or ms, `now`, or relative to now" in text, argv
