"""Fixtures for the Grafana and Prometheus tests: a real InfluxDB (1.x and 2.x) filled by the real
processor with a scripted feed, queried the way the provisioned Grafana datasource queries it; and
promtool.

Compose and the Helm chart deploy InfluxDB 2, which serves InfluxQL only through a DBRP mapping and
only to a request carrying a token; InfluxDB 1.x is kept because the processor still supports it.
Every fixture that needs an InfluxDB is parametrized over both, so each dashboard and alert rule
test runs once per server.

Nothing here skips: when Kafka, an InfluxDB or promtool is missing the tests that need them fail,
saying how to get them (``scripts/services.sh up``; Debian's ``prometheus`` package for promtool).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import requests
import yaml

from crypto_watcher.messages import Tick
from producer.simulate import MarketEvent, SimulatedMarket
from tests.support.pipeline import processor_settings, publisher, run_processor
from tests.support.services import Influx2, Services, unique

DATASOURCES = Path(__file__).resolve().parents[2] / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
INFLUX_UID = "cw-influxdb"

# --- the market: compose's default source, with a scripted crash and spike ------------------------

TICK_EVERY_MS = 20_000
HISTORY_MS = 70 * 60_000
"""The feed covers the last 70 minutes, so ``time > now() - 1h`` always finds a full hour."""

WINDOWS_MS = {"5m": 5 * 60_000, "15m": 15 * 60_000, "1h": 60 * 60_000}
CANDLES_MS = {"1m": 60_000, "5m": 5 * 60_000}

COINS = ("bitcoin", "ethereum", "tether")
VS = ("eur", "usd")
SEED = 20_240_601
"""The simulated market's walk is fixed by its seed: the same prices on every run."""

CRASHING = "ethereum"
"""Falls 8% over the last 10 minutes: drawdown beyond the 15m drop threshold (5%), not 1h's (10%)."""
SPIKING = "bitcoin"
"""Rises 6% over the last 10 minutes: run-up beyond the 15m spike threshold only."""
STABLE = "tether"
"""A stablecoin in the simulated market wobbles by hundredths of a percent: never alerts, not even
under the stablecoin (1%) override."""

ALERT_WINDOW = "15m"
ALERT_THRESHOLD_PCT = 5.0


def market_ticks(end_ms: int) -> list[Tick]:
    """70 minutes of the simulated market up to ``end_ms``, one poll every 20 s.

    The ticks come from the same source compose runs by default (``--source simulate``), not from
    hand-made quotes: whatever it leaves out (a 24 h volume, a 24 h change) is missing here too,
    and the panels that show it fail their "no data" check. Only the crash and the spike are
    scripted, so the alert rules have something known to find."""
    start_ms = end_ms - HISTORY_MS
    clock_ms = [start_ms - TICK_EVERY_MS]
    moves_from = end_ms - 10 * 60_000
    market = SimulatedMarket(
        COINS,
        VS,
        seed=SEED,
        clock=lambda: clock_ms[0] / 1000,
        events=[
            MarketEvent(CRASHING, moves_from, -8.0, 10 * 60_000),
            MarketEvent(SPIKING, moves_from, 6.0, 10 * 60_000),
        ],
    )
    ticks = []
    for t_ms in range(start_ms, end_ms + 1, TICK_EVERY_MS):
        clock_ms[0] = t_ms
        ticks.extend(market.poll().ticks)
    assert {t.event_time for t in ticks[: len(COINS) * len(VS)]} == {start_ms}
    return ticks


# --- the provisioned datasource, as Grafana's backend sends its requests -------------------------


def provisioned_influx_datasource() -> dict[str, Any]:
    document = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    (source,) = [ds for ds in document["datasources"] if ds["uid"] == INFLUX_UID]
    return dict(source)


def expand(template: str, env: dict[str, str]) -> str:
    """Grafana's ``$VAR``/``${VAR}`` expansion of provisioning values (unset variables become empty)."""
    out = template
    for name, value in env.items():
        out = out.replace("${" + name + "}", value).replace("$" + name, value)
    return out


