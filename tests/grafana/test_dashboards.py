"""Grafana dashboards, Grafana alert rules and Prometheus configuration, tested for real.

- the committed JSON/YAML is exactly what ``grafana/generate.py`` writes;
- provisioning files parse and agree with each other (datasource uids, contact points);
- every InfluxQL query (panels, annotations, variables, alert rules), with Grafana's macros and
  variables substituted, sent as the provisioned datasource sends it, runs on a real InfluxDB 2
  (what compose and the Helm chart deploy) and a real InfluxDB 1.x, each holding a scripted feed
  the real processor wrote, and returns the series and columns its panel uses; the alert rules'
  expression chains fire where the script says they must;
- every PromQL expression parses and type-checks (promtool), and promtool accepts the Prometheus
  configuration, rules and rule unit tests.
"""

from __future__ import annotations

import ast
import json
import operator
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from crypto_watcher.config import ProcessorSettings

from .conftest import Database, Feed

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"
PROMETHEUS = ROOT / "prometheus"

INFLUX_TYPE = "influxdb"
BUILTIN_UIDS = {"-- Grafana --", "grafana", "__expr__"}
INTERVAL = "1m"
"""What Grafana would pick for $__interval on a ~1h range; any valid duration does."""


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))}


def alert_rules() -> list[dict[str, Any]]:
    document = load_yaml(PROVISIONING / "alerting" / "rules.yaml")
    return [rule for group in document["groups"] for rule in group["rules"]]


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def datasource_uids(node: Any) -> Iterator[str]:
    """Every ``datasource.uid`` and ``datasourceUid`` anywhere in a JSON/YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and isinstance(value, dict) and "uid" in value:
                yield value["uid"]
            elif key == "datasourceUid":
                yield value
            yield from datasource_uids(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_uids(item)


# --- generated files ------------------------------------------------------------------------


def run_generate(
    *args: str,
    cwd: Path = ROOT,
    script: Path = GRAFANA / "generate.py",
) -> subprocess.CompletedProcess[str]:
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError:
        pytest.fail(
            'grafana-foundation-sdk is not installed: pip install "grafana-foundation-sdk==1769699998!10.1.0"',
            pytrace=False,
        )
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_generate_check_passes_on_committed_files() -> None:
    result = run_generate("--check")
    assert result.returncode == 0, (
        "committed dashboards/rules differ from grafana/generate.py's output; run "
        f"`python grafana/generate.py`\n{result.stdout}\n{result.stderr}"
    )


def test_generate_reproduces_committed_files_byte_for_byte(tmp_path: Path) -> None:
    copy = tmp_path / "grafana"
    shutil.copytree(GRAFANA, copy, ignore=shutil.ignore_patterns("__pycache__", ".mypy_cache", ".ruff_cache"))
    for path in (copy / "dashboards").glob("*.json"):
        path.unlink()
    (copy / "provisioning" / "alerting" / "rules.yaml").unlink()
    result = run_generate(script=copy / "generate.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    committed = [
        *(Path("dashboards") / p.name for p in DASHBOARDS.glob("*.json")),
        Path("provisioning/alerting/rules.yaml"),
    ]
    assert len(committed) == 5
    for rel in committed:
        assert (copy / rel).read_bytes() == (GRAFANA / rel).read_bytes(), f"{rel} differs"
    for path in (copy / "dashboards").glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert text.endswith("}\n") and not text.endswith("\n\n"), f"{path.name}: trailing newline"


def test_generate_check_fails_with_a_diff_when_a_file_drifts(tmp_path: Path) -> None:
    copy = tmp_path / "grafana"
    shutil.copytree(GRAFANA, copy, ignore=shutil.ignore_patterns("__pycache__", ".mypy_cache", ".ruff_cache"))
    target = copy / "dashboards" / "coin-detail.json"
    target.write_text(target.read_text().replace('"refresh": "10s"', '"refresh": "1m"'))
    result = run_generate("--check", script=copy / "generate.py", cwd=tmp_path)
    assert result.returncode != 0
    assert '-  "refresh": "1m",' in result.stdout and '+  "refresh": "10s",' in result.stdout
    assert target.read_text().count('"refresh": "1m"') == 1, "--check must not write"


def test_dashboards_have_unique_uids_titles_and_panel_ids() -> None:
    boards = dashboards()
    assert set(boards) == {"market-overview.json", "coin-detail.json", "pipeline-health.json", SCORECARD_BOARD}
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == len(uids), uids
    assert len({board["title"] for board in boards.values()}) == len(boards)
    for name, board in boards.items():
        assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"]), (name, board["uid"])
        assert board["refresh"] == "10s", name
        assert board["time"]["to"] == "now", name
        ids = [panel["id"] for panel in all_panels(board)]
        assert len(set(ids)) == len(ids) and 0 not in ids, (name, ids)
        for panel in all_panels(board):
            if panel["type"] == "row":
                continue
            assert panel.get("title") and panel.get("description"), (name, panel.get("title"))
            assert panel["targets"], (name, panel["title"])
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert all(ref_ids) and len(set(ref_ids)) == len(ref_ids), (name, panel["title"])
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"], grid)


# --- provisioning ---------------------------------------------------------------------------


def test_provisioning_files_parse_and_have_api_version_1() -> None:
    files = sorted(PROVISIONING.rglob("*.yaml"))
    assert {p.relative_to(PROVISIONING).as_posix() for p in files} >= {
        "datasources/datasources.yaml",
        "dashboards/dashboards.yaml",
        "alerting/rules.yaml",
        "alerting/contactpoints.yaml",
        "alerting/policies.yaml",
    }
    for path in files:
        assert load_yaml(path)["apiVersion"] == 1, path


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    document = load_yaml(PROVISIONING / "datasources" / "datasources.yaml")
    return {ds["uid"]: ds for ds in document["datasources"]}


def test_datasources_influxql_with_token_header_and_prometheus() -> None:
    sources = provisioned_datasources()
    influx, prom = sources["cw-influxdb"], sources["cw-prometheus"]
    assert influx["type"] == "influxdb" and influx["url"] == "${INFLUX_URL}"
    assert influx["jsonData"]["version"] == "InfluxQL"
    assert influx["jsonData"]["dbName"] == "crypto"
    assert influx["jsonData"]["httpHeaderName1"] == "Authorization"
    assert influx["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUX_TOKEN}"
    assert prom["type"] == "prometheus" and prom["url"] == "${PROMETHEUS_URL}"
    assert len({ds["name"] for ds in sources.values()}) == len(sources)


def test_datasource_database_is_the_one_compose_maps_to_the_bucket() -> None:
    """InfluxDB 2 serves InfluxQL only through a DBRP mapping: compose's init script maps a database
    to whatever bucket INFLUXDB_BUCKET names, and the datasource must ask for that database (a
    wrong name is an InfluxQL error on every panel). Without compose, InfluxDB 2.4+ maps each
    bucket's own name, which the processor's default bucket matches."""
    compose = load_yaml(ROOT / "docker-compose.yml")
    init = compose["configs"]["influxdb-init"]["content"]
    mapped = re.search(r"influx v1 dbrp create --db (\S+) ", init)
    assert mapped, init
    db_name = provisioned_datasources()["cw-influxdb"]["jsonData"]["dbName"]
    assert db_name == mapped.group(1)
    assert db_name == ProcessorSettings.model_fields["influx_bucket"].default


def test_every_referenced_datasource_uid_is_provisioned() -> None:
    provisioned = set(provisioned_datasources())
    for name, board in dashboards().items():
        missing = set(datasource_uids(board)) - provisioned - BUILTIN_UIDS
        assert not missing, f"{name} refers to unknown datasources {missing}"
    rules_doc = load_yaml(PROVISIONING / "alerting" / "rules.yaml")
    missing = set(datasource_uids(rules_doc)) - provisioned - BUILTIN_UIDS
    assert not missing, f"alert rules refer to unknown datasources {missing}"


def test_dashboard_provider_points_at_the_dashboards_folder() -> None:
    provider = load_yaml(PROVISIONING / "dashboards" / "dashboards.yaml")["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    # Dashboards and alert rules share one folder, found by title.
    rules = load_yaml(PROVISIONING / "alerting" / "rules.yaml")
    assert {group["folder"] for group in rules["groups"]} == {provider["folder"]}


def test_alert_rules_are_well_formed_expression_chains() -> None:
    document = load_yaml(PROVISIONING / "alerting" / "rules.yaml")
    boards = {board["uid"]: board for board in dashboards().values()}
    uids = []
    for group in document["groups"]:
        assert {"orgId", "name", "folder", "interval", "rules"} <= set(group)
        for rule in group["rules"]:
            uids.append(rule["uid"])
            assert len(rule["uid"]) <= 40
            assert rule["noDataState"] in ("OK", "NoData", "Alerting")
            assert rule["execErrState"] in ("OK", "Error", "Alerting")
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in ("info", "warning", "critical")
            assert rule["annotations"]["summary"]
            refs = {query["refId"]: query for query in rule["data"]}
            assert rule["condition"] in refs
            condition = refs[rule["condition"]]
            assert condition["datasourceUid"] == "__expr__"
            assert condition["model"]["type"] == "threshold", rule["title"]
            for query in rule["data"]:
                assert query["model"]["refId"] == query["refId"]
                assert set(query["relativeTimeRange"]) == {"from", "to"}
                model = query["model"]
                if query["datasourceUid"] != "__expr__":
                    assert query["relativeTimeRange"]["from"] > 0
                    continue
                assert model["type"] in ("reduce", "math", "threshold")
                used = (
                    set(re.findall(r"\$([A-Z])\b", model["expression"]))
                    if model["type"] == "math"
                    else {model["expression"]}
                )
                assert used and used <= set(refs) - {query["refId"]}, (rule["title"], used)
                if model["type"] == "threshold":
                    evaluator = model["conditions"][0]["evaluator"]
                    assert evaluator["type"] in ("gt", "lt") and len(evaluator["params"]) == 1
            # The rule links to an existing panel of an existing dashboard.
            board = boards[rule["dashboardUid"]]
            assert rule["panelId"] in {p["id"] for p in all_panels(board)}
    assert len(set(uids)) == len(uids), uids


def test_contact_points_and_policies_agree() -> None:
    contact_points = load_yaml(PROVISIONING / "alerting" / "contactpoints.yaml")["contactPoints"]
    names = {cp["name"] for cp in contact_points}
    for cp in contact_points:
        for receiver in cp["receivers"]:
            assert receiver["uid"] and receiver["type"]
            assert any("${" in str(v) for v in receiver["settings"].values()), (
                "contact point settings come from environment placeholders"
            )
    policies = load_yaml(PROVISIONING / "alerting" / "policies.yaml")["policies"]

    def receivers(route: dict[str, Any]) -> Iterator[str]:
        yield route["receiver"]
        for child in route.get("routes", []):
            yield from receivers(child)

    for policy in policies:
        assert set(receivers(policy)) <= names


# --- InfluxQL against a real InfluxDB --------------------------------------------------------

GRAFANA_REGEX_SPECIALS = re.compile(r"([\\^$*+?.()|\[\]{}/])")
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")
REGEX_LITERAL = re.compile(r"(=~|!~)\s*/((?:\\/|[^/])*)/")
MACROS = ("timeFilter", "__timeFilter", "__interval", "interval", "__interval_ms")


def grafana_regex_escape(value: str) -> str:
    """What Grafana's InfluxDB datasource does to a multi-value variable's values."""
    return GRAFANA_REGEX_SPECIALS.sub(r"\\\1", value)


@dataclass(frozen=True)
class Selection:
    values: tuple[str, ...]
    multi: bool  # multi-value or "All": rendered as a regex group, must sit inside /.../


def interpolate(query: str, variables: dict[str, Selection], time_filter: str) -> str:
    """Grafana's substitution for InfluxQL: macros, then variables (regex form inside /.../)."""

    def substitute(text: str, in_regex: bool) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2) or match.group(3)
            if name in ("timeFilter", "__timeFilter"):
                return time_filter
            if name in ("__interval", "interval"):
                return INTERVAL
            if name == "__interval_ms":
                return "60000"
            if name not in variables:
                raise AssertionError(f"unknown variable ${name} in {query}")
            selection = variables[name]
            if not selection.multi:
                return selection.values[0]
            assert in_regex, f"multi-value ${name} used outside a regex: {query}"
            escaped = [grafana_regex_escape(v) for v in selection.values]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

        return VARIABLE.sub(one, text)

    out, last = [], 0
    for match in REGEX_LITERAL.finditer(query):
        out.append(substitute(query[last : match.start(2)], in_regex=False))
        out.append(substitute(match.group(2), in_regex=True))
        last = match.end(2)
    out.append(substitute(query[last:], in_regex=False))
    return "".join(out)


