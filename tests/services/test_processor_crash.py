"""Kill the processor with SIGKILL mid-stream, twice, and restart it: nothing lost, nothing doubled.

A clean run over the same topic (its own group and database) is the reference. After the crashes,
InfluxDB must hold exactly the same points, and the alert topic the same set of alert ids (an id
may appear more than once there: at-least-once delivery, deduplicated downstream by id).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crypto_watcher.config import ProcessorSettings
from crypto_watcher.messages import Alert, Tick
from tests.support.paths import ROOT
from tests.support.pipeline import processor_settings, publisher, run_processor
from tests.support.services import Influx, Services, read_topic, unique

pytestmark = pytest.mark.services

T0 = 1_767_225_600_000


def feed(seed: int = 11) -> list[Tick]:
    rng = random.Random(seed)
    ticks = []
    # large enough that the processor cannot finish before the kills land (it does ~3k ticks/s here)
    for n, coin in enumerate([f"coin-{i:02d}" for i in range(24)]):
        price, t = 100.0 * (n + 1), T0
        while t < T0 + 8 * 3600_000:
            hour = (t - T0) / 3600_000
            shock = -0.02 if (n % 2 == 0 and 2 + n / 3 <= hour < 2.1 + n / 3) else 0.0
            price *= 1 + shock + rng.gauss(0, 0.002)
            ticks.append(Tick(coin=coin, vs="usd", price=round(price, 6), source="test", event_time=t))
            t += rng.randrange(20_000, 40_000)
    return sorted(ticks, key=lambda k: k.event_time)


def env_for(settings: ProcessorSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CW_")}
    for name in (
        "kafka_bootstrap",
        "ticks_topic",
        "alerts_topic",
        "dlq_topic",
        "consumer_group",
        "state_dir",
        "influx_url",
        "influx_db",
    ):
        env[f"CW_{name.upper()}"] = str(getattr(settings, name))
    env["CW_COMMIT_INTERVAL"] = "1s"
    env["CW_HTTP_PORT"] = "-1"
    env["CW_LOG_LEVEL"] = "WARNING"
    return env


def snapshot(influx: Influx, db: str) -> dict[str, list[dict[str, object]]]:
    return {m: influx.query(db, f"SELECT * FROM {m} GROUP BY *") for m in ("price", "change", "candle", "alert")}


def test_sigkill_twice_then_restart_gives_the_clean_result(
    services: Services, influx: Influx, topics: dict[str, str], tmp_path: Path
) -> None:
    ticks = feed()
    out = publisher(services, topics["ticks"], partitions=3)
    for tick in ticks:
        out.publish(tick)
    assert out.flush(60) == 0

    clean_db, crash_db = unique("clean"), unique("crash")
    crash_alerts = topics["alerts"]
    try:
        clean = processor_settings(
            services, {**topics, "alerts": unique("clean") + ".alerts"}, clean_db, tmp_path / "clean"
        )
        run_processor(clean, idle_s=5)
        clean_ids = {
            Alert.from_json(v).id for _k, v, _t in read_topic(services.kafka_bootstrap, clean.alerts_topic) if v
        }
        assert len(clean_ids) >= 3, "the feed's shocks must produce alerts"

        crash = processor_settings(services, topics, crash_db, tmp_path / "crash")
        env = env_for(crash)
        command = [sys.executable, "-m", "processor", "run", "--stop-when-idle", "5"]
        rng = random.Random(5)
        kills = 0
        for _attempt in range(2):
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                # wait until this run has committed something new, then kill it at a random moment
                before = _count(influx, crash_db)
                deadline = time.monotonic() + 90
                while _count(influx, crash_db) <= before and time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.2)
                time.sleep(rng.uniform(0.05, 0.5))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert kills == 2, "the processor finished before it could be killed: make the feed longer"
        assert _count(influx, crash_db) < len(ticks), "the kills must have happened mid-stream"

        final = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr[-3000:]

        assert snapshot(influx, crash_db) == snapshot(influx, clean_db)
        delivered = [Alert.from_json(v).id for _k, v, _t in read_topic(services.kafka_bootstrap, crash_alerts) if v]
        assert set(delivered) == clean_ids
    finally:
        influx.drop(clean_db)
        influx.drop(crash_db)


def _count(influx: Influx, db: str) -> int:
    try:
        rows = influx.query(db, "SELECT count(price) FROM price")
    except Exception:
        return 0
    return int(rows[0]["count"]) if rows else 0
