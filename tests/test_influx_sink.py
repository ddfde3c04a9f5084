"""The InfluxDB sink on both APIs: what it writes, and what it does when InfluxDB is slow or away.

v1 runs against the real InfluxDB 1.6; v2 against the contract server (tests/support/influx_v2.py),
which enforces InfluxDB 2's write API and stores into the same real InfluxDB.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto_watcher.config import InfluxApi, InfluxSettings
from crypto_watcher.messages import Tick
from processor.influx import InfluxAuthError, RejectedWriteError, TransientWriteError, V1Writer, make_writer
from processor.points import tick_line
from tests.support.influx_v2 import InfluxV2ContractServer
from tests.support.pipeline import processor_settings, publisher, run_processor
from tests.support.services import Influx, Services, unique

pytestmark = pytest.mark.services
T0 = 1_767_225_600_000
TOKEN, ORG = "cw-test-token", "cw-org"


@pytest.fixture
def v2(services: Services) -> Iterator[InfluxV2ContractServer]:
    bucket = unique("v2")
    with InfluxV2ContractServer(services.influx_url, ORG, TOKEN, [bucket], drop_buckets_on_stop=True) as server:
        yield server


def v2_settings(server: InfluxV2ContractServer, **overrides: object) -> InfluxSettings:
    values: dict[str, object] = {
        "influx_api": InfluxApi.V2,
        "influx_url": server.url,
        "influx_token": TOKEN,
        "influx_org": ORG,
        "influx_bucket": next(iter(server.buckets)),
    }
    values.update(overrides)
    return InfluxSettings(**values)  # type: ignore[arg-type]


def lines(n: int, coin: str = "bitcoin") -> list[str]:
    return [
        tick_line(Tick(coin=coin, vs="usd", price=100.0 + i, source="test", event_time=T0 + i * 1000)) for i in range(n)
    ]


def test_v2_writer_lands_points_and_classifies_errors(v2: InfluxV2ContractServer) -> None:
    writer = make_writer(v2_settings(v2))
    writer.write(lines(3))
    bucket = next(iter(v2.buckets))
    assert [r["price"] for r in v2.query(bucket, "SELECT price FROM price")] == [100.0, 101.0, 102.0]
    assert writer.ping()
    with pytest.raises(InfluxAuthError, match="HTTP 401"):
        make_writer(v2_settings(v2, influx_token="wrong")).write(lines(1))
    with pytest.raises(InfluxAuthError, match=r'HTTP 404.*bucket "nope" not found'):
        make_writer(v2_settings(v2, influx_bucket="nope")).write(lines(1))
    with pytest.raises(RejectedWriteError, match="HTTP 400"):
        writer.write(["price,coin=x price= 1"])
    v2.fail_next(1, 503, retry_after=7)
    with pytest.raises(TransientWriteError, match="HTTP 503") as info:
        writer.write(lines(1))
    assert info.value.retry_after == 7
    v2.go_down()
    try:
        with pytest.raises(TransientWriteError):
            writer.write(lines(1))
    finally:
        v2.come_back()


def test_v2_needs_token_and_org() -> None:
    with pytest.raises(ValueError, match="CW_INFLUX_API=v2 needs CW_INFLUX_TOKEN and CW_INFLUX_ORG"):
        make_writer(InfluxSettings(influx_api=InfluxApi.V2))


def test_v1_writer_creates_missing_database_and_reports_refusals(services: Services, influx: Influx) -> None:
    db = unique("v1")
    writer = V1Writer(services.influx_url, db)
    try:
        with pytest.raises(TransientWriteError, match="database was missing; created it"):
            writer.write(lines(2))
        writer.write(lines(2))  # the retry succeeds
        assert len(influx.query(db, "SELECT price FROM price")) == 2
        with pytest.raises(RejectedWriteError, match="HTTP 400"):
            writer.write(["price,coin=x price= 1"])
        dead = V1Writer("http://127.0.0.1:9", db, timeout_s=1)
        with pytest.raises(TransientWriteError, match="ConnectionError"):
            dead.write(lines(1))
    finally:
        influx.drop(db)


def test_pipeline_on_v2_survives_429_503_and_an_outage_without_loss_or_duplicates(
    services: Services, v2: InfluxV2ContractServer, topics: dict[str, str], tmp_path: Path
) -> None:
    bucket = next(iter(v2.buckets))
    out = publisher(services, topics["ticks"], partitions=2)
    ticks = [
        Tick(coin=coin, vs="usd", price=100.0 + i % 7, source="test", event_time=T0 + i * 20_000)
        for coin in ("bitcoin", "ethereum")
        for i in range(300)
    ]
    for tick in ticks:
        out.publish(tick)
    assert out.flush(30) == 0

    v2.fail_next(2, 503, retry_after=1)
    v2.fail_next(1, 429, retry_after=1)
    outage = threading.Timer(4.0, v2.go_down)
    recovery = threading.Timer(9.0, v2.come_back)
    settings = processor_settings(
        services,
        topics,
        "unused",
        tmp_path / "state",
        **v2_settings(v2).model_dump(
            include={"influx_api", "influx_url", "influx_token", "influx_org", "influx_bucket"}
        ),
    )
    outage.start()
    recovery.start()
    try:
        began = time.monotonic()
        pipeline = run_processor(settings, idle_s=20.0)
    finally:
        outage.cancel()
        recovery.cancel()
        if not v2.is_up:
            v2.come_back()
    assert pipeline.sink.backpressure_events >= 3, "the 503s and the 429 must have paused the stream"
    assert time.monotonic() - began > 9.0
    rows = v2.query(bucket, "SELECT price FROM price GROUP BY coin")
    assert sorted((r["coin"], r["time"]) for r in rows) == sorted((t.coin, t.event_time) for t in ticks)
    count = v2.query(bucket, 'SELECT count(change_pct) FROM change GROUP BY coin, "window"')
    assert {r["count"] for r in count} == {300}  # every window end once, for every window
    assert not v2.backend_anomalies
