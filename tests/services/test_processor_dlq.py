"""Bad records on crypto.ticks, and points InfluxDB refuses, land in the DLQ with the reason; the
processor keeps going."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from crypto_watcher.kafka import ensure_topic
from crypto_watcher.messages import Tick
from tests.support.pipeline import processor_settings, publisher, run_processor
from tests.support.points import tick_line
from tests.support.services import Influx, Influx2, Services, read_topic

pytestmark = pytest.mark.services
T0 = 1_767_225_600_000


def test_garbage_and_invalid_ticks_go_to_dlq_and_good_ones_are_stored(
    services: Services, topics: dict[str, str], influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    ensure_topic(services.kafka_bootstrap, topics["ticks"], 1, retention_ms=0)
    producer = Producer({"bootstrap.servers": services.kafka_bootstrap})
    good = [
        Tick(coin="bitcoin", vs="usd", price=100.0 + i, source="test", event_time=T0 + i * 60_000) for i in range(3)
    ]
    sent: list[tuple[bytes, bytes]] = [
        (b"bitcoin:usd", good[0].to_json()),
        (b"bitcoin:usd", b"\x00\x01 garbage \xff"),
        (b"bitcoin:usd", good[1].to_json()),
        (b"bitcoin:usd", b'{"coin":"bitcoin","vs":"usd","price":-5,"source":"test","event_time":1767225600000}'),
        (b"ethereum:usd", good[2].to_json().replace(b"bitcoin", b"ethereum")),
        (b"solana:usd", good[2].to_json()),  # key does not match the value's coin:vs
        (b"bitcoin:usd", good[2].to_json()),
    ]
    for key, value in sent:
        producer.produce(topics["ticks"], key=key, value=value, timestamp=T0)
    assert producer.flush(10) == 0

    pipeline = run_processor(processor_settings(services, topics, influx_db, tmp_path))

    dlq = read_topic(services.kafka_bootstrap, topics["dlq"])
    # the original key and bytes, unchanged, in order
    assert [(k, v) for k, v, _t in dlq] == [(sent[i][0].decode(), sent[i][1]) for i in (1, 3, 5)]
    consumer_headers = _dlq_headers(services, topics["dlq"])
    kinds = sorted(h["cw.error.kind"] for h in consumer_headers)
    assert kinds == ["decode", "schema", "schema"]
    reasons = " | ".join(h["cw.error"] for h in consumer_headers)
    assert "Invalid JSON" in reasons
    assert "price: Input should be greater than 0 (got -5)" in reasons
    assert "key 'solana:usd' does not match coin:vs 'bitcoin:usd'" in reasons
    assert all(h["cw.source.topic"] == topics["ticks"] for h in consumer_headers)
    assert pipeline.dead_letters.count == 3

    rows = influx.query(influx_db, "SELECT price FROM price GROUP BY coin")
    assert sorted((r["coin"], r["price"]) for r in rows) == [
        ("bitcoin", 100.0),
        ("bitcoin", 101.0),
        ("bitcoin", 102.0),
        ("ethereum", 102.0),
    ]


def _dlq_headers(services: Services, topic: str) -> list[dict[str, str]]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {"bootstrap.servers": services.kafka_bootstrap, "group.id": topic + "-h", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    out: list[dict[str, str]] = []
    try:
        for _ in range(40):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if out:
                    break
                continue
            out.append({k: v.decode() for k, v in (msg.headers() or [])})
    finally:
        consumer.close()
    return out


def test_a_point_influxdb2_refuses_goes_to_the_dlq_and_every_other_point_is_stored(
    services: Services, topics: dict[str, str], influx2: Influx2, influx2_bucket: str, tmp_path: Path
) -> None:
    """The sink isolates the one line InfluxDB 2 refuses (a field type conflict, HTTP 422) and
    dead-letters it with InfluxDB's message; the checkpoint's other points all land."""
    # InfluxDB fixes a field's type per measurement and shard (7 days here): a string ``price`` in
    # week 3 makes InfluxDB refuse the float ``price`` of any tick that falls in that week.
    week3 = T0 + 3 * 7 * 86_400_000
    poison = requests.post(
        f"{influx2.url}/api/v2/write",
        params={"org": influx2.org, "bucket": influx2_bucket, "precision": "ms"},
        data=f'price,coin=poison price="text" {week3}',
        headers=influx2.headers,
        timeout=10,
    )
    assert poison.status_code == 204, poison.text
    good = [
        Tick(coin=coin, vs="usd", price=100.0 + i, source="test", event_time=T0 + i * 60_000)
        for coin in ("bitcoin", "ethereum")
        for i in range(20)
    ]
    refused = Tick(coin="dogecoin", vs="usd", price=0.1, source="test", event_time=week3 + 1)
    out = publisher(services, topics["ticks"], partitions=1)
    for tick in [*good[:25], refused, *good[25:]]:
        out.publish(tick)
    assert out.flush(30) == 0
    before = (
        metric("cw_processor_sink_rejected_points_total"),
        metric("cw_processor_dlq_total", reason="influx_rejected"),
    )

    v2 = {
        "influx_api": "v2",
        "influx_url": influx2.url,
        "influx_token": influx2.token,
        "influx_org": influx2.org,
        "influx_bucket": influx2_bucket,
    }
    pipeline = run_processor(processor_settings(services, topics, "unused", tmp_path, **v2))

    (record,) = _dlq_records(services, topics["dlq"])
    assert (record.key, record.value) == (b"dogecoin:usd", tick_line(refused).encode())
    assert record.headers["cw.error.kind"] == "influx_rejected"
    assert record.headers["cw.error"] == (
        "failure writing points to database: partial write: field type conflict: input field "
        '"price" on measurement "price" is type float, already exists as type string dropped=1'
    )
    assert record.headers["cw.source.topic"] == topics["ticks"]
    assert (record.headers["cw.source.partition"], record.headers["cw.source.offset"]) == ("0", "25")
    assert (pipeline.sink.rejected_points, pipeline.dead_letters.count) == (1, 1)
    after = (
        metric("cw_processor_sink_rejected_points_total"),
        metric("cw_processor_dlq_total", reason="influx_rejected"),
    )
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)

    rows = influx2.query(influx2_bucket, "SELECT price FROM price WHERE coin != 'poison' GROUP BY coin")
    assert sorted((r["coin"], r["time"], r["price"]) for r in rows) == sorted(
        (t.coin, t.event_time, t.price) for t in good
    )
    candles = influx2.query(influx2_bucket, "SELECT close FROM candle WHERE coin = 'dogecoin'")
    assert [r["close"] for r in candles] == [0.1]  # the refused tick's other points were written


@dataclass(frozen=True)
class DeadRecord:
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


def _dlq_records(services: Services, topic: str) -> list[DeadRecord]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {"bootstrap.servers": services.kafka_bootstrap, "group.id": topic + "-r", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    out: list[DeadRecord] = []
    try:
        for _ in range(40):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if out:
                    break
                continue
            out.append(DeadRecord(msg.key(), msg.value(), {k: v.decode() for k, v in (msg.headers() or [])}))
    finally:
        consumer.close()
    return out


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
