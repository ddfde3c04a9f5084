"""Where the real services are, and small clients the tests use to read what the pipeline wrote.

Locally and in CI the services are the ones scripts/services.sh starts on 127.0.0.1. On a Docker
host with nothing listening there, testcontainers starts them instead. A test whose service is
missing fails with a message saying how to start it; it never skips.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from tests.support.net import free_port


@dataclass(frozen=True)
class Influx2:
    """The real InfluxDB 2.x of scripts/influxdb2.sh: what compose and the Helm chart deploy.

    Queries go the way the provisioned Grafana datasource sends them: InfluxQL on ``/query`` with
    ``db=<bucket>`` (InfluxDB 2.4+ maps a bucket name to a virtual DBRP) and a ``Token`` header.
    """

    url: str
    token: str
    org: str
    bucket: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def query(self, bucket: str, q: str) -> list[dict[str, Any]]:
        """Rows of every series as dicts (time in epoch ms), tags merged in."""
        response = requests.post(
            f"{self.url}/query", params={"db": bucket, "q": q, "epoch": "ms"}, headers=self.headers, timeout=30
        )
        response.raise_for_status()
        return _rows(response.json(), q)

    def org_id(self) -> str:
        response = requests.get(f"{self.url}/api/v2/orgs", params={"org": self.org}, headers=self.headers, timeout=10)
        response.raise_for_status()
        return str(response.json()["orgs"][0]["id"])

    def create_bucket(self, name: str) -> str:
        """A new bucket (kept for ever); returns its id."""
        response = requests.post(
            f"{self.url}/api/v2/buckets",
            json={"orgID": self.org_id(), "name": name, "retentionRules": []},
            headers=self.headers,
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["id"])

    def delete_bucket(self, name: str) -> None:
        found = requests.get(
            f"{self.url}/api/v2/buckets", params={"name": name, "org": self.org}, headers=self.headers, timeout=10
        )
        for bucket in found.json().get("buckets", []) if found.ok else []:
            requests.delete(f"{self.url}/api/v2/buckets/{bucket['id']}", headers=self.headers, timeout=10)


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    influx_url: str
    influx2: Influx2


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


def influx2_from_env() -> Influx2:
    """The InfluxDB 2 the tests use: scripts/influxdb2.sh's defaults, or CW_TEST_INFLUX2_*."""
    return Influx2(
        os.environ.get("CW_TEST_INFLUX2_URL", "http://127.0.0.1:8087").rstrip("/"),
        os.environ.get("CW_TEST_INFLUX2_TOKEN", "cw-test-token"),
        os.environ.get("CW_TEST_INFLUX2_ORG", "crypto-watcher"),
        os.environ.get("CW_TEST_INFLUX2_BUCKET", "crypto"),
    )


