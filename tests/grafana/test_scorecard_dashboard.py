"""The "Signal scorecard" dashboard, its queries run on the real InfluxDB 1.x and 2.x on scorecard output.

``crypto-processor scorecard`` runs through its CLI on a crash-and-rebound market ending now
(tests/support/scorecard_feeds.py), writing the way production writes (v2: influxdb-client with a
token) into a database of its own: a fresh v1 database, or a v2 bucket reached through a DBRP
mapping, and on v2 through the bucket's own name as well (the mapping 2.4+ makes for every bucket,
which the dashboard's default ``crypto_scorecard`` relies on). The last crash's hints are pending
at 24 h. Then every panel query, with Grafana's macros and variables substituted as
``test_dashboards.interpolate`` does, is sent as the provisioned datasource sends it: to the
datasource's own database (here an empty one standing for the live ``crypto``), the ``$db`` text box
naming the scorecard's. For each horizon, on a relative and an absolute time range, each query must
return the columns and series its panel uses, and the numbers the CLI's ``--json`` printed: hints,
pending, medians and shares, and as quartiles InfluxQL's nearest-rank percentile of the same returns.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.pipeline import publisher
from tests.support.scorecard_cli import run_scorecard, scorecard_args
from tests.support.scorecard_feeds import HOUR, MIN, rising_after_buy
from tests.support.services import Services, unique

from .conftest import Database, InfluxServer
from .test_dashboards import (
    SCORECARD_BOARD,
    VARIABLE,
    Selection,
    all_panels,
    dashboards,
    expected_shape,
    influx_targets,
    interpolate,
)

HORIZONS = ("1h", "4h", "24h")


@dataclass(frozen=True)
class ScorecardDb:
    """A database holding one scorecard run's rows, what the CLI printed, and the range it covered."""

    db: Database
    reader: Database
    """The datasource's own database (empty): every query must reach the scorecard's by name."""
    card: dict[str, Any]
    from_ms: int
    to_ms: int
    names: tuple[str, ...]
    """What ``$db`` may say: the mapped database name, and on v2 the bucket's own name too."""


@pytest.fixture(scope="module")
def scorecard_db(
    influx_server: InfluxServer,
    empty_influx_db: Database,
    services: Services,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ScorecardDb]:
    now = int(time.time() * 1000) // MIN * MIN
    start = now - 110 * HOUR
    first_crash = start + 8 * HOUR  # crashes at 8, 36, 64 and 92 hours: the last one's 24 h is pending
    ticks = rising_after_buy(start, first_crash, now)
    topic = f"{unique('scorecard_grafana')}.ticks"
    out = publisher(services, topic, partitions=2)
    for tick in ticks:
        out.publish(tick)
    assert out.flush(60) == 0
    db = influx_server.new_database("cw_scorecard_test")
    from_ms, to_ms = start + 6 * HOUR, now - 10 * MIN
    env = {
        "CW_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "CW_TICKS_TOPIC": topic,
        "CW_DLQ_TOPIC": f"{topic}.dlq",
        "CW_TOPIC_RETENTION": "0",
    }
    if influx_server.influx2 is None:
        env |= {"CW_INFLUX_API": "v1", "CW_INFLUX_URL": influx_server.url, "CW_INFLUX_DB": "crypto"}
        target = ["--influx-db", db.bucket]
    else:
        i2 = influx_server.influx2
        env |= {
            "CW_INFLUX_API": "v2",
            "CW_INFLUX_URL": i2.url,
            "CW_INFLUX_TOKEN": i2.token,
            "CW_INFLUX_ORG": i2.org,
            "CW_INFLUX_BUCKET": "crypto",
        }
        target = ["--influx-bucket", db.bucket]
    try:
        state = tmp_path_factory.mktemp(f"scorecard-{influx_server.api}")
        card = run_scorecard(env, scorecard_args(from_ms, to_ms, target, state))
        assert card["hints"], "the crashes must raise hints"
        assert any(h["right"]["24h"] is None for h in card["hints"]), "the last crash's hints are pending at 24h"
        names = (db.name,) if db.name == db.bucket else (db.name, db.bucket)
        yield ScorecardDb(db, empty_influx_db, card, from_ms, to_ms, names)
    finally:
        influx_server.drop(db)


def board() -> dict[str, Any]:
    return dashboards()[SCORECARD_BOARD]


