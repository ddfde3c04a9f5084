"""Backfill without Kafka: chunks on a fixed grid keep the wanted granularity, /market_chart/range
answers are joined by timestamp with bad points skipped, and --from/--to parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto_watcher.times import parse_time
from producer.backfill import DAY, Checkpoint, plan_chunks, run_backfill
from producer.quotes import parse_market_chart
from tests.support.backfill import END, GRID_90D, START, _client, backfill_fake  # noqa: F401 (fixture)
from tests.support.coingecko import FakeCoinGecko
from tests.support.producer import (
    T0,
    MemoryPublisher,
    restore_root_logging,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.usefixtures("restore_root_logging")


def parse_when(text: str, now: float) -> int:
    """The backfill's time flags in its own unit (seconds); they share ``crypto_watcher.times``."""
    return parse_time(text, int(now * 1000)) // 1000


def test_chunks_keep_the_wanted_granularity_on_a_fixed_grid() -> None:
    hourly = plan_chunks("bitcoin", "usd", START, END, "hourly")
    assert [(c.start, c.end) for c in hourly] == [(START, GRID_90D), (GRID_90D, END)]
    assert all(c.query_from == c.start and c.query_to == c.end for c in hourly)  # both over a day: hourly
    short = plan_chunks("bitcoin", "usd", START, START + 6 * 3600, "hourly")
    assert [(c.query_from, c.query_to) for c in short] == [(START + 6 * 3600 - 2 * DAY, START + 6 * 3600)]
    daily = plan_chunks("bitcoin", "usd", T0, T0 + 800 * DAY, "daily")
    assert all(c.end - c.start <= 365 * DAY for c in daily) and len(daily) == 3
    assert all(c.query_to - c.query_from > 90 * DAY for c in daily)  # never hourly
    assert [c.key for c in daily] == [c.key for c in plan_chunks("bitcoin", "usd", T0, T0 + 800 * DAY, "daily")]
    later = plan_chunks("bitcoin", "usd", START, END + 5 * DAY, "hourly")
    assert later[0].key == hourly[0].key  # a later --to finds the same completed chunks
    five = plan_chunks("bitcoin", "usd", START, START + DAY, "5m")
    assert [(c.query_from, c.query_to) for c in five] == [(START, START + DAY)]


def test_market_chart_parsing_joins_by_timestamp_and_skips_bad_points() -> None:
    payload = {
        "prices": [[1_700_000_000_000, 10.0], [1_700_003_600_000, -1], ["x", 3], [1_700_007_200_000, 12.5]],
        "market_caps": [[1_700_000_000_000, 1e9], [1_700_007_200_000, None]],
        "total_volumes": [[1_700_007_200_000, 5e6]],
    }
    parsed = parse_market_chart(payload, "bitcoin", "usd", 1_700_010_000_000, end_ms=1_700_007_200_001)
    assert [(t.event_time, t.price, t.market_cap, t.volume_24h, t.source) for t in parsed.ticks] == [
        (1_700_000_000_000, 10.0, 1e9, None, "backfill"),
        (1_700_007_200_000, 12.5, None, 5e6, "backfill"),
    ]
    assert [str(p) for p in parsed.problems] == [
        "skipped bitcoin:usd: field prices[1] at 1700003600000 has bad value -1",
        "skipped bitcoin:usd: field prices[2] has bad value ['x', 3]",
    ]
    assert parse_market_chart([], "bitcoin", "usd", 0).problems[0].reason == "bad_value"
    assert parse_market_chart({}, "bitcoin", "usd", 0).problems[0].reason == "missing_field"


def test_parse_when() -> None:
    now = 1_800_000_000.0
    assert parse_when("2026-01-01", now) == T0
    assert parse_when("2026-01-01T01:00Z", now) == T0 + 3600
    assert parse_when("2026-01-01T02:00+01:00", now) == T0 + 3600
    assert parse_when(str(T0), now) == T0
    assert parse_when("now", now) == int(now)
    assert parse_when("30d", now) == int(now) - 30 * DAY
    with pytest.raises(ValueError, match="not a time"):
        parse_when("yesterday", now)


def test_short_range_asks_for_two_days_to_get_hourly_not_five_minute_points(
    fake: FakeCoinGecko, tmp_path: Path
) -> None:
    fake.set_clock(START + 7 * 3600)  # the range is within the last day: asked alone it would be 5-minutely
    out = MemoryPublisher()
    for granularity, points in (("hourly", 6), ("5m", 72)):
        run_backfill(
            _client(fake),
            out,  # type: ignore[arg-type]
            ["bitcoin"],
            ["usd"],
            START,
            START + 6 * 3600,
            granularity,
            Checkpoint(tmp_path / f"{granularity}.json"),
            progress=False,
        )
        times = [t.event_time for t in out.ticks]
        step = (times[1] - times[0]) // 1000
        assert (len(times), step) == (points, 3600 if granularity == "hourly" else 300)
        out.ticks.clear()
