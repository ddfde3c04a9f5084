"""The production topology on a real 3-broker KRaft cluster (scripts/kafka-cluster.sh: RF 3, min ISR 2).

Every topic the services create — the producer's ticks, the processor's ticks, alerts and dead
letters, and Quix's state changelogs — takes one setting, ``CW_TOPIC_REPLICATION``, whose default
is the brokers' ``default.replication.factor``. A factor the cluster cannot meet stops start-up
with a message saying so. And with ``min.insync.replicas=2`` (managed offerings), the idempotent
writes to alerts and the DLQ succeed, even while one broker is down.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from crypto_watcher.kafka import ReplicationError, ensure_topic
from crypto_watcher.messages import Alert, Tick
from processor.app import build_pipeline
from processor.cli import main as processor_main
from producer.cli import main as producer_main
from tests.support.paths import ROOT
from tests.support.pipeline import processor_settings
from tests.support.producer import restore_root_logging  # noqa: F401 (fixture)
from tests.support.services import Services, read_topic, unique

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("restore_root_logging")]

SCRIPT = ROOT / "scripts/kafka-cluster.sh"


def _script(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], timeout=timeout, capture_output=True, text=True)


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    """Bootstrap servers of the 3-broker cluster: started here if it is not running, and then
    stopped at the end (scripts/test.sh starts it once for the whole run instead)."""
    started = False
    if _script("status").returncode != 0:
        done = _script("start")
        if done.returncode != 0:
            pytest.fail(f"scripts/kafka-cluster.sh start failed:\n{done.stderr[-3000:]}", pytrace=False)
        started = True
    bootstrap = _script("bootstrap").stdout.strip()
    try:
        yield bootstrap
    finally:
        if started:
            _script("stop", timeout=120)


def _replicas(bootstrap: str) -> dict[str, set[int]]:
    """Every topic on the cluster -> the replica counts of its partitions (one value when uniform)."""
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15)
    return {name: {len(p.replicas) for p in topic.partitions.values()} for name, topic in metadata.topics.items()}


def _wait_out_of_isr(bootstrap: str, node: int, names: list[str], timeout_s: float = 60.0) -> None:
    """Wait until ``node`` leads none of the topics' partitions and is out of their ISR."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=10)
        partitions = [p for name in names for p in metadata.topics[name].partitions.values()]
        if node not in metadata.brokers and all(p.leader != node and node not in p.isrs for p in partitions):
            assert all(len(p.isrs) == 2 for p in partitions), [(p.id, p.isrs) for p in partitions]
            return
        assert time.monotonic() < deadline, f"broker {node} still listed or in an ISR after {timeout_s}s"
        time.sleep(0.5)


def _producer_run(bootstrap: str, ticks_topic: str) -> int:
    """The real producer command, on its offline simulated market, for three polls."""
    return producer_main(
        [
            "run",
            "--source",
            "simulate",
            "--iterations",
            "3",
            "--interval",
            "1s",
            "--http-port",
            "-1",
            "--bootstrap",
            bootstrap,
            "--topic",
            ticks_topic,
            "--coins",
            "bitcoin,ethereum",
        ]
    )