def test_every_query_names_the_scorecard_database() -> None:
    """The datasource reads the live database: a query without ``"$db"..`` would read that instead."""
    b = board()
    assert b["title"] == "Signal scorecard" and b["uid"] == "cw-signal-scorecard"
    assert "no promise" in b["description"]
    targets = influx_targets(b)
    assert len(targets) == 5
    for target in targets:
        assert '"$db".."scorecard' in target.query, target.where
    for variable in b["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["query"].startswith('SHOW TAG VALUES ON "$db" FROM "scorecard'), variable["name"]
    (db,) = [v for v in b["templating"]["list"] if v["name"] == "db"]
    assert db["type"] == "textbox" and db["current"]["value"] == "crypto_scorecard"


def resolve(sc: ScorecardDb, db_name: str, horizon: str, time_filter: str) -> dict[str, Selection]:
    """The variables as Grafana fills them: the text box as typed, then each query in order."""
    resolved: dict[str, Selection] = {}
    for variable in board()["templating"]["list"]:
        if variable["type"] == "textbox":
            resolved[variable["name"]] = Selection((db_name,), False)
            continue
        result = sc.reader.query(interpolate(variable["query"], resolved, time_filter))
        assert result.get("series"), f"${variable['name']}: no values"
        values = sorted({row[1] for series in result["series"] for row in series["values"]})
        if variable["name"] == "horizon":
            assert values == sorted(HORIZONS)
            resolved["horizon"] = Selection((horizon,), False)
        elif variable.get("includeAll"):
            resolved[variable["name"]] = Selection(tuple(values), True)
        else:
            assert variable["current"]["value"] in values, (variable["name"], values)
            resolved[variable["name"]] = Selection((variable["current"]["value"],), False)
    assert set(resolved["coin"].values) == {"alpha", "beta"}
    return resolved


def nearest_rank(values: list[float], percentile: float) -> float | None:
    """InfluxQL's ``percentile()``: the value at rank floor(n x p / 100 + 0.5) of the sorted values."""
    ordered = sorted(values)
    i = math.floor(len(ordered) * percentile / 100.0 + 0.5) - 1
    return ordered[i] if 0 <= i < len(ordered) else None


def approx(value: float | None) -> Any:
    return None if value is None else pytest.approx(value, rel=1e-12, abs=1e-12)


def rows_of(series: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(series["columns"], row, strict=True)) for row in series["values"]]


def check_hint_table(sc: ScorecardDb, horizon: str, result: dict[str, Any]) -> None:
    groups = {
        (g["coin"], g["kind"], g["rule"], g["window"], g["direction"]): g for g in sc.card["groups"] if g["vs"] == "usd"
    }
    seen = set()
    for series in result["series"]:
        t = series["tags"]
        key = (t["coin"], t["kind"], t["rule"], t["window"], t["direction"])
        group = groups[key]
        (row,) = rows_of(series)
        stats = group["horizons"][horizon]
        returns = [
            h["returns_pct"][horizon]
            for h in sc.card["hints"]
            if (h["coin"], h["kind"], h["rule"], h["window"], h["direction"]) == key
            and h["returns_pct"][horizon] is not None
        ]
        assert (row["hints"], row["pending"]) == (group["hints"], stats["pending"]), key
        assert row["median_pct"] == approx(stats["median_pct"]), key
        assert row["right_pct"] == approx(stats["right_pct"]), key
        assert (row["q1_pct"], row["q3_pct"]) == (nearest_rank(returns, 25), nearest_rank(returns, 75)), key
        seen.add(key)
    assert seen == set(groups), "one row per group the CLI reported"


def check_baseline_table(sc: ScorecardDb, horizon: str, result: dict[str, Any]) -> None:
    baseline = {b["coin"]: b for b in sc.card["baseline"]}
    assert {s["tags"]["coin"] for s in result["series"]} == set(baseline)
    for series in result["series"]:
        base = baseline[series["tags"]["coin"]]
        stats = base["horizons"][horizon]
        (row,) = rows_of(series)
        assert (row["moments"], row["pending"]) == (base["moments"], stats["pending"])
        assert row["median_pct"] == approx(stats["median_pct"])
        assert (row["up_pct"], row["down_pct"]) == (approx(stats["up_pct"]), approx(stats["down_pct"]))


def check_forward_returns(sc: ScorecardDb, horizon: str, result: dict[str, Any], ref: str) -> None:
    if ref == "B":  # the baseline's median line
        assert all(v[1] is not None for s in result["series"] for v in s["values"])
        return
    got: dict[tuple[str, str], Counter[tuple[int, float]]] = {}
    for series in result["series"]:
        key = (series["tags"]["kind"], series["tags"]["window"])
        got[key] = Counter((row[0], row[1]) for row in series["values"])
    expected: dict[tuple[str, str], Counter[tuple[int, float]]] = {}
    for h in sc.card["hints"]:
        if h["returns_pct"][horizon] is not None:
            expected.setdefault((h["kind"], h["window"]), Counter())[(h["event_time"], h["returns_pct"][horizon])] += 1
    assert got == expected


