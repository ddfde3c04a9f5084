"""Where ``crypto-processor replay`` writes, on the real Kafka, InfluxDB 2 and InfluxDB 1.x, through
the real CLI with the live processor's settings in the environment: a what-if bucket is created and
written, nothing lands in the live bucket, ``--into-live`` writes there exactly what the what-if
replay wrote, a token that may not create buckets is told what to do; v1: the same with ``--influx-db``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from crypto_watcher.messages import Tick
from processor.cli import main
from tests.support.pipeline import publisher
from tests.support.services import Influx, Influx2, Services, unique

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z


MIN = 60_000


FROM_MS, TO_MS = T0 + 20 * MIN, T0 + 40 * MIN


MEASUREMENTS = ("change", "candle", "alert")


def feed() -> list[Tick]:
    """Two coins, 40 minutes every 20 s; ethereum falls ~8% in minutes 25-35 (inside the range)."""
    ticks = []
    for t in range(T0, T0 + 40 * MIN + 1, 20_000):
        minute = (t - T0) / MIN
        fall = min(max(minute - 25, 0), 10) / 10 * 0.08
        ticks.append(Tick(coin="bitcoin", vs="usd", price=50_000.0 + minute, source="test", event_time=t))
        ticks.append(Tick(coin="ethereum", vs="usd", price=round(3_000.0 * (1 - fall), 6), source="test", event_time=t))
    return ticks


@pytest.fixture(scope="module")
def ticks_topic(services: Services) -> str:
    topic = f"{unique('replay_target')}.ticks"
    out = publisher(services, topic, partitions=2)
    for tick in feed():
        out.publish(tick)
    assert out.flush(30) == 0
    return topic


@dataclass
class Run:
    code: int
    err: str


def run_replay(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    services: Services,
    topic: str,
    state: Path,
    env: dict[str, str],
    *args: str,
) -> Run:
    """``crypto-processor replay`` over [FROM_MS, TO_MS] with the live settings in the environment."""
    for name, value in {
        "CW_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "CW_TICKS_TOPIC": topic,
        "CW_DLQ_TOPIC": f"{topic}.dlq",
        "CW_TOPIC_RETENTION": "0",  # past event times: keep for ever
        **env,
    }.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = main(
        [
            "replay",
            "--from",
            str(FROM_MS),
            "--to",
            str(TO_MS),
            "--group",
            unique("replay_target"),
            "--alerts-topic",
            f"{unique('replay_target')}.alerts",
            "--state-dir",
            str(state),
            "--no-progress",
            *args,
        ]
    )
    return Run(code, capsys.readouterr().err)


def rows(query: Any, where: str) -> dict[str, list[dict[str, Any]]]:
    return {m: query(where, f"SELECT * FROM {m} GROUP BY *") for m in MEASUREMENTS}


def assert_replayed(stored: dict[str, list[dict[str, Any]]]) -> None:
    for measurement in MEASUREMENTS:
        assert stored[measurement], f"the replay wrote no {measurement}"
        assert all(FROM_MS <= int(r["time"]) <= TO_MS for r in stored[measurement]), measurement
    assert any(r["coin"] == "ethereum" and r["kind"] == "drop" for r in stored["alert"]), stored["alert"]


def bucket_exists(influx2: Influx2, name: str) -> bool:
    found = requests.get(
        f"{influx2.url}/api/v2/buckets", params={"name": name, "org": influx2.org}, headers=influx2.headers, timeout=10
    )
    return found.status_code == 200 and bool(found.json().get("buckets"))


@pytest.fixture
def v2_env(influx2: Influx2, influx2_bucket: str) -> dict[str, str]:
    """The live processor's v2 settings; ``influx2_bucket`` (fresh, empty) stands for the live bucket."""
    return {
        "CW_INFLUX_API": "v2",
        "CW_INFLUX_URL": influx2.url,
        "CW_INFLUX_TOKEN": influx2.token,
        "CW_INFLUX_ORG": influx2.org,
        "CW_INFLUX_BUCKET": influx2_bucket,
    }


@pytest.fixture
def whatif_bucket(influx2: Influx2) -> Iterator[str]:
    name = unique("whatif")
    yield name
    influx2.delete_bucket(name)


