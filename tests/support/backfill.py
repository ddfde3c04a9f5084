"""A CoinGecko look-alike with a month of 5-minute history of two coins, for the backfill tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crypto_watcher.config import Plan
from producer.backfill import DAY
from producer.coingecko import CoinGeckoClient
from tests.support.coingecko import FakeCoinGecko, random_walk
from tests.support.producer import (
    T0,
    fresh_metrics,
    restore_root_logging,  # noqa: F401 (fixture)
)

GRID_90D = 90 * DAY * (T0 // (90 * DAY) + 1)  # the 90-day chunk boundary after T0 (T0 + 66 days)
START, END = GRID_90D - 6 * DAY, GRID_90D + 14 * DAY


@pytest.fixture(name="fake")
def backfill_fake() -> Iterator[FakeCoinGecko]:
    """``fake`` in a test module that imports this one."""
    with FakeCoinGecko(plan="demo") as f:
        f.script("bitcoin", random_walk(START - 3 * DAY, 50_000.0, 30 * 24 * 60, step_seconds=300, seed=1))
        f.script("ethereum", random_walk(START - 3 * DAY, 3_000.0, 30 * 24 * 60, step_seconds=300, seed=2))
        f.set_clock(END + 3600)
        yield f
    assert not f.internal_errors


def _client(fake: FakeCoinGecko) -> CoinGeckoClient:
    return CoinGeckoClient(Plan.DEMO, fake.api_key, base_url=fake.url, metrics=fresh_metrics())
