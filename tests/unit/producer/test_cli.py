"""crypto-producer's commands and start-up checks: subcommands, budgets per poll and per month."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto_watcher.config import ProducerSettings, load_settings
from producer.cli import main
from producer.sources import CoinGeckoSource, make_source
from tests.support.coingecko import FakeCoinGecko, steady
from tests.support.producer import (
    T0,
    restore_root_logging,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["--help"], ["backfill", "replay-file", "--top-n", "--stale-after", "--source"]),
        (["run", "--help"], ["--interval", "--monthly-calls"]),
        (["backfill", "--help"], ["--from", "--to", "--granularity", "--restart", "hourly"]),
        (["replay-file", "--help"], ["--speed", "--check", "FILE:LINE"]),
    ],
)
def test_commands_and_their_help(argv: list[str], expect: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in expect:
        assert word in out


def test_invalid_setting_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--interval", "often", "--http-port", "-1"]) == 2
    assert "--poll-interval (command line) = 'often'" in capsys.readouterr().err


@pytest.fixture
def fake() -> Iterator[FakeCoinGecko]:
    with FakeCoinGecko(plan="demo") as f:
        for coin in ("bitcoin", "ethereum", "solana"):
            f.script(coin, steady(T0, 100.0, minutes=5))
        yield f


def _source(fake: FakeCoinGecko, tmp_path: Path, **values: object) -> tuple[CoinGeckoSource, float]:
    settings = load_settings(
        ProducerSettings,
        {
            "coingecko_plan": "demo",
            "coingecko_api_key": fake.api_key,
            "coingecko_base_url": fake.url,
            "coingecko_cache_dir": str(tmp_path),
            **values,
        },
    )
    source, gap = make_source(settings, threading.Event())
    assert isinstance(source, CoinGeckoSource)
    return source, gap


def test_monthly_credit_warning(fake: FakeCoinGecko, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        _source(fake, tmp_path, coins="bitcoin,ethereum", poll_interval="1m", coingecko_monthly_calls=10_000)
    text = caplog.text
    assert "one poll costs 1 call (2 coins, 1 currency); every 1m that is 1.0 calls/min of 30" in text
    assert "~43,230 calls/month" in text
    assert "more than CW_COINGECKO_MONTHLY_CALLS (10,000): the credits run out after ~7 days" in text
    assert "poll every 260s or more" in text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _source(fake, tmp_path, coins="bitcoin", poll_interval="5m", coingecko_monthly_calls=10_000)
    assert "~8,670 calls/month" in caplog.text and "CW_COINGECKO_MONTHLY_CALLS" not in caplog.text


def test_demo_hint_without_a_monthly_setting(
    fake: FakeCoinGecko, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        _source(fake, tmp_path, coins="bitcoin", poll_interval="1m")
    assert "demo plan keys have had 10,000 calls/month; this set-up spends ~43,230" in caplog.text


def test_budget_raises_the_interval_when_a_poll_costs_more_than_it_allows(fake: FakeCoinGecko, tmp_path: Path) -> None:
    source, gap = _source(
        fake, tmp_path, coins="bitcoin,ethereum,solana", coingecko_ids_per_call=1, coingecko_calls_per_minute=6
    )
    assert source.calls_per_poll() == 3 and gap == 30.0  # 3 calls at 6 a minute: a poll every 30 s at most
