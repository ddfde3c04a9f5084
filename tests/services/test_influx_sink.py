"""The InfluxDB sink on both APIs: what it writes, what it does with points InfluxDB refuses, and
what it does when InfluxDB is slow or away.

v1 runs against the real InfluxDB 1.6, v2 against the real InfluxDB 2.7 (scripts/influxdb2.sh).
Faults a real server will not produce on demand (429 with Retry-After, 503, 413, refused
connections) come from tests/support/fault_proxy.py, which forwards everything else to it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import requests
from prometheus_client import REGISTRY
from quixstreams.sinks import SinkBackpressureError, SinkBatch

from crypto_watcher.config import InfluxApi, InfluxSettings
from crypto_watcher.messages import Tick
from processor.dlq import RejectedPoint
from processor.influx import (
    MAX_LINES_PER_REQUEST,
    InfluxAuthError,
    InfluxSink,
    RejectedWriteError,
    TransientWriteError,
    V1Writer,
    make_writer,
)
from tests.support.fault_proxy import FaultProxy
from tests.support.pipeline import processor_settings, publisher, run_processor
from tests.support.points import tick_line
from tests.support.services import Influx, Influx2, Services, unique

pytestmark = pytest.mark.services
T0 = 1_767_225_600_000
WRITE = "/api/v2/write"


@pytest.fixture
def proxy(influx2: Influx2) -> Iterator[FaultProxy]:
    with FaultProxy(influx2.url) as running:
        yield running


def v2_settings(influx2: Influx2, bucket: str, url: str | None = None, **overrides: object) -> InfluxSettings:
    values: dict[str, object] = {
        "influx_api": InfluxApi.V2,
        "influx_url": url or influx2.url,
        "influx_token": influx2.token,
        "influx_org": influx2.org,
        "influx_bucket": bucket,
    }
    values.update(overrides)
    return InfluxSettings(**values)  # type: ignore[arg-type]


def ticks(n: int, coin: str = "bitcoin", step_ms: int = 1000) -> list[Tick]:
    # +123 ms: a timestamp a second-precision write would visibly round
    return [
        Tick(coin=coin, vs="usd", price=100.0 + i, source="test", event_time=T0 + 123 + i * step_ms) for i in range(n)
    ]


def lines(n: int, coin: str = "bitcoin") -> list[str]:
    return [tick_line(t) for t in ticks(n, coin)]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ----------------------------------------------------------------------------- V2Writer, real 2.7
def test_v2_writer_lands_points_with_their_milliseconds_and_answers_ping(influx2: Influx2, influx2_bucket: str) -> None:
    writer = make_writer(v2_settings(influx2, influx2_bucket))
    assert writer.ping()
    writer.write(lines(3))
    rows = influx2.query(influx2_bucket, "SELECT price, coin FROM price")
    assert [(r["time"], r["price"], r["coin"]) for r in rows] == [(t.event_time, t.price, "bitcoin") for t in ticks(3)]


def test_v2_writer_names_a_bad_token_and_a_missing_bucket(influx2: Influx2, influx2_bucket: str) -> None:
    with pytest.raises(InfluxAuthError, match=r"HTTP 401: unauthorized access \(check the InfluxDB token"):
        make_writer(v2_settings(influx2, influx2_bucket, influx_token="wrong")).write(lines(1))
    assert influx2.query(influx2_bucket, "SELECT * FROM price") == []
    missing = unique("nope")
    with pytest.raises(InfluxAuthError, match=rf'HTTP 404: bucket "{missing}" not found \(check the org, bucket'):
        make_writer(v2_settings(influx2, missing)).write(lines(1))


def test_v2_writer_reports_what_influxdb2_refuses_with_its_message(influx2: Influx2, influx2_bucket: str) -> None:
    writer = make_writer(v2_settings(influx2, influx2_bucket))
    with pytest.raises(RejectedWriteError, match="HTTP 400") as malformed:
        writer.write(["price,coin=x price= 1", *lines(1)])
    assert malformed.value.reason == "unable to parse 'price,coin=x price= 1': missing field value"
    assert influx2.query(influx2_bucket, "SELECT * FROM price") == []  # a 400 writes nothing

    writer.write(lines(1))
    with pytest.raises(RejectedWriteError, match="HTTP 422") as conflict:
        writer.write([f'price,coin=x,vs=usd price="text" {T0}', *lines(2)[1:]])
    assert "partial write: field type conflict" in conflict.value.reason
    assert conflict.value.reason.endswith("dropped=1")
    assert len(influx2.query(influx2_bucket, "SELECT price FROM price")) == 2  # a 422 writes the rest


def test_v2_writer_reads_faults_and_outages_as_transient(
    influx2: Influx2, influx2_bucket: str, proxy: FaultProxy
) -> None:
    writer = make_writer(v2_settings(influx2, influx2_bucket, url=proxy.url))
    proxy.fail_next(1, 503, {"Retry-After": "7"}, path=WRITE)
    with pytest.raises(TransientWriteError, match="HTTP 503") as unavailable:
        writer.write(lines(1))
    assert unavailable.value.retry_after == 7
    proxy.fail_next(1, 429, {"Retry-After": "2"}, path=WRITE)
    with pytest.raises(TransientWriteError, match="HTTP 429") as limited:
        writer.write(lines(1))
    assert limited.value.retry_after == 2
    proxy.fail_next(1, 502, body="<html><body>502 Bad Gateway</body></html>", path=WRITE)  # a proxy's page
    with pytest.raises(TransientWriteError, match="HTTP 502: <html><body>502 Bad Gateway") as gateway:
        writer.write(lines(1))
    assert gateway.value.retry_after is None

    proxy.refuse_connections()
    try:
        assert not writer.ping()
        with pytest.raises(TransientWriteError):
            writer.write(lines(1))
    finally:
        proxy.accept_connections()
    assert writer.ping()
    writer.write(lines(1))
    assert [(e.status, e.injected) for e in proxy.exchanges if e.path == WRITE] == [
        (503, True),
        (429, True),
        (502, True),
        (204, False),
    ]
    assert len(influx2.query(influx2_bucket, "SELECT price FROM price")) == 1


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


# ------------------------------------------------------------------------- the sink's bisection
class Collected:
    """Stands in for the DLQ topic (tests/services/test_processor_dlq.py drives the real one)."""

    def __init__(self) -> None:
        self.points: list[RejectedPoint] = []

    def on_rejected_points(self, points: Sequence[RejectedPoint]) -> None:
        self.points.extend(points)


def batch_of(items: list[str], topic: str = "ticks", partition: int = 0) -> SinkBatch:
    batch = SinkBatch(topic, partition)
    for offset, line in enumerate(items):
        batch.append(line, "bitcoin:usd", T0, [], 1000 + offset)
    return batch


def poison(influx2: Influx2, bucket: str, week: int) -> str:
    """A string ``price`` field in the shard of week ``week`` after T0: there InfluxDB 2 refuses a
    float ``price`` (field types are fixed per measurement and shard, a shard is 7 days here)."""
    at = T0 + week * 7 * 86_400_000
    make_writer(v2_settings(influx2, bucket)).write([f'price,coin=poison price="text" {at}'])
    return tick_line(Tick(coin="dogecoin", vs="usd", price=0.1, source="test", event_time=at + week))


@pytest.mark.parametrize("where", [0, 2500, 4321, 4999])
def test_one_refused_line_among_5000_is_isolated_in_log2_requests(
    influx2: Influx2, influx2_bucket: str, proxy: FaultProxy, where: int
) -> None:
    good = lines(MAX_LINES_PER_REQUEST - 1)
    bad = poison(influx2, influx2_bucket, week=3)
    chunk = [*good[:where], bad, *good[where:]]
    dead = Collected()
    sink = InfluxSink(make_writer(v2_settings(influx2, influx2_bucket, url=proxy.url)), dead)
    rejected_before = metric("cw_processor_sink_rejected_points_total")

    sink.write(batch_of(chunk, "crypto.ticks", 2))

    writes = [e for e in proxy.exchanges if e.path == WRITE]
    # the whole chunk, then at each of ceil(log2 5000) = 13 levels both halves: 27 at most
    assert len(writes) <= 1 + 2 * math.ceil(math.log2(len(chunk)))
    assert [e.status for e in writes].count(422) == len(writes) // 2 + 1
    assert (bad.encode(), 422) in {(e.body, e.status) for e in writes}  # alone at last
    print(f"one bad line at {where} among {len(chunk)}: {len(writes)} write requests")
    assert [(p.line, p.topic, p.partition, p.offset, p.key) for p in dead.points] == [
        (bad, "crypto.ticks", 2, 1000 + where, b"bitcoin:usd")
    ]
    assert "field type conflict" in dead.points[0].reason
    assert (sink.points_written, sink.rejected_points) == (len(good), 1)
    assert metric("cw_processor_sink_rejected_points_total") == rejected_before + 1
    (count,) = influx2.query(influx2_bucket, "SELECT count(price) FROM price WHERE coin = 'bitcoin'")
    assert count["count"] == len(good)


def test_malformed_and_conflicting_lines_among_many_are_all_isolated(
    influx2: Influx2, influx2_bucket: str, proxy: FaultProxy
) -> None:
    good = lines(1000)
    conflict = poison(influx2, influx2_bucket, week=5)
    malformed = "price,coin=x price= 1"
    chunk = [malformed, *good[:400], conflict, *good[400:999], malformed + "2", good[999]]
    dead = Collected()
    sink = InfluxSink(make_writer(v2_settings(influx2, influx2_bucket, url=proxy.url)), dead)

    sink.write(batch_of(chunk))

    assert sorted(p.line for p in dead.points) == sorted([malformed, conflict, malformed + "2"])
    reasons = {p.line: p.reason for p in dead.points}
    assert reasons[malformed] == f"unable to parse '{malformed}': missing field value"
    assert "field type conflict" in reasons[conflict]
    (count,) = influx2.query(influx2_bucket, "SELECT count(price) FROM price WHERE coin = 'bitcoin'")
    assert count["count"] == len(good)
    assert sink.points_written == len(good)


def test_too_large_splits_and_writes_everything(influx2: Influx2, influx2_bucket: str, proxy: FaultProxy) -> None:
    dead = Collected()
    sink = InfluxSink(make_writer(v2_settings(influx2, influx2_bucket, url=proxy.url)), dead)
    proxy.fail_next(
        1, 413, body={"code": "request too large", "message": "unable to read data: points batch is too large"}
    )
    sink.write(batch_of(lines(3000)))
    assert [(e.status, e.body.count(b"\n") + 1) for e in proxy.exchanges] == [(413, 3000), (204, 1500), (204, 1500)]
    assert dead.points == []
    (count,) = influx2.query(influx2_bucket, "SELECT count(price) FROM price")
    assert count["count"] == 3000


def test_a_transient_error_while_isolating_pauses_the_batch_and_dead_letters_nothing(
    influx2: Influx2, influx2_bucket: str, proxy: FaultProxy
) -> None:
    bad = poison(influx2, influx2_bucket, week=7)
    chunk = [*lines(10), bad]
    dead = Collected()
    sink = InfluxSink(make_writer(v2_settings(influx2, influx2_bucket, url=proxy.url)), dead)
    proxy.fail_next(1, 422, body={"code": "unprocessable entity", "message": "partial write: dropped=1"}, path=WRITE)
    proxy.fail_next(1, 503, {"Retry-After": "3"}, path=WRITE)  # the first half, mid-bisection
    with pytest.raises(SinkBackpressureError) as paused:
        sink.write(batch_of(chunk))
    assert paused.value.retry_after == 3
    assert (dead.points, sink.rejected_points, sink.points_written) == ([], 0, 0)

    sink.write(batch_of(chunk))  # Quix re-reads the batch after the pause
    assert [p.line for p in dead.points] == [bad]
    assert sink.points_written == 10


# --------------------------------------------------------------------- the whole processor on v2
def test_pipeline_on_v2_survives_429_503_and_an_outage_without_loss_or_duplicates(
    services: Services,
    influx2: Influx2,
    influx2_bucket: str,
    proxy: FaultProxy,
    topics: dict[str, str],
    tmp_path: Path,
) -> None:
    out = publisher(services, topics["ticks"], partitions=2)
    sent = [
        Tick(coin=coin, vs="usd", price=100.0 + i % 7, source="test", event_time=T0 + i * 20_000)
        for coin in ("bitcoin", "ethereum")
        for i in range(300)
    ]
    first = [t for t in sent if t.event_time < T0 + 150 * 20_000]
    during_outage = [t for t in sent if t.event_time >= T0 + 150 * 20_000]
    for tick in first:
        out.publish(tick)
    assert out.flush(30) == 0
    proxy.fail_next(2, 503, {"Retry-After": "1"}, path=WRITE)
    proxy.fail_next(1, 429, {"Retry-After": "1"}, path=WRITE)
    deferred = metric("cw_processor_sink_errors_total", kind="backpressure")
    outage: list[float] = []

    def outage_once_writing() -> None:
        """Events, not wall time, pace the outage: the processor's start-up time varies with load."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(e.status == 204 for e in proxy.exchanges):
            time.sleep(0.05)
        proxy.refuse_connections()
        outage.append(time.monotonic())
        for tick in during_outage:  # ticks that can only be written once InfluxDB is back
            out.publish(tick)
        out.flush(30)
        # 2 x 503 and the 429, then at least one refused write, then a little more
        while (
            time.monotonic() < deadline and metric("cw_processor_sink_errors_total", kind="backpressure") < deferred + 4
        ):
            time.sleep(0.05)
        time.sleep(2.0)
        proxy.accept_connections()
        outage.append(time.monotonic())

    influx_settings = v2_settings(influx2, influx2_bucket, url=proxy.url).model_dump(
        include={"influx_api", "influx_url", "influx_token", "influx_org", "influx_bucket"}
    )
    settings = processor_settings(services, topics, "unused", tmp_path / "state", **influx_settings)
    conductor = threading.Thread(target=outage_once_writing, daemon=True)
    conductor.start()
    try:
        pipeline = run_processor(settings, idle_s=20.0)
    finally:
        conductor.join(timeout=150)
        proxy.accept_connections()
    assert len(outage) == 2, "the processor stopped before InfluxDB came back"
    assert pipeline.sink.backpressure_events >= 4
    writes = [e for e in proxy.exchanges if e.path == WRITE]
    assert [e.status for e in writes[:3]] == [503, 503, 429]
    assert not any(outage[0] < e.at < outage[1] for e in writes)
    assert any(e.status == 204 and e.at > outage[1] for e in writes), "nothing written after the outage"
    rows = influx2.query(influx2_bucket, "SELECT price FROM price GROUP BY coin")
    assert sorted((r["coin"], r["time"]) for r in rows) == sorted((t.coin, t.event_time) for t in sent)
    count = influx2.query(influx2_bucket, 'SELECT count(change_pct) FROM change GROUP BY coin, "window"')
    # every window end once, for every window: each tick's for the hour windows, each closed
    # candle's for 4h and 24h (a minute's candle closes once a tick is a minute past its end)
    last = max(t.event_time for t in sent)
    closed = len({t.event_time // 60_000 for t in sent if (t.event_time // 60_000 + 2) * 60_000 <= last})
    by_window = {(r["coin"], r["window"]): r["count"] for r in count}
    hour = {(coin, w): 300 for coin in ("bitcoin", "ethereum") for w in ("5m", "15m", "1h")}
    assert by_window == hour | {(coin, w): closed for coin in ("bitcoin", "ethereum") for w in ("4h", "24h")}
    assert pipeline.sink.rejected_points == 0


def test_fault_proxy_forwards_to_the_real_server_untouched(influx2: Influx2, proxy: FaultProxy) -> None:
    query = {"org": influx2.org}
    direct = requests.get(f"{influx2.url}/api/v2/buckets", params=query, headers=influx2.headers, timeout=10)
    via = requests.get(f"{proxy.url}/api/v2/buckets", params=query, headers=influx2.headers, timeout=10)
    assert (via.status_code, via.json()) == (direct.status_code, direct.json())
    assert requests.get(f"{proxy.url}/api/v2/buckets", timeout=5).status_code == 401