def split_top_level(text: str) -> list[str]:
    parts, depth, current, quote = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    parts.append(current.strip())
    return parts


@dataclass(frozen=True)
class Expected:
    columns: list[str]
    group_tags: set[str]


def expected_shape(query: str) -> Expected:
    """The columns and series tags an InfluxQL statement must return, read from the statement:
    every selected expression needs ``AS "name"`` unless it is a bare field or tag."""
    if query.upper().startswith("SHOW TAG VALUES"):
        return Expected(["key", "value"], set())
    select = re.match(r"SELECT\s+(.*?)\s+FROM\s", query, re.S)
    assert select, query
    columns = ["time"]
    for item in split_top_level(select.group(1)):
        alias = re.search(r'\s+AS\s+"([^"]+)"$', item)
        bare = re.fullmatch(r'"([^"]+)"', item)
        assert alias or bare, f'give {item!r} an alias (AS "name") in: {query}'
        columns.append((alias or bare).group(1))  # type: ignore[union-attr]
    group = re.search(r"GROUP BY\s+(.*?)(?:\s+fill\(|\s+ORDER|\s+LIMIT|$)", query, re.S)
    tags = set()
    if group:
        for item in split_top_level(group.group(1)):
            if not item.startswith("time("):
                tags.add(item.strip('"'))
    return Expected(columns, tags)


