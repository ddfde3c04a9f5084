"""The provisioned InfluxDB datasource against the real InfluxDB 2 that compose and the Helm chart deploy.

test_dashboards.py runs every panel, variable, annotation and alert rule query on both servers with
the datasource as provisioned (GET, ``Authorization: Token <admin token>``, a DBRP mapping named
unlike the bucket, as compose's init script makes). These tests cover what only InfluxDB 2 has and
what the deployment documents promise around it:

- the ``Token`` header is what lets Grafana in: without it, with a wrong token or with the
  ``Bearer`` scheme InfluxDB 2 answers 401, so a misconfigured datasource fails loudly;
- the read-only token .env.example tells operators to give Grafana (read access to the one bucket)
  reads every query exactly as the admin token does, and cannot write;
- ``httpMode: POST`` (the datasource in docs/deploy.md) answers every query as GET does;
- the bucket's own name (InfluxDB 2.4+'s virtual DBRP mapping, what an install without compose's
  init script relies on) answers every query as the explicit mapping does; an unknown database is
  an InfluxQL error Grafana shows, not an empty panel.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .conftest import Database, Feed, GrafanaInflux, InfluxServer
from .test_dashboards import (
    alert_rules,
    dashboards,
    influx_boards,
    influx_rules,
    influx_targets,
    interpolate,
    pick_defaults,
    resolve_variables,
    rule_queries,
    time_filters,
)

pytestmark = [pytest.mark.services, pytest.mark.parametrize("influx_server", ["v2"], indirect=True)]


def every_query(feed: Feed) -> list[tuple[str, str]]:
    """(where, InfluxQL) for every variable, panel, annotation and rule query of the live-data
    dashboards, as Grafana would send them now over the feed's absolute range with the dashboards'
    default variables. (The signal scorecard reads a scorecard's own database, not the feed:
    tests/grafana/test_scorecard_dashboard.py runs its queries on InfluxDB 2 through a DBRP mapping
    and by bucket name.)"""
    time_filter = time_filters(feed)["absolute"]
    out: list[tuple[str, str]] = []
    for name in influx_boards():
        board = dashboards()[name]
        targets = influx_targets(board)
        variables = resolve_variables(board, feed.db, time_filter, pick_defaults)
        for variable in board.get("templating", {}).get("list", []):
            out.append(
                (f"{board['title']} / ${variable['name']}", interpolate(variable["query"], variables, time_filter))
            )
        out.extend((t.where, interpolate(t.query, variables, time_filter)) for t in targets)
    now_ms = int(time.time() * 1000)
    for rule in influx_rules():
        out.extend((f"rule {rule['uid']} / {ref}", q) for ref, q in rule_queries(rule, now_ms).items())
    assert len(out) >= 30, len(out)
    return out


def answers(grafana: GrafanaInflux, db: str, queries: list[tuple[str, str]]) -> dict[str, Any]:
    return {where: grafana.query(db, q).get("series") for where, q in queries}


def test_the_token_header_is_what_lets_grafana_in(influx_server: InfluxServer, scripted_feed_db: Feed) -> None:
    assert influx_server.influx2 is not None
    rule = next(r for r in alert_rules() if r["uid"] == "cw-pipeline-stalled")
    (query,) = rule_queries(rule, int(time.time() * 1000)).values()
    db = scripted_feed_db.db.name
    assert scripted_feed_db.db.query(query)["series"], "the provisioned header reads the feed"
    header = next(iter(influx_server.grafana.headers))
    wrong = GrafanaInflux.provisioned(influx_server.url, "not-a-token")
    for name, headers in (
        ("no header", {}),
        ("wrong token", wrong.headers),
        ("Bearer scheme", {header: f"Bearer {influx_server.influx2.token}"}),
    ):
        response = requests.get(
            f"{influx_server.url}/query", params={"db": db, "q": query, "epoch": "ms"}, headers=headers, timeout=30
        )
        assert response.status_code == 401, (name, response.status_code, response.text)


@pytest.fixture
def read_only_token(influx_server: InfluxServer, scripted_feed_db: Feed) -> Iterator[str]:
    """A token that may read the feed's bucket and nothing else (.env.example's INFLUXDB_GRAFANA_TOKEN)."""
    influx2 = influx_server.influx2
    assert influx2 is not None
    org_id = influx2.org_id()
    bucket = requests.get(
        f"{influx2.url}/api/v2/buckets",
        params={"name": scripted_feed_db.db.bucket},
        headers=influx2.headers,
        timeout=10,
    ).json()["buckets"][0]
    created = requests.post(
        f"{influx2.url}/api/v2/authorizations",
        json={
            "orgID": org_id,
            "description": "grafana read-only (test)",
            "permissions": [{"action": "read", "resource": {"type": "buckets", "id": bucket["id"], "orgID": org_id}}],
        },
        headers=influx2.headers,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    try:
        yield str(created.json()["token"])
    finally:
        requests.delete(
            f"{influx2.url}/api/v2/authorizations/{created.json()['id']}", headers=influx2.headers, timeout=10
        )


def test_a_read_only_bucket_token_reads_every_query(
    influx_server: InfluxServer, scripted_feed_db: Feed, read_only_token: str
) -> None:
    assert influx_server.influx2 is not None
    queries = every_query(scripted_feed_db)
    reader = GrafanaInflux.provisioned(influx_server.url, read_only_token)
    db = scripted_feed_db.db.name
    assert answers(reader, db, queries) == answers(influx_server.grafana, db, queries)
    write = requests.post(
        f"{influx_server.url}/api/v2/write",
        params={"org": influx_server.influx2.org, "bucket": scripted_feed_db.db.bucket, "precision": "ms"},
        data=b"price,coin=intruder,vs=usd price=1.0",
        headers=reader.headers,
        timeout=10,
    )
    assert write.status_code in (401, 403), f"a read-only token wrote: {write.status_code} {write.text}"


def test_post_mode_answers_like_get(influx_server: InfluxServer, scripted_feed_db: Feed) -> None:
    assert influx_server.influx2 is not None
    queries = every_query(scripted_feed_db)
    post = GrafanaInflux.provisioned(influx_server.url, influx_server.influx2.token, http_mode="POST")
    db = scripted_feed_db.db.name
    assert answers(post, db, queries) == answers(influx_server.grafana, db, queries)


def test_the_bucket_name_answers_like_the_dbrp_mapping(influx_server: InfluxServer, scripted_feed_db: Feed) -> None:
    feed_db: Database = scripted_feed_db.db
    assert feed_db.name != feed_db.bucket, "the fixture reads through a mapping named unlike the bucket"
    queries = every_query(scripted_feed_db)
    grafana = influx_server.grafana
    assert answers(grafana, feed_db.bucket, queries) == answers(grafana, feed_db.name, queries)
    unknown = grafana.request(f"{feed_db.bucket}_missing", queries[-1][1])
    assert unknown.status_code == 200
    assert "database not found" in unknown.json()["results"][0].get("error", ""), unknown.text
