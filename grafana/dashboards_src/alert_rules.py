"""Grafana-managed alert rules, written to ``grafana/provisioning/alerting/rules.yaml``.

Edit the thresholds here (``PRICE_MOVES``, ``STALL_MINUTES``, …) and run ``python
grafana/generate.py``. Every rule is a chain of Grafana expressions, the shape the alerting UI
builds: A queries a datasource, B reduces each series to one number, an optional math step turns
it into the quantity the threshold speaks about, and the last step compares it with the
threshold; the rule's ``condition`` is that last step.

Price moves read the processor's per-window results (measurement ``change``) so Grafana does not
recompute windows: ``drawdown_pct`` is the last price against the window's high, ``runup_pct``
against its low. Each query groups by coin and vs, so one rule watches every pair and raises one
alert instance per pair (labels ``coin`` and ``vs``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import alerting, expr, prometheus
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import alerting as alerting_models
from grafana_foundation_sdk.models.prometheus import QueryEditorMode

from .common import COIN_DETAIL_UID, PIPELINE_HEALTH_UID
from .datasources import EXPRESSION, EXPRESSION_UID, INFLUXDB_UID, PROMETHEUS, PROMETHEUS_UID
from .influxql import InfluxQL

Severity = Literal["info", "warning", "critical"]

FOLDER = "Crypto Watcher"
ORG_ID = 1


@dataclass(frozen=True)
class PriceMove:
    """Thresholds for one ``change`` window: alert when the price is ``drop_pct`` below the
    window's high or ``spike_pct`` above its low.

    ``coins`` (and optionally ``vs``) make an override: the rule watches only those pairs, and the
    general rule of the same window skips them.
    """

    window: str
    drop_pct: float
    spike_pct: float
    severity: Severity
    coins: tuple[str, ...] = ()
    vs: str | None = None
    note: str = ""


PRICE_MOVES: tuple[PriceMove, ...] = (
    PriceMove("15m", drop_pct=5.0, spike_pct=5.0, severity="warning"),
    PriceMove("1h", drop_pct=10.0, spike_pct=10.0, severity="critical"),
    # A stablecoin moving 1% against the dollar within an hour is news (a de-peg).
    PriceMove(
        "1h",
        drop_pct=1.0,
        spike_pct=1.0,
        severity="critical",
        coins=("tether", "usd-coin"),
        vs="usd",
        note="stablecoin de-peg",
    ),
)
PRICE_LOOKBACK_S = 600
"""How far back the price rules look for the newest window result."""

STALL_MINUTES = 10
"""Pipeline stalled: no ``price`` point written for this many minutes."""

API_ERRORS_PER_MINUTE = 0.5
"""CoinGecko errors: more failed calls of one kind per minute than this (over 10 minutes)."""

SINK_ERRORS = 0
"""Sink failing: more failed InfluxDB writes than this in 5 minutes, for 5 minutes."""


# --- building blocks ------------------------------------------------------------------------


def _query(
    ref_id: str, datasource_uid: str, model: cogbuilder.Builder[cogvariants.Dataquery], lookback_s: int
) -> alerting.Query:
    return (
        alerting.Query(ref_id)
        .datasource_uid(datasource_uid)
        .relative_time_range(alerting_models.RelativeTimeRange(from_val=lookback_s, to=0))
        .model(model)
    )


def influxql(ref_id: str, query: str, lookback_s: int) -> alerting.Query:
    return _query(
        ref_id, INFLUXDB_UID, InfluxQL(query).ref_id(ref_id).interval_ms(60_000).max_data_points(43_200), lookback_s
    )


def promql(ref_id: str, query: str, lookback_s: int) -> alerting.Query:
    model = (
        prometheus.Dataquery()
        .expr(query)
        .ref_id(ref_id)
        .datasource(PROMETHEUS)
        .editor_mode(QueryEditorMode.CODE)
        .legend_format("__auto")
        .instant()
    )
    return _query(ref_id, PROMETHEUS_UID, model, lookback_s)


def reduce(ref_id: str, of: str, reducer: Literal["sum", "mean", "min", "max", "count", "last"]) -> alerting.Query:
    """One number per series; NaN and null samples are dropped first."""
    model = (
        expr.TypeReduce()
        .ref_id(ref_id)
        .expression(of)
        .reducer(reducer)
        .settings(expr.ExprTypeReduceSettings().mode("dropNN"))
        .datasource(EXPRESSION)
    )
    return _query(ref_id, EXPRESSION_UID, model, 0)


def math(ref_id: str, expression: str) -> alerting.Query:
    model = expr.TypeMath().ref_id(ref_id).expression(expression).datasource(EXPRESSION)
    return _query(ref_id, EXPRESSION_UID, model, 0)


def threshold(ref_id: str, of: str, op: Literal["gt", "lt"], value: float) -> alerting.Query:
    model = (
        expr.TypeThreshold()
        .ref_id(ref_id)
        .expression(of)
        .conditions(
            [
                expr.ExprTypeThresholdConditions().evaluator(
                    expr.ExprTypeThresholdConditionsEvaluator().type(op).params([value])
                )
            ]
        )
        .datasource(EXPRESSION)
    )
    return _query(ref_id, EXPRESSION_UID, model, 0)


def _regex(values: Sequence[str]) -> str:
    escaped = "|".join(value.replace(".", "\\.") for value in values)
    return f"/^({escaped})$/"


def _pair_filter(move: PriceMove, moves: Sequence[PriceMove]) -> str:
    """InfluxQL condition choosing the pairs ``move`` watches."""
    if move.coins:
        condition = f'"coin" =~ {_regex(move.coins)}'
        return f"{condition} AND \"vs\" = '{move.vs}'" if move.vs else condition
    skipped = []
    for other in moves:
        if other.window == move.window and other.coins:
            condition = f'"coin" !~ {_regex(other.coins)}'
            skipped.append(f"({condition} OR \"vs\" != '{other.vs}')" if other.vs else condition)
    return " AND ".join(skipped)


def _move_uid(kind: str, move: PriceMove) -> str:
    uid = f"cw-{kind}-{move.window}"
    if move.coins:
        key = ",".join(move.coins) + f"|{move.vs or ''}"
        uid += "-" + hashlib.sha256(key.encode()).hexdigest()[:8]
    return uid


def price_rules(moves: Sequence[PriceMove]) -> list[alerting.Rule]:
    rules = []
    for move in moves:
        pairs = _pair_filter(move, moves)
        where = f"\"window\" = '{move.window}'" + (f" AND {pairs}" if pairs else "")
        scope = f" ({', '.join(move.coins)}{'/' + move.vs if move.vs else ''})" if move.coins else ""
        for kind, field, limit, edge in (
            ("drop", "drawdown_pct", move.drop_pct, "below its high"),
            ("spike", "runup_pct", move.spike_pct, "above its low"),
        ):
            title = f"Price {kind} over {move.window}{scope}"
            rule = (
                alerting.Rule(title)
                .uid(_move_uid(kind, move))
                .with_query(
                    influxql(
                        "A",
                        f'SELECT last("{field}") AS "{field}" FROM "change" WHERE {where} '
                        'AND $timeFilter GROUP BY "coin", "vs"',
                        PRICE_LOOKBACK_S,
                    )
                )
                .with_query(reduce("B", "A", "last"))
                .with_query(math("C", "abs($B)"))
                .with_query(threshold("D", "C", "gt", limit))
                .condition("D")
                .no_data_state("OK")
                .exec_err_state("Error")
                .for_val("0s")
                .labels({"kind": kind, "window": move.window, "severity": move.severity, "source": "crypto-watcher"})
                .annotations(
                    _annotations(
                        summary=(
                            f"{{{{ $labels.coin }}}}/{{{{ $labels.vs }}}} is "
                            f'{{{{ printf "%.2f" $values.C.Value }}}}% {edge} '
                            f"within {move.window}"
                        ),
                        description=(
                            f"The last price of {{{{ $labels.coin }}}} in {{{{ $labels.vs }}}}"
                            f" is more than {limit:g}% {edge} over the {move.window} window "
                            f"(measurement change, field {field})" + (f"; {move.note}" if move.note else "") + "."
                        ),
                    )
                )
            )
            rules.append(rule)
    return rules


def pipeline_stalled() -> alerting.Rule:
    return (
        alerting.Rule("Pipeline stalled: no prices stored")
        .uid("cw-pipeline-stalled")
        .with_query(
            influxql(
                "A",
                'SELECT count("price") AS "ticks" FROM "price" WHERE $timeFilter',
                STALL_MINUTES * 60,
            )
        )
        .with_query(reduce("B", "A", "sum"))
        .with_query(threshold("C", "B", "lt", 1))
        .condition("C")
        # No point at all comes back as "no data": that is exactly the stall.
        .no_data_state("Alerting")
        .exec_err_state("Error")
        .for_val("0s")
        .labels({"severity": "critical", "source": "crypto-watcher"})
        .annotations(
            _annotations(
                summary=f"No price point written to InfluxDB for {STALL_MINUTES} minutes",
                description="Nothing reached measurement price: check the producer (CoinGecko, "
                "Kafka), the processor (consumer lag, sink errors) and InfluxDB in the "
                "Pipeline health dashboard.",
            )
        )
    )


def coingecko_errors() -> alerting.Rule:
    return (
        alerting.Rule("CoinGecko API errors")
        .uid("cw-coingecko-errors")
        .with_query(
            promql(
                "A",
                "sum by (kind) (rate(cw_producer_api_errors_total[10m]))",
                600,
            )
        )
        .with_query(reduce("B", "A", "last"))
        .with_query(math("C", "$B * 60"))
        .with_query(threshold("D", "C", "gt", API_ERRORS_PER_MINUTE))
        .condition("D")
        .no_data_state("OK")
        .exec_err_state("Error")
        .for_val("10m")
        .labels({"severity": "warning", "source": "crypto-watcher"})
        .annotations(
            _annotations(
                summary=('CoinGecko calls failing: {{ printf "%.2f" $values.C.Value }}/min of kind {{ $labels.kind }}'),
                description="The producer's CoinGecko calls keep failing (rate_limited means HTTP "
                "429: the plan's rate limit; check CW_* plan and poll settings).",
            )
        )
    )


def sink_failing() -> alerting.Rule:
    return (
        alerting.Rule("InfluxDB sink failing")
        .uid("cw-sink-failing")
        .with_query(
            promql(
                "A",
                "sum by (kind) (increase(cw_processor_sink_errors_total[5m]))",
                300,
            )
        )
        .with_query(reduce("B", "A", "last"))
        .with_query(threshold("C", "B", "gt", SINK_ERRORS))
        .condition("C")
        .no_data_state("OK")
        .exec_err_state("Error")
        .for_val("5m")
        .labels({"severity": "critical", "source": "crypto-watcher"})
        .annotations(
            _annotations(
                summary=(
                    '{{ printf "%.0f" $values.B.Value }} failed InfluxDB writes ({{ $labels.kind }}) in 5 minutes'
                ),
                description="The processor cannot write to InfluxDB (backpressure: slow or down; "
                "rejected: points refused). Dashboards fall behind until it recovers.",
            )
        )
    )


def _annotations(summary: str, description: str) -> dict[str, str]:
    return {"summary": summary, "description": description}


# --- the provisioning file --------------------------------------------------------------------

PANEL_LINKS: dict[str, tuple[str, str]] = {
    "price": (COIN_DETAIL_UID, "Drawdown and run-up (%)"),
    "cw-pipeline-stalled": (PIPELINE_HEALTH_UID, "Ticks per second"),
    "cw-coingecko-errors": (PIPELINE_HEALTH_UID, "CoinGecko errors by kind"),
    "cw-sink-failing": (PIPELINE_HEALTH_UID, "InfluxDB write errors"),
}
"""Rule (uid, or "price" for every price rule) -> the dashboard panel it is shown on."""

PanelIdLookup = Callable[[str, str], int]
"""(dashboard uid, panel title) -> panel id."""

_RULE_KEYS = (
    "uid",
    "title",
    "condition",
    "data",
    "dashboardUid",
    "panelId",
    "noDataState",
    "execErrState",
    "for",
    "labels",
    "annotations",
    "isPaused",
)
_QUERY_KEYS = ("refId", "datasourceUid", "relativeTimeRange", "model")


def _to_plain(obj: object) -> Any:
    """An SDK object as plain JSON data (dicts, lists, scalars)."""
    to_json = getattr(obj, "to_json", None)
    if callable(to_json):
        return _to_plain(to_json())
    if isinstance(obj, Mapping):
        return {str(key): _to_plain(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_plain(item) for item in obj]
    return obj


def _provisioned_rule(rule: alerting_models.Rule, panel_id: PanelIdLookup) -> dict[str, Any]:
    """The rule in Grafana's file-provisioning format (the SDK builds the HTTP API model, which
    has more keys), linked to the dashboard panel that shows what it watches."""
    data = _to_plain(rule)
    dashboard_uid, title = PANEL_LINKS[data["uid"] if data["uid"] in PANEL_LINKS else "price"]
    data["dashboardUid"] = dashboard_uid
    data["panelId"] = panel_id(dashboard_uid, title)
    data["data"] = [{k: query[k] for k in _QUERY_KEYS if k in query} for query in data["data"]]
    data.setdefault("isPaused", False)
    return {key: data[key] for key in _RULE_KEYS if key in data}


def _duration(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def groups(panel_id: PanelIdLookup) -> dict[str, Any]:
    """The whole ``rules.yaml`` document."""
    price_group = alerting.RuleGroup("crypto-watcher-prices").interval(60)
    for rule in price_rules(PRICE_MOVES):
        price_group = price_group.with_rule(rule)
    pipeline_group = (
        alerting.RuleGroup("crypto-watcher-pipeline")
        .interval(60)
        .with_rule(pipeline_stalled())
        .with_rule(coingecko_errors())
        .with_rule(sink_failing())
    )
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": ORG_ID,
                "name": group.title,
                "folder": FOLDER,
                "interval": _duration(group.interval or 60),
                "rules": [_provisioned_rule(rule, panel_id) for rule in group.rules or []],
            }
            for group in (price_group.build(), pipeline_group.build())
        ],
    }