@dataclass(frozen=True)
class InfluxTarget:
    where: str
    query: str
    result_format: str = "time_series"
    alias: str | None = None
    panel: dict[str, Any] | None = None
    annotation: dict[str, Any] | None = None


def influx_targets(board: dict[str, Any]) -> list[InfluxTarget]:
    targets = []
    for panel in all_panels(board):
        for target in panel.get("targets", []):
            datasource = target.get("datasource") or panel.get("datasource") or {}
            if datasource.get("type") == INFLUX_TYPE:
                targets.append(
                    InfluxTarget(
                        f"{board['title']} / {panel['title']} / {target['refId']}",
                        target["query"],
                        target.get("resultFormat", "time_series"),
                        target.get("alias"),
                        panel=panel,
                    )
                )
    for annotation in board.get("annotations", {}).get("list", []):
        if annotation["datasource"].get("type") == INFLUX_TYPE:
            targets.append(
                InfluxTarget(
                    f"{board['title']} / annotation {annotation['name']}",
                    annotation["target"]["query"],
                    "table",
                    annotation=annotation,
                )
            )
    return targets


SCORECARD_BOARD = "signal-scorecard.json"
"""Reads what ``crypto-processor scorecard`` writes, not the live feed: test_scorecard_dashboard.py checks it."""


