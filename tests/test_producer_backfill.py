"""History from /coins/{id}/market_chart/range into the ticks topic: right times, joined figures, resumable."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto_watcher.config import Plan
from crypto_watcher.kafka import ensure_topic
from crypto_watcher.messages import Tick
from crypto_watcher.retry import Backoff
from crypto_watcher.times import parse_time
from producer.backfill import DAY, Checkpoint, plan_chunks, run_backfill
from producer.cli import main
from producer.coingecko import CoinGeckoClient
from producer.publisher import TickPublisher
from producer.quotes import parse_market_chart
from producer.topics import topic_retention_ms
from tests.support.coingecko import FakeCoinGecko, Fault, random_walk
from tests.support.services import Services, read_topic
from tests.test_producer_common import (
    T0,
    MemoryPublisher,
    fresh_metrics,
    keep_forever,
    restore_root_logging,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.usefixtures("restore_root_logging")

GRID_90D = 90 * DAY * (T0 // (90 * DAY) + 1)  # the 90-day chunk boundary after T0 (T0 + 66 days)
START, END = GRID_90D - 6 * DAY, GRID_90D + 14 * DAY


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


def parse_when(text: str, now: float) -> int:
    """The backfill's time flags in its own unit (seconds); they share ``crypto_watcher.times``."""
    return parse_time(text, int(now * 1000)) // 1000


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


@pytest.fixture
def fake() -> Iterator[FakeCoinGecko]:
    with FakeCoinGecko(plan="demo") as f:
        f.script("bitcoin", random_walk(START - 3 * DAY, 50_000.0, 30 * 24 * 60, step_seconds=300, seed=1))
        f.script("ethereum", random_walk(START - 3 * DAY, 3_000.0, 30 * 24 * 60, step_seconds=300, seed=2))
        f.set_clock(END + 3600)
        yield f
    assert not f.internal_errors


def _client(fake: FakeCoinGecko) -> CoinGeckoClient:
    return CoinGeckoClient(Plan.DEMO, fake.api_key, base_url=fake.url, metrics=fresh_metrics())


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


@pytest.mark.services
def test_backfill_publishes_history_with_event_times_and_joined_figures_and_resumes(
    fake: FakeCoinGecko, services: Services, topics: dict[str, str], tmp_path: Path
) -> None:
    topic = keep_forever(services.kafka_bootstrap, topics["ticks"])
    publisher = TickPublisher(services.kafka_bootstrap, topic, metrics=fresh_metrics())
    checkpoint = Checkpoint(tmp_path / "cp.json")
    args = (["bitcoin", "ethereum"], ["usd"], START, END, "hourly")
    # The third chunk fails; "waiting" for the retry is where the interruption (Ctrl-C) happens.
    fake.inject(Fault.SERVER_ERROR(503), path="/coins/ethereum/market_chart/range")
    first = run_backfill(_client(fake), publisher, *args, checkpoint, wait=lambda _s: True, progress=False)
    assert (first.stopped, first.done, first.chunks) == (True, 2, 4)
    assert len(checkpoint) == 2
    calls_before = len(fake.calls())
    second = run_backfill(
        _client(fake), publisher, *args, Checkpoint(tmp_path / "cp.json"), backoff=Backoff(base_s=0.05), progress=False
    )
    assert (second.stopped, second.done, second.done_before, second.complete) == (False, 2, 2, True)
    asked = [(c.path, c.query["from"], c.query["to"]) for c in fake.calls()]
    assert len(asked) == calls_before + 2 and len(set(asked)) == len(asked) - 1  # only the failed one twice
    assert publisher.flush(30) == 0

    ticks = [Tick.from_json(v) for _k, v, _t in read_topic(services.kafka_bootstrap, topic, timeout_s=20) if v]
    hours = range(START, END, 3600)
    assert Counter((t.coin, t.event_time) for t in ticks) == Counter(
        (coin, h * 1000) for coin in ("bitcoin", "ethereum") for h in hours
    )  # every hour of both coins, once
    for t in ticks[:50]:
        quote = fake.quote(t.coin, at=t.event_time // 1000)
        assert quote is not None
        assert (t.price, t.market_cap, t.volume_24h, t.source) == (
            quote.price,
            quote.market_cap,
            quote.volume,
            "backfill",
        )


@pytest.mark.services
def test_backfill_command_with_progress_bar_checkpoint_and_plan_limits(
    fake: FakeCoinGecko,
    services: Services,
    topics: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CW_COINGECKO_API_KEY", str(fake.api_key))
    common = [
        "--plan",
        "demo",
        "--base-url",
        fake.url,
        "--cache-dir",
        str(tmp_path),
        "--bootstrap",
        services.kafka_bootstrap,
        "--topic",
        topics["ticks"],
        "--calls-per-minute",
        "600",
    ]
    keep_forever(services.kafka_bootstrap, topics["ticks"])
    span = ["--from", str(START), "--to", str(START + 3 * DAY)]
    assert main(["backfill", "--coins", "btc,ethereum", "--vs", "usd", *span, *common]) == 0
    err = capsys.readouterr().err
    assert "backfill: 100%" in err and "2/2" in err  # tqdm's bar
    assert (tmp_path / "backfill").is_dir()
    assert len(read_topic(services.kafka_bootstrap, topics["ticks"])) == 2 * 72
    calls = len(fake.calls())
    assert main(["backfill", "--coins", "bitcoin,ethereum", *span, *common, "--no-progress"]) == 0
    assert len(fake.calls()) == calls  # coin list from the disk cache, every chunk in the checkpoint
    assert "2 chunks (2 coins x 1 currencies), 2 already done; 0 calls" in capsys.readouterr().err
    # Demo and public keys reach back 365 days: an older chunk fails clearly, the rest is done, exit 1
    old = ["--from", str(END - 400 * DAY), "--to", str(END - 300 * DAY), "--granularity", "daily"]
    assert main(["backfill", "--coins", "bitcoin", *old, *common, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "365 days" in err and "skipped (run again to retry it)" in err


@pytest.mark.services
def test_topic_retention_is_read_for_the_replayable_until_line(services: Services, topics: dict[str, str]) -> None:
    ensure_topic(services.kafka_bootstrap, topics["alerts"], 1)
    assert topic_retention_ms(services.kafka_bootstrap, topics["alerts"]) == 28 * DAY * 1000
    assert topic_retention_ms(services.kafka_bootstrap, keep_forever(services.kafka_bootstrap, topics["dlq"])) == -1
    assert topic_retention_ms(services.kafka_bootstrap, topics["ticks"] + ".missing") is None
