"""End to end on the real services: CoinGecko look-alike -> producer -> Kafka -> processor -> InfluxDB.

The scripted market: bitcoin steady at 50,000 for 15 minutes, then falling 7% within 10 minutes;
ethereum flat. The expectation is computed here, independently of the processor, by the plain
definition: the first tick whose price is 5% or more below the highest price of a window ending
at that tick (windows tried shortest first).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto_watcher.config import Plan
from crypto_watcher.messages import Alert, pct_change
from producer.coingecko import CoinGeckoClient
from producer.service import Poller
from producer.sources import CoinGeckoSource
from tests.support.coingecko import FakeCoinGecko, steady, steady_then_fall
from tests.support.pipeline import processor_settings, publisher, run_processor
from tests.support.services import Influx, Services, read_topic

pytestmark = pytest.mark.services

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, seconds
WINDOWS = [("5m", 300), ("15m", 900), ("1h", 3600)]


def expected_drop(path: list[tuple[int, float]], threshold: float = 5.0) -> tuple[int, str, float] | None:
    for t, price in path:
        for label, seconds in WINDOWS:
            high = max(p for s, p in path if t - seconds <= s <= t)
            move = pct_change(price, high)
            if move <= -threshold:
                return t * 1000, label, move
    return None


def test_bitcoin_falls_7pct_one_drop_alert_and_every_tick_stored(
    services: Services, topics: dict[str, str], influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    btc = steady_then_fall(T0, 50_000.0, fall_pct=7, steady_minutes=15, fall_minutes=10, hold_minutes=5)
    eth = steady(T0, 3_000.25, minutes=30)
    with FakeCoinGecko(plan="demo", api_key="CG-e2e") as fake:
        fake.script("bitcoin", btc, symbol="btc", name="Bitcoin")
        fake.script("ethereum", eth, symbol="eth", name="Ethereum")
        fake.advance_on_poll = True
        source = CoinGeckoSource(
            CoinGeckoClient(Plan.DEMO, "CG-e2e", base_url=fake.url), ["bitcoin", "ethereum"], ["usd"]
        )
        out = publisher(services, topics["ticks"])
        poller = Poller(source, out, interval_s=0.0)
        distinct_times = len({p.time for p in btc} | {p.time for p in eth})
        stats = poller.run(max_polls=distinct_times + 3)  # 3 more polls see no new quote
        assert out.flush(30) == 0
        assert fake.counts()["/simple/price"] == distinct_times + 3
        assert all(c.headers.get("x-cg-demo-api-key") == "CG-e2e" for c in fake.calls("/simple/price"))
    published = len(btc) + len(eth)
    assert (stats.published, out.delivered, stats.unchanged) == (published, published, 2 * 3)

    run_processor(processor_settings(services, topics, influx_db, tmp_path / "state"))

    # every published tick is in InfluxDB, once, with its own event time and price
    for coin, path in (("bitcoin", btc), ("ethereum", eth)):
        rows = influx.query(influx_db, f"SELECT price FROM price WHERE coin = '{coin}' AND vs = 'usd'")
        assert [(r["time"], r["price"]) for r in rows] == [(p.time * 1000, p.price) for p in path]

    alerts = [Alert.from_json(v) for _k, v, _t in read_topic(services.kafka_bootstrap, topics["alerts"]) if v]
    drops = [a for a in alerts if a.kind == "drop"]
    want = expected_drop([(p.time, p.price) for p in btc])
    assert want is not None
    assert len(drops) == 1, [a.message for a in alerts]
    drop = drops[0]
    assert (drop.key, drop.event_time, drop.window) == ("bitcoin:usd", want[0], want[1])
    assert drop.change_pct == pytest.approx(want[2], abs=1e-9)
    assert drop.reference_price == 50_000.0 and drop.threshold_pct == 5.0
    assert drop.message.startswith("bitcoin fell 5.")
    assert [a for a in alerts if a.coin == "ethereum"] == []
    assert {(a.kind, a.rule) for a in alerts if a.coin == "bitcoin"} <= {("drop", "drop"), ("buy_hint", "rsi")}

    # the alert is stored too, under the same id
    stored = influx.query(influx_db, "SELECT id, change_pct FROM alert WHERE kind = 'drop'")
    assert [(r["time"], r["id"]) for r in stored] == [(drop.event_time, drop.id)]
    # and the window changes the dashboards read are there for every window
    windows = influx.query(influx_db, "SELECT count(change_pct) FROM change WHERE coin = 'bitcoin' GROUP BY \"window\"")
    # (the hour windows at every tick; 4h and 24h at every candle that closed: its end + 1 min grace
    # reached by a later tick)
    last_ms = max(p.time for p in btc) * 1000
    closed = {p.time * 1000 // 60_000 for p in btc if (p.time * 1000 // 60_000 + 2) * 60_000 <= last_ms}
    hour = {"5m": len(btc), "15m": len(btc), "1h": len(btc)}
    assert {r["window"]: r["count"] for r in windows} == hour | {"4h": len(closed), "24h": len(closed)}