def influx_boards() -> list[str]:
    """The dashboards of the live data (the scripted feed below fills it)."""
    return [name for name, board in dashboards().items() if influx_targets(board) and name != SCORECARD_BOARD]


def resolve_variables(
    board: dict[str, Any],
    db: Database,
    time_filter: str,
    pick: Callable[[list[str], dict[str, Any]], tuple[str, ...]],
) -> dict[str, Selection]:
    """Runs each variable's query in order, as Grafana does, and picks values from the result."""
    resolved: dict[str, Selection] = {}
    for variable in board.get("templating", {}).get("list", []):
        assert variable["datasource"]["type"] == INFLUX_TYPE, variable["name"]
        query = interpolate(variable["query"], resolved, time_filter)
        result = db.query(query)
        assert result.get("series"), f"variable ${variable['name']}: no values from {query}"
        values = sorted({row[1] for series in result["series"] for row in series["values"]})
        chosen = pick(values, variable)
        assert chosen, variable["name"]
        resolved[variable["name"]] = Selection(chosen, bool(variable.get("multi") or variable.get("includeAll")))
    return resolved


def pick_defaults(values: list[str], variable: dict[str, Any]) -> tuple[str, ...]:
    """The dashboard as it opens: "All" for multi variables, else the saved current value."""
    if variable.get("includeAll"):
        return tuple(values)
    current = variable.get("current", {}).get("value")
    assert current in values, f"${variable['name']} defaults to {current!r}, not in {values}"
    return (current,)


