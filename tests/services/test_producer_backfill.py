"""Backfill into the real ticks topic: right times, joined figures, resumable, plan limits, retention."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from crypto_watcher.kafka import ensure_topic
from crypto_watcher.messages import Tick
from crypto_watcher.retry import Backoff
from producer.backfill import DAY, Checkpoint, run_backfill
from producer.cli import main
from producer.publisher import TickPublisher
from producer.topics import topic_retention_ms
from tests.support.backfill import END, GRID_90D, START, _client, backfill_fake  # noqa: F401 (fixture)
from tests.support.coingecko import FakeCoinGecko, Fault
from tests.support.producer import (
    fresh_metrics,
    keep_forever,
    restore_root_logging,  # noqa: F401 (fixture)
)
from tests.support.services import Services, read_topic

pytestmark = pytest.mark.usefixtures("restore_root_logging")


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
