"""Fixtures for the Grafana and Prometheus tests: a real InfluxDB 1.x filled with a scripted feed,
and promtool.

Nothing here skips: when InfluxDB or promtool is missing the tests that need them fail, saying
how to get them (``scripts/influxdb.sh start``; Debian's ``prometheus`` package for promtool).
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from crypto_watcher.messages import Tick
from tests.support.pipeline import processor_settings, publisher, run_processor
from tests.support.services import Services, unique

INFLUX_URL = os.environ.get("CW_INFLUX_URL", "http://127.0.0.1:8086").rstrip("/")

# --- the scripted market -------------------------------------------------------------------------

TICK_EVERY_MS = 20_000
HISTORY_MS = 70 * 60_000
"""The feed covers the last 70 minutes, so ``time > now() - 1h`` always finds a full hour."""

WINDOWS_MS = {"5m": 5 * 60_000, "15m": 15 * 60_000, "1h": 60 * 60_000}
CANDLES_MS = {"1m": 60_000, "5m": 5 * 60_000}

BASE_PRICES = {
    ("bitcoin", "usd"): 65_000.0,
    ("bitcoin", "eur"): 60_000.0,
    ("ethereum", "usd"): 3_500.0,
    ("ethereum", "eur"): 3_230.0,
    ("tether", "usd"): 1.0,
    ("tether", "eur"): 0.92,
}
SYMBOLS = {"bitcoin": "btc", "ethereum": "eth", "tether": "usdt"}

CRASHING = "ethereum"
"""Falls 8% over the last 10 minutes: drawdown beyond the 15m drop threshold (5%), not 1h's (10%)."""
SPIKING = "bitcoin"
"""Rises 6% over the last 10 minutes: run-up beyond the 15m spike threshold only."""
STABLE = "tether"
"""Wobbles by 0.1%: never alerts, not even under the stablecoin (1%) override."""

ALERT_WINDOW = "15m"
ALERT_THRESHOLD_PCT = 5.0


def scripted_price(coin: str, vs: str, t_ms: int, end_ms: int) -> float:
    """A gentle wave, plus the scripted crash or spike during the last 10 minutes."""
    base = BASE_PRICES[(coin, vs)]
    minutes = (t_ms - (end_ms - HISTORY_MS)) / 60_000
    amplitude = 0.001 if coin == STABLE else 0.004
    price = base * (1 + amplitude * math.sin(minutes / 3.0))
    to_end = (end_ms - t_ms) / 60_000
    if to_end < 10 and coin in (CRASHING, SPIKING):
        progress = (10 - to_end) / 10
        price *= 1 - 0.08 * progress if coin == CRASHING else 1 + 0.06 * progress
    return round(price, 6)


def scripted_ticks(end_ms: int) -> list[Tick]:
    ticks = []
    start_ms = end_ms - HISTORY_MS
    for t_ms in range(start_ms, end_ms + 1, TICK_EVERY_MS):
        for (coin, vs), base in BASE_PRICES.items():
            price = scripted_price(coin, vs, t_ms, end_ms)
            ticks.append(
                Tick(
                    coin=coin,
                    symbol=SYMBOLS[coin],
                    vs=vs,
                    price=price,
                    market_cap=price * 19_000_000,
                    volume_24h=base * 1_000_000,
                    change_24h_pct=round((price / base - 1) * 100, 6),
                    source="test",
                    event_time=t_ms,
                    fetch_time=t_ms + 1_500,
                )
            )
    return ticks


# --- InfluxDB ---------------------------------------------------------------------------------


def influx_query(db: str, query: str) -> dict[str, Any]:
    """Runs InfluxQL as Grafana does (GET /query, epoch=ms); returns the statement's result."""
    response = requests.get(f"{INFLUX_URL}/query", params={"db": db, "q": query, "epoch": "ms"}, timeout=30)
    assert response.status_code == 200, f"{query}\n-> HTTP {response.status_code}: {response.text}"
    results = response.json()["results"]
    assert len(results) == 1, f"{query}\n-> {len(results)} results"
    result: dict[str, Any] = results[0]
    assert "error" not in result, f"InfluxDB rejected the query:\n{query}\n-> {result['error']}"
    return result