@dataclass(frozen=True)
class GrafanaInflux:
    """The provisioned InfluxDB datasource with its environment filled in.

    ``query`` builds the request the way Grafana's InfluxQL backend does (pkg/tsdb/influxdb/influxql:
    ``/query`` with ``db``, ``epoch=ms`` and, for GET, ``q`` in the URL; for POST, ``q`` in a form
    body), plus the datasource's custom header, whose value Go's HTTP client sends trimmed (so an
    empty ``INFLUX_TOKEN`` sends ``Authorization: Token``). Only ``db`` differs from production:
    each test session reads its own database or DBRP mapping instead of ``dbName``.
    """

    url: str
    http_mode: str
    headers: dict[str, str]
    db_name: str

    @classmethod
    def provisioned(cls, url: str, token: str, http_mode: str | None = None) -> GrafanaInflux:
        source = provisioned_influx_datasource()
        env = {"INFLUX_URL": url, "INFLUX_TOKEN": token}
        json_data, secure = source["jsonData"], source.get("secureJsonData", {})
        headers: dict[str, str] = {}
        n = 1
        while f"httpHeaderName{n}" in json_data:
            headers[json_data[f"httpHeaderName{n}"]] = expand(secure.get(f"httpHeaderValue{n}", ""), env).strip()
            n += 1
        return cls(
            url=expand(source["url"], env).rstrip("/"),
            http_mode=http_mode or json_data.get("httpMode", "GET"),
            headers=headers,
            db_name=json_data["dbName"],
        )

    def request(self, db: str, query: str) -> requests.Response:
        params = {"db": db, "epoch": "ms"}
        if self.http_mode == "GET":
            return requests.get(f"{self.url}/query", params={**params, "q": query}, headers=self.headers, timeout=30)
        assert self.http_mode == "POST", self.http_mode
        return requests.post(
            f"{self.url}/query",
            params=params,
            data={"q": query},
            headers={**self.headers, "Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        )

    def query(self, db: str, query: str) -> dict[str, Any]:
        """The statement's result; fails on an HTTP or InfluxQL error, as a Grafana panel would show one."""
        response = self.request(db, query)
        assert response.status_code == 200, f"{query}\n-> HTTP {response.status_code}: {response.text}"
        results = response.json()["results"]
        assert len(results) == 1, f"{query}\n-> {len(results)} results"
        result: dict[str, Any] = results[0]
        assert "error" not in result, f"InfluxDB rejected the query:\n{query}\n-> {result['error']}"
        for series in result.get("series", []):
            if series["columns"][0] == "time":  # epoch=ms honoured: Grafana parses time as a number
                assert all(isinstance(row[0], int) for row in series["values"]), (query, series["values"][:1])
        return result


# --- the InfluxDB servers ---------------------------------------------------------------------

Api = Literal["v1", "v2"]


@dataclass(frozen=True)
class InfluxServer:
    """One real InfluxDB: how the processor writes to it and how Grafana reads it."""

    api: Api
    url: str
    grafana: GrafanaInflux
    influx2: Influx2 | None = None

    def new_database(self, prefix: str) -> Database:
        """A fresh place to write: a v1 database, or a v2 bucket reached through its own DBRP mapping.

        The v2 mapping names a database unlike the bucket, as compose's init script maps database
        ``crypto`` to whatever ``INFLUXDB_BUCKET`` is: if a query reached the bucket some other
        way (by its name), the test would not prove the mapping works."""
        name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
        if self.influx2 is None:
            _v1_admin(self.url, f'CREATE DATABASE "{name}"')
            return Database(self, name, name)
        bucket_id = self.influx2.create_bucket(name)
        db = f"{name}_db"
        response = requests.post(
            f"{self.url}/api/v2/dbrps",
            json={
                "orgID": self.influx2.org_id(),
                "bucketID": bucket_id,
                "database": db,
                "retention_policy": "autogen",
                "default": True,
            },
            headers=self.influx2.headers,
            timeout=10,
        )
        assert response.status_code == 201, f"POST /api/v2/dbrps -> {response.status_code}: {response.text}"
        return Database(self, db, name, dbrp_id=str(response.json()["id"]))

    def drop(self, database: Database) -> None:
        if self.influx2 is None:
            _v1_admin(self.url, f'DROP DATABASE "{database.name}"')
            return
        if database.dbrp_id:
            requests.delete(
                f"{self.url}/api/v2/dbrps/{database.dbrp_id}",
                params={"orgID": self.influx2.org_id()},
                headers=self.influx2.headers,
                timeout=10,
            )
        self.influx2.delete_bucket(database.bucket)

    def processor_overrides(self, database: Database) -> dict[str, Any]:
        """What the processor needs to write into ``database``: v1 /write, or the v2 API with a token."""
        if self.influx2 is None:
            return {"influx_api": "v1", "influx_url": self.url}
        return {
            "influx_api": "v2",
            "influx_url": self.url,
            "influx_token": self.influx2.token,
            "influx_org": self.influx2.org,
            "influx_bucket": database.bucket,
        }


@dataclass(frozen=True)
class Database:
    """Where a test's data lives: ``name`` is what Grafana's ``db`` parameter names, ``bucket`` what
    the processor writes (the same on 1.x)."""

    server: InfluxServer
    name: str
    bucket: str
    dbrp_id: str | None = None

    def query(self, q: str) -> dict[str, Any]:
        return self.server.grafana.query(self.name, q)


def _v1_admin(url: str, statement: str) -> None:
    response = requests.post(f"{url}/query", params={"q": statement}, timeout=30)
    response.raise_for_status()
    assert "error" not in response.json()["results"][0], response.text


def _check_v1(url: str) -> None:
    try:
        response = requests.get(f"{url}/ping", timeout=5)
    except requests.RequestException as exc:
        pytest.fail(
            f"InfluxDB 1.x is not reachable at {url} ({exc}). Start it with `scripts/influxdb.sh start` "
            "or point CW_TEST_INFLUX_URL at an InfluxDB 1.x.",
            pytrace=False,
        )
    if response.status_code != 204 or not response.headers.get("X-Influxdb-Version", "").startswith("1."):
        pytest.fail(
            f"{url}/ping: HTTP {response.status_code}, version {response.headers.get('X-Influxdb-Version')}:"
            " not an InfluxDB 1.x",
            pytrace=False,
        )


def _check_v2(influx2: Influx2) -> None:
    try:
        response = requests.get(
            f"{influx2.url}/api/v2/orgs", params={"org": influx2.org}, headers=influx2.headers, timeout=5
        )
    except requests.RequestException as exc:
        pytest.fail(
            f"InfluxDB 2.x is not reachable at {influx2.url} ({exc}). Start it with `scripts/influxdb2.sh start` "
            "or point CW_TEST_INFLUX2_URL (and _TOKEN, _ORG) at an InfluxDB 2.x.",
            pytrace=False,
        )
    if response.status_code != 200 or not response.json().get("orgs"):
        pytest.fail(
            f"InfluxDB 2.x at {influx2.url} refused token/org ({response.status_code}: {response.text[:200]}); "
            "check CW_TEST_INFLUX2_TOKEN and CW_TEST_INFLUX2_ORG",
            pytrace=False,
        )


@pytest.fixture(scope="session", params=["v1", "v2"], ids=["influxdb1", "influxdb2"])
def influx_server(request: pytest.FixtureRequest, services: Services) -> InfluxServer:
    """Each real InfluxDB in turn, with the datasource configured as compose configures Grafana for it:
    the 2.x token in ``INFLUX_TOKEN``; for 1.x without authentication ``INFLUX_TOKEN`` left empty."""
    if request.param == "v1":
        url = services.influx_url.rstrip("/")
        _check_v1(url)
        return InfluxServer("v1", url, GrafanaInflux.provisioned(url, ""))
    _check_v2(services.influx2)
    url = services.influx2.url
    return InfluxServer("v2", url, GrafanaInflux.provisioned(url, services.influx2.token), services.influx2)


@dataclass(frozen=True)
class Feed:
    """A database filled with the scripted market, and what the script did."""

    db: Database
    start_ms: int
    end_ms: int
    coins: tuple[str, ...] = tuple(sorted(COINS))
    vs: tuple[str, ...] = VS
    windows: tuple[str, ...] = tuple(WINDOWS_MS)
    candle_intervals: tuple[str, ...] = tuple(CANDLES_MS)
    crashing: str = CRASHING
    spiking: str = SPIKING
    stable: str = STABLE
    counts: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="session")
def scripted_feed_db(
    influx_server: InfluxServer, services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Feed]:
    """A fresh database holding 70 minutes of the simulated market up to now, *as the pipeline wrote it*.

    The ticks are published to Kafka and processed by the real processor (once per candle
    interval the dashboards offer) through the API production uses for that server (v2: the
    influxdb-client writer with a token), so every panel and rule query below reads exactly what
    production would store: prices, changes, candles and the processor's own alerts.
    """
    db = influx_server.new_database("cw_grafana_test")
    end_ms = int(time.time() * 1000) // 1000 * 1000
    ticks = market_ticks(end_ms)
    tag = unique("grafana")
    topics = {"ticks": f"{tag}.ticks", "alerts": f"{tag}.alerts", "dlq": f"{tag}.dlq"}
    out = publisher(services, topics["ticks"], partitions=2)
    for tick in ticks:
        out.publish(tick)
    assert out.flush(30) == 0
    try:
        for interval, interval_ms in CANDLES_MS.items():
            settings = processor_settings(
                services,
                topics,
                db.bucket,
                tmp_path_factory.mktemp(f"grafana-{influx_server.api}-{interval}"),
                windows=list(WINDOWS_MS),
                candle_interval=interval_ms,
                consumer_group=unique(f"grafana-{interval}"),
                **influx_server.processor_overrides(db),
            )
            pipeline = run_processor(settings, idle_s=4)
            assert pipeline.sink.rejected_writes == 0, f"{influx_server.api}: InfluxDB refused points"
        counts = {m: _count(db, m) for m in ("price", "change", "candle", "alert")}
        assert counts["price"] == len(ticks), counts
        assert counts["alert"] > 0, "the scripted crash and spike must have alerted"
        yield Feed(db=db, start_ms=end_ms - HISTORY_MS, end_ms=end_ms, counts=counts)
    finally:
        influx_server.drop(db)


def _count(db: Database, measurement: str) -> int:
    series = db.query(f"SELECT count(*) FROM {measurement}").get("series", [])
    return max((int(v) for v in series[0]["values"][0][1:] if v is not None), default=0) if series else 0


@pytest.fixture(scope="session")
def empty_influx_db(influx_server: InfluxServer) -> Iterator[Database]:
    """A database with nothing in it: what a stalled pipeline looks like to a query."""
    db = influx_server.new_database("cw_grafana_empty")
    try:
        yield db
    finally:
        influx_server.drop(db)


# --- promtool ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install Debian's `prometheus` package "
            "(apt-get install prometheus) or put Prometheus's promtool on PATH.",
            pytrace=False,
        )
    return path
