"""Backfill and replay-file never lose or duplicate a tick when the broker crashes mid-run.

The bug these guard against (docs/contracts.md, "Delivery"): records stamped with old event times
made a restarted broker forget the idempotent producer, accept a sequence gap, and librdkafka
reported the missing ticks delivered. It showed about once in 15 runs with both cores busy, so
these tests run with both cores busy, on 100,000 ticks of last year, and SIGKILL the real broker
while the ticks flow.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto_watcher.messages import Tick
from producer.backfill import DAY
from producer.cli import main
from tests.support.coingecko import FakeCoinGecko, random_walk
from tests.support.faults import BrokerCrash, busy_cores
from tests.support.producer import (
    T0,
    keep_forever,
    restore_root_logging,  # noqa: F401 (fixture)
)
from tests.support.services import Services, read_topic

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("restore_root_logging")]

TICKS = 100_000
COINS = ["bitcoin", "ethereum", "solana", "cardano", "dogecoin"]
HOURS = TICKS // len(COINS)  # 20,000 hourly points a coin: 2.3 years of history
START = T0 - 3 * 365 * DAY  # 2023: old enough that no broker would keep producer state for it


def in_topic(services: Services, topic: str) -> Counter[tuple[str, int]]:
    """(key, event time) of every record, counted; the record timestamp must be a publish time."""
    seen: Counter[tuple[str, int]] = Counter()
    for key, value, timestamp in read_topic(services.kafka_bootstrap, topic, timeout_s=60):
        assert key is not None and value is not None
        tick = Tick.from_json(value)
        assert tick.key == key
        assert timestamp > T0 * 1000, f"record timestamp {timestamp} is not a publish time"
        seen[(key, tick.event_time)] += 1
    return seen


def _check_exactly_once(seen: Counter[tuple[str, int]], expected: set[tuple[str, int]]) -> None:
    missing = expected - set(seen)
    twice = {k: n for k, n in seen.items() if n > 1}
    extra = set(seen) - expected
    assert not missing, f"{len(missing)} ticks lost, e.g. {sorted(missing)[:5]}"
    assert not twice, f"{len(twice)} ticks written more than once, e.g. {list(twice.items())[:5]}"
    assert not extra, f"{len(extra)} unexpected ticks, e.g. {sorted(extra)[:5]}"


@pytest.fixture
def history() -> Iterator[FakeCoinGecko]:
    with FakeCoinGecko(plan="pro", api_key="CG-pro-backfill") as fake:
        for n, coin in enumerate(COINS):
            fake.script(coin, random_walk(START, 100.0 * (n + 1), HOURS * 60, step_seconds=3600, seed=n))
        fake.set_clock(START + HOURS * 3600 + DAY)
        yield fake
    assert not fake.internal_errors


def test_backfill_of_100k_old_ticks_through_a_broker_crash_writes_each_tick_once(
    history: FakeCoinGecko, services: Services, topics: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = keep_forever(services.kafka_bootstrap, topics["ticks"])
    monkeypatch.setenv("CW_COINGECKO_API_KEY", "CG-pro-backfill")
    crash = BrokerCrash(services.kafka_bootstrap, topic, after=TICKS // 5)
    argv = [
        "backfill",
        "--coins",
        ",".join(COINS),
        "--vs",
        "usd",
        "--from",
        str(START),
        "--to",
        str(START + HOURS * 3600),
        "--granularity",
        "hourly",
        "--plan",
        "pro",
        "--base-url",
        history.url,
        "--cache-dir",
        str(tmp_path),
        "--bootstrap",
        services.kafka_bootstrap,
        "--topic",
        topic,
        "--calls-per-minute",
        "6000",
        "--no-progress",
    ]
    with busy_cores():
        crash.start()
        code = main(argv)
        crash.check()
    assert code == 0
    expected = {(f"{coin}:usd", (START + h * 3600) * 1000) for coin in COINS for h in range(HOURS)}
    assert len(expected) == TICKS
    assert crash.killed_at is not None and crash.killed_at < TICKS, "the broker crashed after the backfill was done"
    _check_exactly_once(in_topic(services, topic), expected)


def test_replay_file_of_100k_old_ticks_through_a_broker_crash_writes_each_tick_once(
    services: Services, topics: dict[str, str], tmp_path: Path
) -> None:
    topic = keep_forever(services.kafka_bootstrap, topics["ticks"])
    path = tmp_path / "history.jsonl"
    expected: set[tuple[str, int]] = set()
    with path.open("w") as out:
        for h in range(HOURS):
            for n, coin in enumerate(COINS):
                event_time = (START + h * 3600) * 1000
                out.write(
                    json.dumps({"coin": coin, "vs": "usd", "price": 100.0 * (n + 1) + h % 7, "event_time": event_time})
                )
                out.write("\n")
                expected.add((f"{coin}:usd", event_time))
    crash = BrokerCrash(services.kafka_bootstrap, topic, after=TICKS // 5)
    argv = ["replay-file", str(path), "--speed", "0", "--bootstrap", services.kafka_bootstrap, "--topic", topic]
    with busy_cores():
        crash.start()
        code = main(argv)
        crash.check()
    assert code == 0
    assert crash.killed_at is not None and crash.killed_at < TICKS, "the broker crashed after the replay was done"
    _check_exactly_once(in_topic(services, topic), expected)