def _influx_admin(statement: str) -> None:
    response = requests.post(f"{INFLUX_URL}/query", params={"q": statement}, timeout=30)
    response.raise_for_status()
    assert "error" not in response.json()["results"][0], response.text


@pytest.fixture(scope="session")
def influxdb() -> str:
    """The InfluxDB 1.x the tests run against; fails (never skips) when it is not there."""
    try:
        response = requests.get(f"{INFLUX_URL}/ping", timeout=5)
    except requests.RequestException as exc:
        pytest.fail(
            f"InfluxDB is not reachable at {INFLUX_URL} ({exc}). Start it with "
            "`scripts/influxdb.sh start` or point CW_INFLUX_URL at an InfluxDB 1.x.",
            pytrace=False,
        )
    if response.status_code != 204:
        pytest.fail(
            f"{INFLUX_URL}/ping answered {response.status_code}, not 204: is this an InfluxDB 1.x?", pytrace=False
        )
    return INFLUX_URL


@dataclass(frozen=True)
class Feed:
    """A database filled with the scripted market, and what the script did."""

    db: str
    start_ms: int
    end_ms: int
    coins: tuple[str, ...] = tuple(sorted(SYMBOLS))
    vs: tuple[str, ...] = ("eur", "usd")
    windows: tuple[str, ...] = tuple(WINDOWS_MS)
    candle_intervals: tuple[str, ...] = tuple(CANDLES_MS)
    crashing: str = CRASHING
    spiking: str = SPIKING
    stable: str = STABLE
    counts: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="session")
def scripted_feed_db(influxdb: str, services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Feed]:
    """A fresh database holding 70 minutes of a scripted market up to now, *as the pipeline wrote it*.

    The scripted ticks are published to Kafka and processed by the real processor (once per candle
    interval the dashboards offer), so every panel and rule query below reads exactly what
    production would store: prices, changes, candles and the processor's own alerts.
    """
    db = f"cw_grafana_test_{os.getpid()}_{secrets.token_hex(4)}"
    end_ms = int(time.time() * 1000) // 1000 * 1000
    ticks = scripted_ticks(end_ms)
    tag = unique("grafana")
    topics = {"ticks": f"{tag}.ticks", "alerts": f"{tag}.alerts", "dlq": f"{tag}.dlq"}
    out = publisher(services, topics["ticks"], partitions=2)
    for tick in ticks:
        out.publish(tick)
    assert out.flush(30) == 0
    try:
        for interval, interval_ms in CANDLES_MS.items():
            settings = processor_settings(
                services,
                topics,
                db,
                tmp_path_factory.mktemp(f"grafana-{interval}"),
                windows=list(WINDOWS_MS),
                candle_interval=interval_ms,
                consumer_group=unique(f"grafana-{interval}"),
            )
            run_processor(settings, idle_s=4)
        counts = {m: _count(db, m) for m in ("price", "change", "candle", "alert")}
        assert counts["price"] == len(ticks), counts
        assert counts["alert"] > 0, "the scripted crash and spike must have alerted"
        yield Feed(db=db, start_ms=end_ms - HISTORY_MS, end_ms=end_ms, counts=counts)
    finally:
        _influx_admin(f'DROP DATABASE "{db}"')


def _count(db: str, measurement: str) -> int:
    series = influx_query(db, f"SELECT count(*) FROM {measurement}").get("series", [])
    return max((int(v) for v in series[0]["values"][0][1:] if v is not None), default=0) if series else 0


@pytest.fixture(scope="session")
def empty_influx_db(influxdb: str) -> Iterator[str]:
    """A database with nothing in it: what a stalled pipeline looks like to a query."""
    db = f"cw_grafana_empty_{os.getpid()}_{secrets.token_hex(4)}"
    _influx_admin(f'CREATE DATABASE "{db}"')
    try:
        yield db
    finally:
        _influx_admin(f'DROP DATABASE "{db}"')


# --- promtool ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install Debian's `prometheus` package "
            "(apt-get install prometheus) or put Prometheus's promtool on PATH.",
            pytrace=False,
        )
    return path
