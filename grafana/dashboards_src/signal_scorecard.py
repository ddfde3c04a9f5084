"""Signal scorecard: how good was each hint on history? What ``crypto-processor scorecard`` wrote.

The scorecard writes into a database (v1) or bucket (v2) of its own, never the live one without
``--into-live`` (processor/scorecard_run.py), while the provisioned datasource reads the live
``crypto``. So every query names its database: ``FROM "$db".."scorecard"`` (the database's default
retention policy; ``SHOW TAG VALUES ON "$db"`` for the variables), with ``$db`` a text box holding
the scorecard's database, ``crypto_scorecard`` unless changed. On InfluxDB 2 a bucket is reached by
its own name (2.4+ maps every bucket as a database of that name) or through a DBRP mapping; the
datasource's token must be allowed to read it.

Numbers shown beside the CLI's: counts, pending, medians and shares are the same; the quartiles are
InfluxQL's ``percentile`` (nearest rank), where the CLI interpolates (pandas' default), so with few
hints they can differ by up to one neighbouring value.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import common, dashboard

from .common import SIGNAL_SCORECARD_UID, base_dashboard, builtin_annotation, influx_variable, legend, tooltip
from .datasources import INFLUXDB
from .influxql import InfluxQL

DEFAULT_DB = "crypto_scorecard"
"""The database (v1) / bucket (v2) the README's example writes the scorecard into."""

HINTS = '"$db".."scorecard"'
BASELINE = '"$db".."scorecard_baseline"'
BASELINE_TAGS = 'ON "$db" FROM "scorecard_baseline"'
"""``SHOW TAG VALUES`` ignores a database named in ``FROM`` (1.x and 2.x answer nothing): it takes ``ON``."""
FILTER = """"vs" = '$vs' AND "coin" =~ /^$coin$/ AND "horizon" = '$horizon'"""
"""What every panel shows: one quote currency, the selected coins, one horizon."""

NO_PROMISE = "Past hit rates are no promise: they describe this stretch of history only."

_PCT = [
    dashboard.DynamicConfigValue(id_val="unit", value="percent"),
    dashboard.DynamicConfigValue(id_val="decimals", value=2),
]


def _share_cells() -> list[dashboard.DynamicConfigValue]:
    """A share column: coloured from red (rarely went the hinted way) through neutral at 50 % to green."""
    return [
        *_PCT,
        dashboard.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
        dashboard.DynamicConfigValue(id_val="color", value={"mode": "thresholds"}),
        dashboard.DynamicConfigValue(
            id_val="thresholds",
            value={
                "mode": "absolute",
                "steps": [
                    {"color": "red", "value": None},
                    {"color": "text", "value": 45},
                    {"color": "green", "value": 55},
                ],
            },
        ),
    ]


def hint_table() -> table.Panel:
    return (
        table.Panel()
        .title("Hints against the baseline ($horizon after)")
        .description(
            "One row per coin, hint kind, rule, window and direction: how many hints there were, how many "
            "are pending (their $horizon is not covered by the ticks yet; never counted right or wrong), "
            "the forward return of the price $horizon after them (median, quartiles), and the share that "
            "went the hinted way (a buy hint or spike is right if the price rose, a sell hint or drop if it "
            f"fell). Compare it with the baseline table below. {NO_PROMISE}"
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                """SELECT count("price") AS "hints", sum("pending") AS "pending", """
                """median("ret_pct") AS "median_pct", percentile("ret_pct", 25) AS "q1_pct", """
                """percentile("ret_pct", 75) AS "q3_pct", mean("right") * 100 AS "right_pct" """
                f"""FROM {HINTS} WHERE {FILTER} AND $timeFilter """
                """GROUP BY "coin", "kind", "rule", "window", "direction\""""
            )
            .ref_id("A")
            .table()
        )
        .with_transformation(
            dashboard.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "indexByName": {"coin": 0, "kind": 1, "rule": 2, "window": 3, "direction": 4},
                    "renameByName": {},
                },
            )
        )
        .override_by_name("median_pct", _PCT)
        .override_by_name("q1_pct", _PCT)
        .override_by_name("q3_pct", _PCT)
        .override_by_name("right_pct", _share_cells())
        .sort_by([common_builders.TableSortByFieldState().display_name("hints").desc(True)])
        .cell_height(common.TableCellHeight.SM)
        .span(24)
        .height(10)
    )


