"""Bad records on crypto.ticks land in the DLQ with the reason; the processor keeps going."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from crypto_watcher.kafka import ensure_topic
from crypto_watcher.messages import Tick
from tests.support.pipeline import processor_settings, run_processor
from tests.support.services import Influx, Services, read_topic

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