def pick_others(feed: Feed) -> Callable[[list[str], dict[str, Any]], tuple[str, ...]]:
    """Another user's choice: the coin that crashed (it has candles, changes and alerts; for the
    multi-value coin variable a one-element regex), and for the others the last value listed
    rather than the default."""

    def pick(values: list[str], variable: dict[str, Any]) -> tuple[str, ...]:
        if variable["name"] == "coin":
            return (feed.crashing,)
        return (values[-1],)

    return pick


def time_filters(feed: Feed) -> dict[str, str]:
    """$timeFilter two ways: "absolute" is what Grafana's backend sends for any range (epoch ms,
    ``time >= …ms and time <= …ms``); "relative" is the ``now()`` form the frontend renders a relative range in."""
    return {
        "relative": "time > now() - 1h",
        "absolute": f"time >= {feed.start_ms}ms and time <= {feed.end_ms}ms",
    }


def check_result(
    target: InfluxTarget, query: str, result: dict[str, Any], variables: dict[str, Selection]
) -> list[str]:
    """Asserts the result has what the panel uses; returns the column names."""
    series = result.get("series")
    assert series, f"{target.where}: no data from\n{query}"
    shape = expected_shape(query)
    for one in series:
        assert one["columns"] == shape.columns, f"{target.where}: columns {one['columns']} != {shape.columns}\n{query}"
        assert set(one.get("tags", {})) == shape.group_tags, (target.where, one.get("tags"))
        assert one["values"], f"{target.where}: empty series {one.get('tags')}"
        assert any(all(v is not None for v in row) for row in one["values"]), (
            f"{target.where}: no complete row in {one.get('tags')}"
        )
    for tag in re.findall(r"\$tag_(\w+)", target.alias or ""):
        assert tag in shape.group_tags, f"{target.where}: alias uses $tag_{tag}, not grouped by"
    # Series only for the selected pair(s).
    for name in ("coin", "vs"):
        if name in variables:
            for one in series:
                value = one.get("tags", {}).get(name)
                assert value is None or value in variables[name].values, (target.where, value)
    return shape.columns + sorted(shape.group_tags)


def check_panel_uses(target: InfluxTarget, columns: list[str], result: dict[str, Any]) -> None:
    """Fields the panel options and transformations name exist in the result."""
    panel, annotation = target.panel, target.annotation
    if annotation is not None:
        named = [
            annotation["target"]["textColumn"],
            annotation["target"]["titleColumn"],
            *annotation["target"]["tagsColumn"].split(","),
        ]
        assert set(named) <= set(columns), (target.where, named, columns)
        return
    assert panel is not None
    if panel["type"] == "candlestick":
        assert target.result_format == "table"
        assert set(panel["options"]["fields"].values()) <= set(columns), target.where
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "groupingToMatrix":
            options = transformation["options"]
            assert {options["rowField"], options["columnField"], options["valueField"]} <= set(columns), target.where
            present = {s["tags"][options["columnField"]] for s in result["series"]}
            order = transformation_order(panel)
            assert present <= set(order), f"{target.where}: windows {present} not ordered"


def transformation_order(panel: dict[str, Any]) -> list[str]:
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "organize":
            return list(transformation["options"]["indexByName"])
    return []


