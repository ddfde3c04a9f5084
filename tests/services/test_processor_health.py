"""The processor's /livez, /readyz and /metrics, in a real process: readiness follows InfluxDB."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from crypto_watcher.messages import Tick
from tests.support.fault_proxy import FaultProxy
from tests.support.net import free_port
from tests.support.paths import ROOT
from tests.support.pipeline import publisher
from tests.support.service_env import influx2_settings, service_env
from tests.support.services import Influx2, Services, unique

pytestmark = pytest.mark.services
DOCS = (ROOT / "docs" / "contracts.md").read_text()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def status(url: str) -> int:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return 0


def test_readiness_follows_influxdb_and_metrics_are_documented(
    services: Services, topics: dict[str, str], influx2: Influx2, influx2_bucket: str, tmp_path: Path
) -> None:
    """The processor reaches the real InfluxDB 2 through a proxy that can refuse connections: an
    outage without stopping a server other tests use."""
    out = publisher(services, topics["ticks"], partitions=1)
    for i in range(50):
        out.publish(
            Tick(coin="bitcoin", vs="usd", price=100.0 + i, source="test", event_time=1_767_225_600_000 + i * 30_000)
        )
    assert out.flush(30) == 0
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with FaultProxy(influx2.url) as influx:
        env = service_env(
            services.kafka_bootstrap,
            topics,
            consumer_group=unique("g"),
            state_dir=tmp_path,
            **influx2_settings(influx2, influx2_bucket, url=influx.url),
            http_port=port,
            commit_interval="1s",
            log_format="json",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "processor"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: status(f"{base}/readyz") == 200, 60, "readiness with InfluxDB up")
            assert status(f"{base}/livez") == 200
            wait_for(
                lambda: "cw_processor_ticks_total 50.0" in requests.get(f"{base}/metrics", timeout=2).text,
                60,
                "all 50 ticks counted",
            )
            influx.refuse_connections()
            wait_for(lambda: status(f"{base}/readyz") == 503, 30, "readiness to drop with InfluxDB down")
            assert status(f"{base}/livez") == 200  # waiting for a dependency is not being stuck
            influx.accept_connections()
            wait_for(lambda: status(f"{base}/readyz") == 200, 30, "readiness to return with InfluxDB")
            wait_for(
                lambda: len(influx2.query(influx2_bucket, "SELECT price FROM price")) == 50,
                30,
                "all 50 prices in InfluxDB 2",
            )

            metrics = requests.get(f"{base}/metrics", timeout=2).text
            exposed = set(re.findall(r"^(cw_[a-z_]+?)(?:_total|_bucket|_count|_sum|_created)?[{ ]", metrics, re.M))
            documented = {m for m in re.findall(r"`(cw_processor_[a-z_]+)`", DOCS)}
            documented = {m.removesuffix("_total") for m in documented}
            assert documented <= exposed | {"cw_processor_alerts", "cw_processor_dlq", "cw_processor_sink_errors"}, (
                documented - exposed
            )
            assert "cw_processor_consumer_lag{" in metrics
            assert 'cw_build_info{version="' in metrics
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err[-2000:]
        lines = [line for line in err.splitlines() if line.startswith("{")]
        assert lines and all('"service": "processor"' in line for line in lines)
