"""Event time is CoinGecko's update time; unmoved quotes are not republished; stale ones are reported once."""

from __future__ import annotations

import logging

import pytest

from crypto_watcher.health import Heartbeat
from producer.coingecko import CoinGeckoClient
from producer.service import Poller
from producer.sources import CoinGeckoSource
from tests.support.coingecko import FakeCoinGecko, steady
from tests.support.producer import T0, MemoryPublisher, fresh_metrics, lines, sample


def test_stale_quote_is_reported_once_when_it_becomes_stale_and_once_when_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeCoinGecko() as fake:
        fake.script("bitcoin", steady(T0, 50_000.0, minutes=5))  # stops updating at T0+5m
        fake.script("ethereum", steady(T0, 3_000.0, minutes=40))
        fake.set_clock(T0)
        metrics = fresh_metrics()
        source = CoinGeckoSource(CoinGeckoClient(base_url=fake.url, metrics=metrics), ["bitcoin", "ethereum"], ["usd"])
        out = MemoryPublisher()
        poller = Poller(
            source,
            out,  # type: ignore[arg-type]
            0.0,
            stale_after_s=600,
            metrics=metrics,
            clock=lambda: fake.clock,  # "now" is the market's clock
        )
        gauge = []
        with caplog.at_level(logging.INFO):
            for minute in range(31):
                fake.set_clock(T0 + 60 * minute)
                if minute == 25:
                    fake.append_point("bitcoin", T0 + 25 * 60, 49_000.0)  # bitcoin moves again
                poller.poll_once()
                gauge.append(sample(metrics, "cw_producer_stale_quotes"))
    warnings = [m for m in lines(caplog, "producer.service", logging.WARNING) if m.startswith("stale quote")]
    assert warnings == [
        "stale quote: bitcoin (usd) last updated 11m ago at 2026-01-01T00:05:00Z, longer than CW_STALE_AFTER=10m"
    ]
    recovered = [m for m in lines(caplog, "producer.service", logging.INFO) if m.startswith("quote fresh again")]
    assert recovered == ["quote fresh again: bitcoin (usd) updated at 2026-01-01T00:25:00Z"]
    assert gauge[:16] == [0.0] * 16 and gauge[16:25] == [1.0] * 9 and gauge[25:] == [0.0] * 6
    # the event time is CoinGecko's update time, and a quote that did not move is not sent again
    btc = [t.event_time for t in out.ticks if t.coin == "bitcoin"]
    assert btc == [(T0 + 60 * m) * 1000 for m in range(6)] + [(T0 + 25 * 60) * 1000]
    assert all(t.fetch_time is not None and t.fetch_time >= t.event_time for t in out.ticks)


def test_liveness_allows_the_announced_wait_plus_a_minute() -> None:
    now = [0.0]
    live = Heartbeat(clock=lambda: now[0])
    live.beat(300)  # the loop is about to wait 5 minutes (interval or backoff)
    now[0] = 359.0
    assert live.alive()
    now[0] = 361.0
    assert not live.alive()
    live.beat(0)
    assert live.alive()