@pytest.mark.services
@pytest.mark.parametrize("range_kind", ["relative", "absolute"])
@pytest.mark.parametrize("choice", ["defaults", "others"])
@pytest.mark.parametrize("board_name", influx_boards())
def test_influxql_panels_return_what_they_show(
    scripted_feed_db: Feed, board_name: str, choice: str, range_kind: str
) -> None:
    board = dashboards()[board_name]
    time_filter = time_filters(scripted_feed_db)[range_kind]
    pick = pick_defaults if choice == "defaults" else pick_others(scripted_feed_db)
    variables = resolve_variables(board, scripted_feed_db.db, time_filter, pick)
    targets = influx_targets(board)
    assert targets
    for target in targets:
        query = interpolate(target.query, variables, time_filter)
        assert not VARIABLE.search(query), f"{target.where}: unsubstituted {query}"
        result = scripted_feed_db.db.query(query)
        columns = check_result(target, query, result, variables)
        check_panel_uses(target, columns, result)


@pytest.mark.services
def test_market_overview_variables_list_the_feed(scripted_feed_db: Feed) -> None:
    board = dashboards()["market-overview.json"]
    variables = resolve_variables(board, scripted_feed_db.db, "time > now() - 1h", pick_defaults)
    assert set(variables["coin"].values) == set(scripted_feed_db.coins)
    assert variables["vs"].values == ("usd",)
    assert variables["window"].values == ("15m",)


@pytest.mark.services
def test_coin_detail_candles_and_alerts_follow_the_selected_coin(scripted_feed_db: Feed) -> None:
    board = dashboards()["coin-detail.json"]
    variables = resolve_variables(
        board,
        scripted_feed_db.db,
        "time > now() - 1h",
        lambda values, v: (scripted_feed_db.crashing,) if v["name"] == "coin" else pick_defaults(values, v),
    )
    assert set(variables["candle"].values) <= set(scripted_feed_db.candle_intervals)
    alerts = next(t for t in influx_targets(board) if t.where.endswith("Alerts ($coin/$vs) / A"))
    result = scripted_feed_db.db.query(interpolate(alerts.query, variables, "time > now() - 1h"))
    rows = result["series"][0]["values"]
    kinds = {row[result["series"][0]["columns"].index("kind")] for row in rows}
    # the real processor also flags the crash's volatility and an RSI buy hint; never a spike
    assert "drop" in kinds and "spike" not in kinds, kinds


# --- Grafana alert rules: queries on the real InfluxDB, expressions evaluated ------------------