@pytest.mark.parametrize(("setting", "expected"), [(None, 3), ("2", 2)], ids=["broker-default", "explicit-2"])
def test_every_topic_the_services_create_has_the_one_replication_factor(
    setting: str | None,
    expected: int,
    cluster: str,
    services: Services,
    topics: dict[str, str],
    influx_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if setting is None:
        monkeypatch.delenv("CW_TOPIC_REPLICATION", raising=False)
    else:
        monkeypatch.setenv("CW_TOPIC_REPLICATION", setting)

    # The producer creates the ticks topic (as in production, where it starts first) ...
    assert _producer_run(cluster, topics["ticks"]) == 0
    # ... and the processor its alerts and dead-letter topics and every state changelog.
    settings = processor_settings(services, topics, influx_db, tmp_path, kafka_bootstrap=cluster)
    pipeline = build_pipeline(settings)
    pipeline.app.run(timeout=5, collect=False)

    found = _replicas(cluster)
    ours = {name: found[name] for name in (topics["ticks"], topics["alerts"], topics["dlq"])}
    changelogs = {name: rf for name, rf in found.items() if name.startswith(f"changelog__{settings.consumer_group}--")}
    # the per-pair state (sliding windows, candles, rule state): one store
    assert changelogs, sorted(found)
    assert {**ours, **changelogs} == {name: {expected} for name in {**ours, **changelogs}}


def test_ticks_topic_with_another_factor_does_not_pass_it_to_changelogs(
    cluster: str,
    services: Services,
    topics: dict[str, str],
    influx_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Quix gives a new changelog its input topic's factor; the setting must win (and a warning
    names the input topic that has fewer replicas than wanted)."""
    monkeypatch.delenv("CW_TOPIC_REPLICATION", raising=False)
    admin = AdminClient({"bootstrap.servers": cluster})
    admin.create_topics([NewTopic(topics["ticks"], num_partitions=3, replication_factor=2)])[topics["ticks"]].result(
        timeout=30
    )
    settings = processor_settings(services, topics, influx_db, tmp_path, kafka_bootstrap=cluster)
    with caplog.at_level(logging.WARNING, logger="crypto_watcher.kafka"):
        build_pipeline(settings)

    found = _replicas(cluster)
    changelogs = {name: rf for name, rf in found.items() if name.startswith(f"changelog__{settings.consumer_group}--")}
    assert changelogs and set(map(frozenset, changelogs.values())) == {frozenset({3})}, changelogs
    assert found[topics["ticks"]] == {2}
    assert found[topics["alerts"]] == found[topics["dlq"]] == {3}
    warned = [r.getMessage() for r in caplog.records if topics["ticks"] in r.getMessage()]
    assert len(warned) == 1 and "has 2 replica(s) but CW_TOPIC_REPLICATION unset" in warned[0], warned


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "4",
            "CW_TOPIC_REPLICATION=4 cannot be met: the Kafka cluster at {cluster} has 3 broker(s) available, "
            "and each replica of topic {topic} needs its own broker; set CW_TOPIC_REPLICATION to at most 3",
        ),
        (
            "1",
            "CW_TOPIC_REPLICATION=1 is below the brokers' min.insync.replicas (2) of the Kafka cluster at "
            "{cluster}: topic {topic} would keep fewer copies of each write than the cluster requires",
        ),
    ],
    ids=["more-than-brokers", "below-min-insync"],
)
def test_a_factor_the_cluster_cannot_meet_stops_start_up_with_a_clear_message(
    setting: str,
    message: str,
    cluster: str,
    services: Services,
    topics: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CW_TOPIC_REPLICATION", setting)
    monkeypatch.setenv("CW_DLQ_TOPIC", topics["dlq"])

    t0 = time.monotonic()
    assert _producer_run(cluster, topics["ticks"]) == 2
    err = capsys.readouterr().err
    assert f"crypto-producer: {message.format(cluster=cluster, topic=topics['ticks'])}" in err, err

    group = unique("processor")
    processor_argv = ["run", "--bootstrap", cluster, "--ticks-topic", topics["ticks"]]
    processor_argv += ["--alerts-topic", topics["alerts"], "--group", group, "--state-dir", str(tmp_path)]
    processor_argv += ["--http-port", "-1", "--influx-url", services.influx_url]
    assert processor_main(processor_argv) == 2
    err = capsys.readouterr().err
    assert f"crypto-processor: {message.format(cluster=cluster, topic=topics['ticks'])}" in err, err
    # at once, not after Kafka's or Quix's timeouts; and nothing was half created
    assert time.monotonic() - t0 < 30
    assert not set(_replicas(cluster)) & {*topics.values()}
    assert not [name for name in _replicas(cluster) if group in name]

    with pytest.raises(ReplicationError):
        ensure_topic(cluster, topics["alerts"], 1, replication=int(setting))


def test_alerts_and_dead_letters_are_written_with_one_broker_down(
    cluster: str,
    services: Services,
    topics: dict[str, str],
    influx_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """min.insync.replicas=2 with RF 3: the processor's idempotent (acks=all) writes of alerts, dead
    letters and changelogs go on while the broker leading the alerts partition is dead."""
    monkeypatch.delenv("CW_TOPIC_REPLICATION", raising=False)
    now = (int(time.time()) // 60 - 10) * 60_000
    ensure_topic(cluster, topics["ticks"], 1, retention_ms=0)
    ticks = [Tick(coin="bitcoin", vs="usd", price=100.0, source="test", event_time=now + i * 60_000) for i in range(4)]
    ticks.append(Tick(coin="bitcoin", vs="usd", price=90.0, source="test", event_time=now + 4 * 60_000))
    producer = Producer({"bootstrap.servers": cluster, "enable.idempotence": True})
    for tick in ticks[:3]:
        producer.produce(topics["ticks"], key=b"bitcoin:usd", value=tick.to_json())
    producer.produce(topics["ticks"], key=b"bitcoin:usd", value=b"\x00 not a tick")
    for tick in ticks[3:]:
        producer.produce(topics["ticks"], key=b"bitcoin:usd", value=tick.to_json())
    assert producer.flush(30) == 0

    settings = processor_settings(services, topics, influx_db, tmp_path, kafka_bootstrap=cluster)
    pipeline = build_pipeline(settings)  # creates alerts, DLQ and changelogs, all RF 3
    metadata = AdminClient({"bootstrap.servers": cluster}).list_topics(timeout=15)
    leader = metadata.topics[topics["alerts"]].partitions[0].leader
    assert leader in (1, 2, 3)
    down = _script("kill-broker", str(leader))
    assert down.returncode == 0, down.stderr
    try:
        # Once the controller has fenced it: every partition at exactly min.insync.replicas (2).
        # (Started in the seconds before, Quix's partition assignment can fail on the dying broker
        # and stop the app: a restart recovers. That crash is not what this test is about.)
        _wait_out_of_isr(cluster, leader, [topics["alerts"], topics["dlq"], topics["ticks"]])
        pipeline.app.run(timeout=15, collect=False)
    finally:
        up = _script("start-broker", str(leader))
        assert up.returncode == 0, up.stderr

    alerts = [Alert.from_json(v) for _k, v, _t in read_topic(cluster, topics["alerts"]) if v]
    assert [(a.key, a.kind, a.event_time) for a in alerts if a.kind == "drop"] == [
        ("bitcoin:usd", "drop", ticks[-1].event_time)
    ]
    dead = read_topic(cluster, topics["dlq"])
    assert [(k, v) for k, v, _t in dead] == [("bitcoin:usd", b"\x00 not a tick")]
    assert pipeline.dead_letters.count == 1
    assert _replicas(cluster)[topics["alerts"]] == {3}


READ_COMMITTED_LOOP = """
import os, sys, time
from crypto_watcher.kafka import CommittedOffsets

bootstrap, group, topic, stop_file = sys.argv[1:5]
reader = CommittedOffsets(bootstrap, group)
deadline, after_stop = time.monotonic() + 300, 0
while time.monotonic() < deadline and after_stop < 20:
    if os.path.exists(stop_file):
        after_stop += 1
    try:
        offsets = reader.read(topic, list(range(6)), timeout=10)
        print("read", sorted(offsets.items()), flush=True)
    except Exception as exc:
        print("error", exc, flush=True)
    time.sleep(0.01)
reader.close()
print("done", after_stop, flush=True)
"""
"""Reads committed offsets in a loop until ``stop_file`` exists, then 20 more times, and exits."""


def test_committed_offsets_are_read_through_a_coordinator_move(cluster: str, tmp_path: Path) -> None:
    """The lag gauge and the replay's progress bar read a group's committed offsets all the time;
    when the group's coordinator moves (here: its broker's controlled shutdown and return, as in a
    rolling upgrade of the brokers), the reading process must live on. Read through the Admin API,
    it died by SIGSEGV inside librdkafka (``CommittedOffsets``'s docstring): that took processor
    replicas down in the scale-out test."""
    topic, group = unique("committed"), unique("committed-group")
    ensure_topic(cluster, topic, 6)
    committer = Consumer({"bootstrap.servers": cluster, "group.id": group, "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(topic, p, 10 * p + 1) for p in range(6)], asynchronous=False)
    committer.close()
    admin = AdminClient({"bootstrap.servers": cluster})
    coordinator = admin.describe_consumer_groups([group])[group].result(timeout=30).coordinator.id
    assert coordinator in (1, 2, 3)

    out, stop_file = (tmp_path / "reader.log").open("w"), tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READ_COMMITTED_LOOP, cluster, group, topic, str(stop_file)],
        cwd=ROOT,
        stdout=out,
        stderr=out,
    )
    try:
        time.sleep(3)
        down = _script("stop-broker", str(coordinator))
        assert down.returncode == 0, down.stderr
        up = _script("start-broker", str(coordinator))
        assert up.returncode == 0, up.stderr
        stop_file.touch()
        assert reader.wait(timeout=150) == 0, (
            f"the offset reader died (exit {reader.returncode}):\n{(tmp_path / 'reader.log').read_text()[-3000:]}"
        )
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        _script("start-broker", str(coordinator))  # a no-op unless the test failed with the broker down
    lines = (tmp_path / "reader.log").read_text().splitlines()
    expected = f"read {[(p, 10 * p + 1) for p in range(6)]}"
    assert lines[-1] == "done 20", lines[-5:]
    reads = [line for line in lines if line.startswith("read")]
    assert reads and all(line == expected for line in reads), {line for line in reads} - {expected}
    assert lines[-21:-1] == [expected] * 20, "after the coordinator came back every read must succeed"