def check_every_hint(sc: ScorecardDb, horizon: str, result: dict[str, Any]) -> None:
    (series,) = result["series"]
    rows = rows_of(series)
    assert len(rows) == len(sc.card["hints"]) <= 500
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True), "newest first"
    got = Counter(
        (r["time"], r["coin"], r["kind"], r["rule"], r["window"], r["direction"], r["price"], r["ret_pct"], r["right"])
        for r in rows
    )
    expected = Counter(
        (
            h["event_time"],
            h["coin"],
            h["kind"],
            h["rule"],
            h["window"],
            h["direction"],
            h["price"],
            h["returns_pct"][horizon],
            None if h["right"][horizon] is None else float(h["right"][horizon]),
        )
        for h in sc.card["hints"]
    )
    assert got == expected
    for r in rows:
        assert r["pending"] == (1.0 if r["ret_pct"] is None else 0.0)
        if r["ret_pct"] is not None:
            assert r["exit_price"] == pytest.approx(r["price"] * (1 + r["ret_pct"] / 100), rel=1e-9)


CHECKS = {
    "Hints against the baseline ($horizon after)": check_hint_table,
    "Baseline: every tick ($horizon after)": check_baseline_table,
    "Every hint ($horizon after)": check_every_hint,
}


@pytest.mark.services
@pytest.mark.parametrize("range_kind", ["relative", "absolute"])
@pytest.mark.parametrize("horizon", HORIZONS)
def test_scorecard_panels_show_what_the_cli_computed(scorecard_db: ScorecardDb, horizon: str, range_kind: str) -> None:
    sc = scorecard_db
    time_filter = {
        "relative": "time > now() - 30d",
        "absolute": f"time >= {sc.from_ms}ms and time <= {sc.to_ms}ms",
    }[range_kind]
    targets = influx_targets(board())
    assert {t.panel["title"] for t in targets if t.panel} == {*CHECKS, "Forward return after each hint ($horizon, %)"}
    for db_name in sc.names:
        variables = resolve(sc, db_name, horizon, time_filter)
        for target in targets:
            query = interpolate(target.query, variables, time_filter)
            assert not VARIABLE.search(query), f"{target.where}: unsubstituted {query}"
            result = sc.reader.query(query)
            assert result.get("series"), f"{target.where}: no data from\n{query}"
            shape = expected_shape(query)
            for series in result["series"]:
                assert series["columns"] == shape.columns, (target.where, series["columns"])
                assert set(series.get("tags", {})) == shape.group_tags, (target.where, series.get("tags"))
                assert series["values"], target.where
            assert target.panel is not None
            title = target.panel["title"]
            if title in CHECKS:
                CHECKS[title](sc, horizon, result)
            else:
                check_forward_returns(sc, horizon, result, target.where.rsplit(" / ", 1)[1])
            for transformation in target.panel.get("transformations", []):
                if transformation["id"] == "organize":
                    named = set(transformation["options"]["indexByName"]) | set(
                        transformation["options"]["renameByName"]
                    )
                    assert named <= set(shape.columns) | shape.group_tags, (target.where, named)
            for override in target.panel.get("fieldConfig", {}).get("overrides", []):
                if override["matcher"]["id"] == "byName" and target.result_format == "table":
                    assert override["matcher"]["options"] in set(shape.columns) | shape.group_tags, target.where


@pytest.mark.services
def test_an_unknown_scorecard_database_is_an_error_not_an_empty_panel(scorecard_db: ScorecardDb) -> None:
    """A mistyped ``$db`` must say so (InfluxDB: database not found), not show an empty scorecard."""
    (target,) = [t for t in influx_targets(board()) if t.panel and t.panel["title"].startswith("Every hint")]
    variables = {
        "db": Selection(("no_such_scorecard_db",), False),
        "vs": Selection(("usd",), False),
        "coin": Selection(("alpha",), True),
        "horizon": Selection(("1h",), False),
    }
    response = scorecard_db.reader.server.grafana.request(
        scorecard_db.reader.name, interpolate(target.query, variables, "time > now() - 30d")
    )
    body = response.text
    assert response.status_code != 200 or "error" in body, body
    assert "not found" in body or "no such" in body.lower() or "database" in body, body


def test_panels_are_all_influx_and_described() -> None:
    for panel in all_panels(board()):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "cw-influxdb" and panel["description"], panel["title"]