Series = dict[tuple[tuple[str, str], ...], list[float]]
_MATH_OPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def _math(expression: str, values: dict[str, float]) -> float:
    """Grafana's math expression, for the subset the rules use: $X, numbers, + - * /, abs()."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _MATH_OPS:
            return _MATH_OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "abs"
            and len(node.args) == 1
        ):
            return abs(ev(node.args[0]))
        raise AssertionError(f"math expression not understood: {expression}")

    return ev(ast.parse(expression.replace("$", ""), mode="eval"))


_REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "last": lambda xs: xs[-1],
    "sum": sum,
    "min": min,
    "max": max,
    "mean": lambda xs: sum(xs) / len(xs),
    "count": lambda xs: float(len(xs)),
}


def evaluate_rule(rule: dict[str, Any], query_results: dict[str, Series]) -> set[tuple[Any, ...]] | None:
    """The label sets the rule fires for, or None for "no data"."""
    numbers: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    firing: dict[tuple[tuple[str, str], ...], bool] = {}
    for query in rule["data"]:
        model, ref = query["model"], query["refId"]
        if query["datasourceUid"] != "__expr__":
            continue
        if model["type"] == "reduce":
            source = query_results[model["expression"]]
            if not source:
                return None
            numbers[ref] = {
                labels: _REDUCERS[model["reducer"]]([v for v in points if v is not None])
                for labels, points in source.items()
            }
        elif model["type"] == "math":
            used = re.findall(r"\$([A-Z])\b", model["expression"])
            labels_sets = numbers[used[0]].keys()
            numbers[ref] = {
                labels: _math(model["expression"], {u: numbers[u][labels] for u in used}) for labels in labels_sets
            }
        elif model["type"] == "threshold":
            evaluator = model["conditions"][0]["evaluator"]
            limit = evaluator["params"][0]
            compare = operator.gt if evaluator["type"] == "gt" else operator.lt
            firing = {labels: compare(value, limit) for labels, value in numbers[model["expression"]].items()}
    return {labels for labels, fires in firing.items() if fires}


def rule_time_filter(relative: dict[str, int], now_ms: int) -> str:
    """``$timeFilter`` as Grafana's backend renders it for a rule query's relativeTimeRange (seconds
    before now): absolute epoch milliseconds (pkg/tsdb/influxdb/models/query.go, renderTimeFilter)."""
    return f"time >= {now_ms - relative['from'] * 1000}ms and time <= {now_ms - relative['to'] * 1000}ms"


def rule_queries(rule: dict[str, Any], now_ms: int) -> dict[str, str]:
    """Each InfluxDB query of the rule, by refId, exactly as Grafana sends it at ``now_ms``."""
    return {
        query["refId"]: interpolate(query["model"]["query"], {}, rule_time_filter(query["relativeTimeRange"], now_ms))
        for query in rule["data"]
        if query["datasourceUid"] == "cw-influxdb"
    }


def run_rule_queries(rule: dict[str, Any], db: Database) -> dict[str, Series]:
    results: dict[str, Series] = {}
    for ref, text in rule_queries(rule, int(time.time() * 1000)).items():
        result = db.query(text)
        series: Series = {}
        for one in result.get("series", []):
            shape = expected_shape(text)
            assert one["columns"] == shape.columns, (rule["title"], one["columns"])
            assert set(one.get("tags", {})) == shape.group_tags, rule["title"]
            labels = tuple(sorted(one.get("tags", {}).items()))
            series[labels] = [row[1] for row in one["values"]]
        results[ref] = series
    return results


def influx_rules() -> list[dict[str, Any]]:
    return [rule for rule in alert_rules() if any(q["datasourceUid"] == "cw-influxdb" for q in rule["data"])]


@pytest.mark.services
@pytest.mark.parametrize("rule", influx_rules(), ids=lambda rule: rule["uid"])
def test_grafana_influxql_rules_run_and_fire_as_scripted(scripted_feed_db: Feed, rule: dict[str, Any]) -> None:
    feed = scripted_feed_db
    results = run_rule_queries(rule, feed.db)
    firing = evaluate_rule(rule, results)
    pairs = {(coin, vs) for coin in feed.coins for vs in feed.vs}
    if rule["uid"] == "cw-pipeline-stalled":
        assert results["A"], "prices were written minutes ago: the stall query must find them"
        assert firing == set()
        return
    assert results["A"], f"{rule['title']}: the query found no window results"
    fired = {(dict(labels)["coin"], dict(labels)["vs"]) for labels in firing or set()}
    seen = {(dict(labels)["coin"], dict(labels)["vs"]) for labels in results["A"]}
    expected: set[tuple[str, str]] = set()
    if rule["uid"] == "cw-drop-15m":
        expected = {(feed.crashing, vs) for vs in feed.vs}
    elif rule["uid"] == "cw-spike-15m":
        expected = {(feed.spiking, vs) for vs in feed.vs}
    assert fired == expected, f"{rule['title']}: fired for {fired}, expected {expected}"
    if "tether" in rule["title"]:
        assert seen == {(feed.stable, "usd")}, "the stablecoin override watches tether/usd only"
    elif rule["uid"].endswith("-1h"):
        assert seen == pairs - {(feed.stable, "usd")}, "the general 1h rule skips the override"
    else:
        assert seen == pairs


@pytest.mark.services
def test_pipeline_stalled_rule_alerts_on_no_data(empty_influx_db: Database) -> None:
    rule = next(r for r in alert_rules() if r["uid"] == "cw-pipeline-stalled")
    results = run_rule_queries(rule, empty_influx_db)
    assert results["A"] == {}
    assert evaluate_rule(rule, results) is None, "no price point at all is 'no data'"
    assert rule["noDataState"] == "Alerting", "…and 'no data' must fire the stall alert"


# --- PromQL and promtool ---------------------------------------------------------------------

PROMQL_MACROS = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "1m", "${__range}": "1h"}


def promql_expressions() -> dict[str, str]:
    exprs: dict[str, str] = {}
    for board in dashboards().values():
        for panel in all_panels(board):
            for target in panel.get("targets", []):
                datasource = target.get("datasource") or panel.get("datasource") or {}
                if datasource.get("type") == "prometheus":
                    exprs[f"{board['title']} / {panel['title']} / {target['refId']}"] = target["expr"]
    for rule in alert_rules():
        for query in rule["data"]:
            if query["datasourceUid"] == "cw-prometheus":
                exprs[f"rule {rule['uid']} / {query['refId']}"] = query["model"]["expr"]
    return exprs


def test_every_promql_expression_parses(promtool: str, tmp_path: Path) -> None:
    exprs = promql_expressions()
    assert len(exprs) >= 20, exprs
    rules = []
    for i, (where, expr) in enumerate(sorted(exprs.items())):
        for macro, value in PROMQL_MACROS.items():
            expr = expr.replace(macro, value)
        assert "$" not in expr, f"{where}: unsubstituted macro in {expr}"
        rules.append({"record": f"cw:grafana_expr_{i}", "expr": expr})
    path = tmp_path / "grafana-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, (
        f"promtool rejected a PromQL expression:\n{result.stdout}{result.stderr}\n"
        + "\n".join(f"cw:grafana_expr_{i}: {w}" for i, w in enumerate(sorted(exprs)))
    )
    # promtool must catch a broken expression, or this test proves nothing.
    path.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "g", "rules": [{"record": "cw:broken", "expr": "rate(cw_processor_ticks_total)"}]}]}
        )
    )
    broken = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert broken.returncode != 0


def test_dashboards_and_rules_select_the_scrape_jobs() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"cw-producer", "cw-processor", "cw-notifier"} <= jobs
    for where, expr in promql_expressions().items():
        for selector in re.findall(r'job=~"([^"]+)"', expr):
            assert {"cw-producer", "cw-processor", "cw-notifier"} <= {j for j in jobs if re.fullmatch(selector, j)}, (
                where
            )


def test_local_config_scrapes_the_same_jobs_on_127_0_0_1() -> None:
    compose = load_yaml(PROMETHEUS / "prometheus.yml")
    local = load_yaml(PROMETHEUS / "prometheus-local.yml")
    ports = {"cw-producer": 9101, "cw-processor": 9102, "cw-notifier": 9103}
    assert compose["rule_files"] == local["rule_files"]
    for config, host in ((compose, None), (local, "127.0.0.1")):
        targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
        for job, port in ports.items():
            (target,) = targets[job]
            name, _, target_port = target.rpartition(":")
            assert int(target_port) == port, (job, target)
            assert name == (host or job.removeprefix("cw-")), (job, target)


def run_promtool(promtool: str, *args: str) -> None:
    result = subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


def test_promtool_check_config(promtool: str) -> None:
    run_promtool(promtool, "check", "config", "prometheus.yml", "prometheus-local.yml")


def test_promtool_check_rules(promtool: str) -> None:
    run_promtool(promtool, "check", "rules", "rules/crypto-watcher.yml")


def test_promtool_test_rules(promtool: str) -> None:
    run_promtool(promtool, "test", "rules", "rules/crypto-watcher.test.yml")


def test_every_prometheus_alert_has_a_unit_test() -> None:
    rules = load_yaml(PROMETHEUS / "rules" / "crypto-watcher.yml")
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = load_yaml(PROMETHEUS / "rules" / "crypto-watcher.test.yml")
    tested = {
        case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", []) if case.get("exp_alerts")
    }
    assert alerts == tested, f"alerts without a firing test: {alerts - tested}"
    assert alerts >= {
        "CwServiceDown",
        "CwPipelineStalled",
        "CwCoinGeckoRateLimited",
        "CwSinkErrors",
        "CwDlqGrowing",
        "CwConsumerLagHigh",
    }