def baseline_table() -> table.Panel:
    return (
        table.Panel()
        .title("Baseline: every tick ($horizon after)")
        .description(
            "The same statistics over every tick of each coin in the range (the moments a coin flip would "
            "pick): a hint group whose right % is no better than the up % (buy hints, spikes) or down % "
            f"(sell hints, drops) here did no better than chance on this history. {NO_PROMISE}"
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                """SELECT count("price") AS "moments", sum("pending") AS "pending", """
                """median("ret_pct") AS "median_pct", percentile("ret_pct", 25) AS "q1_pct", """
                """percentile("ret_pct", 75) AS "q3_pct", mean("up") * 100 AS "up_pct", """
                """mean("down") * 100 AS "down_pct" """
                f"""FROM {BASELINE} WHERE {FILTER} AND $timeFilter GROUP BY "coin\""""
            )
            .ref_id("A")
            .table()
        )
        .with_transformation(
            dashboard.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "indexByName": {"coin": 0},
                    "renameByName": {},
                },
            )
        )
        .override_by_name("median_pct", _PCT)
        .override_by_name("q1_pct", _PCT)
        .override_by_name("q3_pct", _PCT)
        .override_by_name("up_pct", _share_cells())
        .override_by_name("down_pct", _share_cells())
        .cell_height(common.TableCellHeight.SM)
        .span(24)
        .height(6)
    )


def forward_returns() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Forward return after each hint ($horizon, %)")
        .description(
            "Each point is one hint, at its time: how far the price moved in the $horizon after it. The line is "
            "the baseline: the median forward return of every tick in each display interval."
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(f"""SELECT "ret_pct" FROM {HINTS} WHERE {FILTER} AND $timeFilter GROUP BY "kind", "window\"""")
            .ref_id("A")
            .alias("$tag_kind $tag_window")
        )
        .with_target(
            InfluxQL(
                f"""SELECT median("ret_pct") AS "baseline" FROM {BASELINE} WHERE {FILTER} AND $timeFilter """
                """GROUP BY time($__interval) fill(none)"""
            )
            .ref_id("B")
            .alias("baseline (median of every tick)")
        )
        .draw_style(common.GraphDrawStyle.POINTS)
        .point_size(6)
        .unit("percent")
        .decimals(2)
        .axis_centered_zero(True)
        .override_by_name(
            "baseline (median of every tick)",
            [
                dashboard.DynamicConfigValue(id_val="custom.drawStyle", value="line"),
                dashboard.DynamicConfigValue(id_val="color", value={"fixedColor": "gray", "mode": "fixed"}),
            ],
        )
        .legend(legend(as_table=True, placement=common.LegendPlacement.RIGHT))
        .tooltip(tooltip())
        .span(24)
        .height(10)
    )


def every_hint() -> table.Panel:
    percent = [*_PCT, dashboard.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"})]
    return (
        table.Panel()
        .title("Every hint ($horizon after)")
        .description(
            "The newest hints first: the price at the hint, the price $horizon later, the forward return and "
            "whether it went the hinted way (right 1) or not (0); pending 1 while $horizon has not passed in "
            "the ticks scored."
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                """SELECT "coin", "kind", "rule", "window", "direction", "price", "exit_price", "ret_pct", """
                f""""right", "pending" FROM {HINTS} WHERE {FILTER} AND $timeFilter ORDER BY time DESC LIMIT 500"""
            )
            .ref_id("A")
            .table()
        )
        .override_by_name("ret_pct", percent)
        .sort_by([common_builders.TableSortByFieldState().display_name("Time").desc(True)])
        .cell_height(common.TableCellHeight.SM)
        .span(24)
        .height(10)
    )


def database_variable() -> dash.TextBoxVariable:
    return (
        dash.TextBoxVariable("db")
        .label("Scorecard database")
        .description("Where crypto-processor scorecard wrote: its --influx-db (v1) or --influx-bucket (v2) argument.")
        .default_value(DEFAULT_DB)
        .current(dashboard.VariableOption(selected=True, text=DEFAULT_DB, value=DEFAULT_DB))
    )


def build() -> dash.Dashboard:
    return (
        base_dashboard(
            "Signal scorecard",
            SIGNAL_SCORECARD_UID,
            "Crypto Watcher: how the price moved after each hint the rules raised (crypto-processor scorecard), "
            f"against how it moved after every tick. {NO_PROMISE}",
            "now-30d",
        )
        .with_variable(database_variable())
        .with_variable(
            influx_variable("vs", "Quote currency", f"""SHOW TAG VALUES {BASELINE_TAGS} WITH KEY = "vs\"""", "usd")
        )
        .with_variable(
            influx_variable(
                "coin",
                "Coins",
                f"""SHOW TAG VALUES {BASELINE_TAGS} WITH KEY = "coin" WHERE "vs" = '$vs'""",
                multi=True,
                include_all=True,
            )
        )
        .with_variable(
            influx_variable("horizon", "Horizon", f"""SHOW TAG VALUES {BASELINE_TAGS} WITH KEY = "horizon\"""", "24h")
        )
        .annotation(builtin_annotation())
        .with_row(dash.Row("Hints and baseline"))
        .with_panel(hint_table())
        .with_panel(baseline_table())
        .with_row(dash.Row("Each hint"))
        .with_panel(forward_returns())
        .with_panel(every_hint())
    )