@contextmanager
def _containers() -> Iterator[Services]:
    """The same three servers in Docker (a GitHub Actions runner with no local services).

    The official ``apache/kafka`` image in KRaft mode (testcontainers' KafkaContainer fits only
    Confluent's images), InfluxDB 1.8 for the v1 path and InfluxDB 2.7 set up like
    scripts/influxdb2.sh. Tests that stop or SIGKILL the broker through scripts/kafka.sh (outage
    and crash tests) drive the local broker and cannot run on containers.
    """
    from testcontainers.community.influxdb import (  # type: ignore[import-untyped]
        InfluxDb1Container,
        InfluxDb2Container,
    )
    from testcontainers.core.container import DockerContainer  # type: ignore[import-untyped]
    from testcontainers.core.waiting_utils import wait_for_logs  # type: ignore[import-untyped]

    port = free_port()
    kafka = (
        DockerContainer("apache/kafka:4.1.1")
        .with_bind_ports(9092, port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://:9092,CONTROLLER://:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://127.0.0.1:{port}",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        )
    )
    influx2 = InfluxDb2Container(
        "influxdb:2.7.12",
        init_mode="setup",
        username="admin",
        password="cw-admin-password",
        org_name="crypto-watcher",
        bucket="crypto",
        admin_token="cw-test-token",
    )
    with kafka as k, InfluxDb1Container("influxdb:1.8") as i1, influx2 as i2:
        wait_for_logs(k, "Kafka Server started", timeout=120)
        yield Services(
            f"127.0.0.1:{port}", i1.get_url(), Influx2(i2.get_url(), "cw-test-token", "crypto-watcher", "crypto")
        )


@contextmanager
def real_services() -> Iterator[Services]:
    kafka = os.environ.get("CW_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    influx = os.environ.get("CW_TEST_INFLUX_URL", "http://127.0.0.1:8086")
    influx2 = influx2_from_env()
    k_host, k_port = kafka.split(",")[0].rsplit(":", 1)
    i_host, i_port = influx.split("//")[1].split("/")[0].rsplit(":", 1)
    i2_host, i2_port = influx2.url.split("//")[1].split("/")[0].rsplit(":", 1)
    if _port_open(k_host, int(k_port)) and _port_open(i_host, int(i_port)) and _port_open(i2_host, int(i2_port)):
        yield Services(kafka, influx, influx2)
        return
    if _docker_available():
        with _containers() as found:
            yield found
        return
    raise RuntimeError(
        f"Kafka ({kafka}), InfluxDB 1.x ({influx}) or InfluxDB 2.x ({influx2.url}) is not reachable. Start them with "
        "`bash scripts/services.sh up` (or run the whole suite with `bash scripts/test.sh`)."
    )


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class Influx:
    """InfluxQL over HTTP: what Grafana reads is what the tests read."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def query(self, db: str, q: str) -> list[dict[str, Any]]:
        """Rows of every series as dicts (time in epoch ms), tags merged in."""
        response = requests.post(f"{self.url}/query", params={"db": db, "q": q, "epoch": "ms"}, timeout=30)
        response.raise_for_status()
        return _rows(response.json(), q)

    def drop(self, db: str) -> None:
        requests.post(f"{self.url}/query", params={"q": f'DROP DATABASE "{db}"'}, timeout=30)


def _rows(body: dict[str, Any], q: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for result in body["results"]:
        if "error" in result:
            raise AssertionError(f"InfluxQL error for {q!r}: {result['error']}")
        for series in result.get("series", []):
            for values in series["values"]:
                row = dict(zip(series["columns"], values, strict=True))
                row.update(series.get("tags", {}))
                rows.append(row)
    return rows


# What a broker answers while it takes leadership back after a restart (librdkafka does not flag
# these errors as retriable when they come from get_watermark_offsets or list_topics).
_TRANSIENT = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


def _high_watermark(consumer: Consumer, tp: TopicPartition, deadline: float) -> int:
    """The partition's end offset. Right after a broker restart the broker may answer NOT_LEADER
    (it has not finished taking leadership back) although producing already works: a reader that
    gave up then made the outage test fail under load with nothing lost, so retriable errors are
    retried until ``deadline``."""
    while True:
        try:
            return int(consumer.get_watermark_offsets(tp, timeout=max(deadline - time.monotonic(), 1.0))[1])
        except KafkaException as exc:
            if exc.args[0].code() not in _TRANSIENT or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_topic(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[tuple[str | None, bytes | None, int]]:
    """Every message currently in ``topic`` (all partitions), as (key, value, timestamp)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        deadline = time.monotonic() + timeout_s
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        while metadata is not None and metadata.error is not None and metadata.error.code() in _TRANSIENT:
            if time.monotonic() > deadline:  # e.g. LEADER_NOT_AVAILABLE for that long: say so
                raise KafkaException(metadata.error)
            time.sleep(0.2)
            metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
        ends = {tp.partition: _high_watermark(consumer, tp, deadline) for tp in partitions}
        consumer.assign(partitions)
        out: list[tuple[str | None, bytes | None, int]] = []
        seen = dict.fromkeys(ends, 0)
        while any(seen[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            key = msg.key().decode() if msg.key() is not None else None
            out.append((key, msg.value(), msg.timestamp()[1]))
            seen[msg.partition()] = msg.offset() + 1
        return out
    finally:
        consumer.close()


def read_json_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [json.loads(v) for _k, v, _t in read_topic(bootstrap, topic) if v is not None]