@pytest.fixture
def bucket_rw_token(influx2: Influx2, influx2_bucket: str) -> Iterator[str]:
    """A token that may read and write the live bucket and nothing else: it may not create buckets."""
    org_id = influx2.org_id()
    bucket_id = requests.get(
        f"{influx2.url}/api/v2/buckets", params={"name": influx2_bucket}, headers=influx2.headers, timeout=10
    ).json()["buckets"][0]["id"]
    resource = {"type": "buckets", "id": bucket_id, "orgID": org_id}
    created = requests.post(
        f"{influx2.url}/api/v2/authorizations",
        json={
            "orgID": org_id,
            "description": "processor, live bucket only (test)",
            "permissions": [{"action": a, "resource": resource} for a in ("read", "write")],
        },
        headers=influx2.headers,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    yield str(created.json()["token"])
    requests.delete(f"{influx2.url}/api/v2/authorizations/{created.json()['id']}", headers=influx2.headers, timeout=10)


@pytest.fixture
def v1_live(influx: Influx) -> Iterator[str]:
    """The live v1 database (created, empty) and a what-if one's cleanup."""
    name = unique("live")
    requests.post(f"{influx.url}/query", params={"q": f'CREATE DATABASE "{name}"'}, timeout=10).raise_for_status()
    yield name
    influx.drop(name)
    influx.drop(f"{name}_whatif")


@pytest.mark.services
def test_v2_whatif_bucket_then_into_live(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    services: Services,
    ticks_topic: str,
    tmp_path: Path,
    influx2: Influx2,
    influx2_bucket: str,
    v2_env: dict[str, str],
    whatif_bucket: str,
) -> None:
    live = influx2_bucket
    assert not bucket_exists(influx2, whatif_bucket)
    run = run_replay(
        monkeypatch, capsys, services, ticks_topic, tmp_path / "a", v2_env, "--influx-bucket", whatif_bucket
    )
    assert run.code == 0, run.err
    assert bucket_exists(influx2, whatif_bucket), "the replay creates its bucket"
    whatif = rows(influx2.query, whatif_bucket)
    assert_replayed(whatif)
    assert influx2.query(live, "SHOW MEASUREMENTS") == [], "a what-if replay wrote into the live bucket"

    run = run_replay(monkeypatch, capsys, services, ticks_topic, tmp_path / "b", v2_env, "--into-live")
    assert run.code == 0, run.err
    assert rows(influx2.query, live) == whatif, "--into-live writes into the live bucket what the what-if run wrote"


@pytest.mark.services
@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), ["without --influx-bucket the replay writes into the live bucket", "--into-live"]),
        (("--influx-bucket", "{live}"), ["--influx-bucket {live} names the live bucket", "--into-live"]),
        (("--influx-db", "crypto_whatif"), ["--influx-db does not apply to the InfluxDB v2 API", "--influx-bucket"]),
    ],
    ids=["no-target", "live-named", "v1-option"],
)
def test_v2_refuses_the_live_bucket_without_into_live(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    services: Services,
    ticks_topic: str,
    tmp_path: Path,
    influx2: Influx2,
    influx2_bucket: str,
    v2_env: dict[str, str],
    args: tuple[str, ...],
    says: list[str],
) -> None:
    live = influx2_bucket
    filled = [a.format(live=live) for a in args]
    run = run_replay(monkeypatch, capsys, services, ticks_topic, tmp_path, v2_env, *filled)
    assert run.code == 2, run.err
    assert run.err.startswith("crypto-processor replay: "), run.err
    for part in says:
        assert part.format(live=live) in run.err, (part, run.err)
    if "--into-live" in says:
        assert f"'{live}' (CW_INFLUX_BUCKET)" in run.err, run.err
    assert influx2.query(live, "SHOW MEASUREMENTS") == []
    assert not bucket_exists(influx2, "crypto_whatif")
    assert not (tmp_path / "rocksdb").exists() and not any(tmp_path.iterdir()), "it stopped before the pipeline"


@pytest.mark.services
def test_v2_token_that_may_not_create_the_bucket_gets_told_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    services: Services,
    ticks_topic: str,
    tmp_path: Path,
    influx2: Influx2,
    v2_env: dict[str, str],
    bucket_rw_token: str,
    whatif_bucket: str,
) -> None:
    env = {**v2_env, "CW_INFLUX_TOKEN": bucket_rw_token}
    run = run_replay(monkeypatch, capsys, services, ticks_topic, tmp_path, env, "--influx-bucket", whatif_bucket)
    assert run.code == 2, run.err
    for part in (
        f"bucket '{whatif_bucket}' was not found",
        "may not create it",
        f"influx bucket create --name {whatif_bucket} --org {influx2.org}",
    ):
        assert part in run.err, (part, run.err)
    assert not bucket_exists(influx2, whatif_bucket)


@pytest.mark.services
def test_v1_same_rule_with_influx_db(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    services: Services,
    ticks_topic: str,
    tmp_path: Path,
    influx: Influx,
    v1_live: str,
) -> None:
    env = {"CW_INFLUX_API": "v1", "CW_INFLUX_URL": services.influx_url, "CW_INFLUX_DB": v1_live}
    for args, says in (
        ((), "without --influx-db the replay writes into the live database"),
        (("--influx-db", v1_live), f"--influx-db {v1_live} names the live database"),
        (("--influx-bucket", "whatif"), "--influx-bucket does not apply to the InfluxDB v1 API"),
    ):
        run = run_replay(monkeypatch, capsys, services, ticks_topic, tmp_path / "refused", env, *args)
        assert run.code == 2 and says in run.err, (args, run.err)
        if "live database" in says:
            assert "--into-live" in run.err and f"'{v1_live}' (CW_INFLUX_DB)" in run.err, run.err

    whatif = f"{v1_live}_whatif"
    run = run_replay(monkeypatch, capsys, services, ticks_topic, tmp_path / "a", env, "--influx-db", whatif)
    assert run.code == 0, run.err
    replayed = rows(influx.query, whatif)
    assert_replayed(replayed)
    assert influx.query(v1_live, "SHOW MEASUREMENTS") == [], "a what-if replay wrote into the live database"

    run = run_replay(monkeypatch, capsys, services, ticks_topic, tmp_path / "b", env, "--into-live")
    assert run.code == 0, run.err
    assert rows(influx.query, v1_live) == replayed
