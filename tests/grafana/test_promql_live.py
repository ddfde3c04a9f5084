"""Every PromQL the dashboards and Grafana rules use, against a real Prometheus scraping the real services.

Producer (polling the CoinGecko look-alike), processor and notifier run as processes with their
metrics endpoints on free ports; Debian's Prometheus scrapes them every second. Each query must
run without error, and a query whose metrics all exist must return series: a panel that would
show "No data" while the data is there is a broken panel.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.coingecko import FakeCoinGecko
from tests.support.net import free_port
from tests.support.service_env import service_env
from tests.support.services import Services, unique

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]
MACROS = {"$__rate_interval": "30s", "$__range": "5m", "$__interval": "15s"}


def dashboard_queries() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):

        def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for panel in panels:
                yield panel
                yield from walk(panel.get("panels", []))

        for panel in walk(json.loads(path.read_text())["panels"]):
            for target in panel.get("targets", []):
                if "expr" in target:
                    out.append((f"{path.stem}: {panel.get('title')}", target["expr"]))
    rules = yaml.safe_load((ROOT / "grafana" / "provisioning" / "alerting" / "rules.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            for data in rule["data"]:
                if data["datasourceUid"] == "cw-prometheus":
                    out.append((f"rule {rule['uid']}", data["model"]["expr"]))
    return out


def substitute(expr: str) -> str:
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    return expr


class Market(threading.Thread):
    """Wall-clock quotes every second; bitcoin falls 9% over five seconds after a short calm.

    The calm counts from the producer's first price poll, not from the test's start: on a busy
    machine the producer once started after the fall, saw only the low price, and nothing alerted."""

    def __init__(self, fake: FakeCoinGecko) -> None:
        super().__init__(daemon=True)
        self.fake, self.stop = fake, threading.Event()

    def run(self) -> None:
        price: dict[str, float] = {"bitcoin": 60_000.0, "ethereum": 3_000.0}
        polled_at: float | None = None
        while not self.stop.wait(1.0):
            if polled_at is None and self.fake.call_count("/simple/price"):
                polled_at = time.time()
            elapsed = time.time() - polled_at if polled_at is not None else 0.0
            for coin in price:
                if coin == "bitcoin" and 6 <= elapsed <= 11:
                    price[coin] *= 0.982
                self.fake.append_point(coin, int(time.time()), price[coin])


def test_every_promql_panel_and_rule_returns_series(services: Services, tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus not found: apt-get install prometheus (scripts/setup.sh does)"
    ports = {name: free_port() for name in ("producer", "processor", "notifier", "prometheus")}
    tag = unique("promql")
    with FakeCoinGecko(plan="demo", api_key="k") as fake:
        fake.use_wall_clock()
        now = int(time.time())
        fake.script("bitcoin", [(now - 60, 60_000.0)])
        fake.script("ethereum", [(now - 60, 3_000.0)])
        market = Market(fake)
        market.start()
        env = service_env(
            services.kafka_bootstrap,
            {kind: f"{tag}.{kind}" for kind in ("ticks", "alerts", "dlq")},
            influx_url=services.influx_url,
            influx_db=tag,
            state_dir=tmp_path / "state",
            consumer_group=unique("g"),
            notify_group=unique("n"),
            notify_state=tmp_path / "n.sqlite",
            commit_interval="1s",
            log_level="WARNING",
            windows="1m",
            cooldown="1m",
            coingecko_plan="demo",
            coingecko_api_key="k",
            coingecko_base_url=fake.url,
            coingecko_calls_per_minute=600,
            coins="bitcoin,ethereum",
        )
        commands = {
            "producer": [sys.executable, "-m", "producer", "--source", "coingecko", "--interval", "1s"],
            "processor": [sys.executable, "-m", "processor"],
            "notifier": [sys.executable, "-m", "notifier"],
        }
        procs = [
            subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**env, "CW_HTTP_PORT": str(ports[name])},
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / f"{name}.log").open("wb"),
            )
            for name, cmd in commands.items()
        ]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": f"cw-{name}", "static_configs": [{"targets": [f"127.0.0.1:{ports[name]}"]}]}
                for name in commands
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        procs.append(
            subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "prometheus.log").open("wb"),
            )
        )
        api = f"http://127.0.0.1:{ports['prometheus']}/api/v1"

        def query(expr: str) -> dict[str, Any]:
            response = requests.get(f"{api}/query", params={"query": expr}, timeout=10)
            body: dict[str, Any] = response.json()
            assert body.get("status") == "success", f"{expr}\n-> {body}"
            return body

        def value(expr: str) -> float:
            try:
                result = query(expr)["data"]["result"]
            except (requests.RequestException, ValueError, AssertionError):
                return 0.0
            return float(result[0]["value"][1]) if result else 0.0

        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (
                value("sum(cw_notifier_alerts_received_total)") >= 1
                and value('count(up{job=~"cw-.*"} == 1)') == 3
                and value("sum(cw_processor_sink_points_total)") > 0
            ):
                time.sleep(1)
            time.sleep(3)  # a few more scrapes so rates over the window have two samples
            assert value('count(up{job=~"cw-.*"} == 1)') == 3, "not every service was scraped"
            assert value("sum(cw_notifier_alerts_received_total)") >= 1, "the scripted fall must alert"
            names = set(requests.get(f"{api}/label/__name__/values", timeout=10).json()["data"])
            checked = empty_allowed = 0
            for where, expr in dashboard_queries():
                result = query(substitute(expr))["data"]["result"]
                metrics = set(re.findall(r"\b(cw_[a-z_]+|up)\b", expr))
                if metrics <= names:
                    assert result, f"{where}: no series although {sorted(metrics)} exist:\n{expr}"
                    checked += 1
                else:
                    empty_allowed += 1  # e.g. errors by kind: a label appears only once an error happened
            assert checked >= 15, (checked, empty_allowed)
        finally:
            market.stop.set()
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            requests.post(f"{services.influx_url}/query", params={"q": f'DROP DATABASE "{tag}"'}, timeout=30)
