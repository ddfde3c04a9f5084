"""Market overview: how is the market moving right now, coin by coin, and what has alerted?"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, statushistory, table, timeseries
from grafana_foundation_sdk.models import common, dashboard

from crypto_watcher.config import ProcessorSettings, default_of

from .common import (
    CHANGE_STEPS,
    COIN_DETAIL_UID,
    MARKET_OVERVIEW_UID,
    alerts_table,
    base_dashboard,
    builtin_annotation,
    by_thresholds,
    influx_variable,
    last_value,
    legend,
    thresholds,
    tooltip,
)
from .datasources import INFLUXDB
from .influxql import InfluxAnnotation, InfluxQL

PAIR = """"vs" = '$vs' AND "coin" =~ /^$coin$/"""
"""The filter every query shares: one quote currency, the selected coins (all by default)."""

WINDOW_ORDER: list[str] = list(default_of(ProcessorSettings, "windows"))
"""Column order of the change matrix: the processor's default windows; others follow in the order they arrive."""


def _detail_link(title: str, coin: str) -> dash.DashboardLink:
    return dash.DashboardLink(title).url(
        f"/d/{COIN_DETAIL_UID}/coin-detail?var-coin={coin}&var-vs=${{vs}}&${{__url_time_range}}"
    )


def latest_prices() -> stat.Panel:
    return (
        stat.Panel()
        .title("Latest price ($vs)")
        .description(
            "The last price of each selected coin in $vs, with its trend over the "
            "time range. Click a coin to open it in Coin detail."
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                f"""SELECT last("price") AS "price" FROM "price" WHERE {PAIR} AND $timeFilter """
                """GROUP BY time($__interval), "coin" fill(none)"""
            )
            .ref_id("A")
            .alias("$tag_coin")
        )
        .reduce_options(last_value())
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .decimals(2)
        .data_links([_detail_link("Open ${__field.labels.coin} in Coin detail", "${__field.labels.coin}")])
        .span(24)
        .height(5)
    )


def change_24h() -> stat.Panel:
    return (
        stat.Panel()
        .title("24h change")
        .description("CoinGecko's 24-hour change carried by each coin's latest quote.")
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                """SELECT last("change_24h_pct") AS "change_24h_pct" FROM "price" """
                f"""WHERE {PAIR} AND $timeFilter GROUP BY "coin\""""
            )
            .ref_id("A")
            .alias("$tag_coin")
        )
        .reduce_options(last_value())
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .unit("percent")
        .decimals(2)
        .thresholds(thresholds(CHANGE_STEPS))
        .color_scheme(by_thresholds())
        .span(24)
        .height(4)
    )


def price_history() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Price ($vs, log scale)")
        .description(
            "Every selected coin's price. The log scale lets a coin worth cents and one "
            "worth thousands share the chart, and makes equal % moves look equal."
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                f"""SELECT last("price") AS "price" FROM "price" WHERE {PAIR} AND $timeFilter """
                """GROUP BY time($__interval), "coin" fill(none)"""
            )
            .ref_id("A")
            .alias("$tag_coin")
        )
        .scale_distribution(common_builders.ScaleDistributionConfig().type(common.ScaleDistribution.LOG).log(10))
        .line_width(1)
        .fill_opacity(0)
        .span_nulls(True)
        .legend(legend("lastNotNull", "min", "max", placement=common.LegendPlacement.RIGHT, as_table=True))
        .tooltip(tooltip())
        .span(24)
        .height(9)
    )


def change_by_window() -> table.Panel:
    """One row per coin, one column per window: the latest change, coloured like a heatmap."""
    return (
        table.Panel()
        .title("Change by window (%)")
        .description(
            "The latest percent change of each coin over each window (first to last "
            "price inside the window). Click a coin to open it in Coin detail."
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                f"""SELECT last("change_pct") AS "change_pct" FROM "change" WHERE {PAIR} """
                """AND $timeFilter GROUP BY "coin", "window\""""
            )
            .ref_id("A")
            .table()
        )
        .with_transformation(
            dashboard.DataTransformerConfig(
                id_val="groupingToMatrix",
                options={"columnField": "window", "rowField": "coin", "valueField": "change_pct"},
            )
        )
        .with_transformation(
            dashboard.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {},
                    "indexByName": {"coin\\window": 0} | {window: i for i, window in enumerate(WINDOW_ORDER, 1)},
                    "renameByName": {"coin\\window": "coin"},
                },
            )
        )
        .unit("percent")
        .decimals(2)
        .thresholds(thresholds(CHANGE_STEPS))
        .color_scheme(by_thresholds())
        .override_by_field_type(
            "number",
            [
                dashboard.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background", "mode": "basic"}
                )
            ],
        )
        .override_by_name(
            "coin",
            [
                dashboard.DynamicConfigValue(
                    id_val="links",
                    value=[_detail_link("Open ${__value.text} in Coin detail", "${__value.text}").build()],
                )
            ],
        )
        .sort_by([common_builders.TableSortByFieldState().display_name("coin").desc(False)])
        .cell_height(common.TableCellHeight.SM)
        .span(10)
        .height(10)
    )


def change_heatmap() -> statushistory.Panel:
    """Coins by time, each cell coloured by the change over the chosen window: a heatmap."""
    return (
        statushistory.Panel()
        .title("Change heatmap ($window window)")
        .description(
            "Each coin's percent change over the $window window through time: red for "
            "falls, green for rises. Choose the window with the variable above."
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                f"""SELECT last("change_pct") AS "change_pct" FROM "change" WHERE {PAIR} """
                """AND "window" = '$window' AND $timeFilter """
                """GROUP BY time($__interval), "coin" fill(none)"""
            )
            .ref_id("A")
            .alias("$tag_coin")
        )
        .interval("1m")
        .unit("percent")
        .decimals(1)
        .thresholds(thresholds(CHANGE_STEPS))
        .color_scheme(by_thresholds())
        .show_value(common.VisibilityMode.NEVER)
        .row_height(0.9)
        .col_width(0.95)
        .fill_opacity(80)
        .line_width(0)
        .legend(legend())
        .tooltip(tooltip())
        .span(14)
        .height(10)
    )


def alerts_by_kind() -> stat.Panel:
    return (
        stat.Panel()
        .title("Alerts in range")
        .description("How many drop and spike alerts the processor raised in the time range.")
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                """SELECT count("change_pct") AS "alerts" FROM "alert" """
                f"""WHERE {PAIR} AND $timeFilter GROUP BY "kind\""""
            )
            .ref_id("A")
            .alias("$tag_kind")
        )
        .reduce_options(common_builders.ReduceDataOptions().calcs(["sum"]).values(False))
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.VERTICAL)
        .no_value("0")
        .thresholds(thresholds([(None, "green"), (1.0, "orange")]))
        .color_scheme(by_thresholds())
        .override_by_name(
            "drop",
            [
                dashboard.DynamicConfigValue(
                    id_val="thresholds",
                    value={
                        "mode": "absolute",
                        "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                    },
                )
            ],
        )
        .span(4)
        .height(8)
    )


def recent_alerts() -> table.Panel:
    return (
        alerts_table(
            title="Recent alerts",
            description="The latest alerts for the selected coins, newest first, as the processor "
            "stored them (the notifier delivers the same ones).",
            where=PAIR,
            columns=["coin", "kind", "window", "severity", "change_pct", "threshold_pct", "price", "message"],
        )
        .span(20)
        .height(8)
    )


def alert_annotation() -> InfluxAnnotation:
    return (
        InfluxAnnotation(
            "Price alerts",
            """SELECT "message", "change_pct", "coin", "kind", "window", "severity" FROM "alert" """
            f"""WHERE {PAIR} AND $timeFilter""",
        )
        .text_column("message")
        .tags_column("coin,kind,window,severity")
        .title_column("kind")
        .icon_color("red")
    )


def build() -> dash.Dashboard:
    return (
        base_dashboard(
            "Market overview",
            MARKET_OVERVIEW_UID,
            "Crypto Watcher: live prices, percent change per window and alerts for every "
            "watched coin in one quote currency.",
            "now-6h",
        )
        .with_variable(
            influx_variable("vs", "Quote currency", """SHOW TAG VALUES FROM "price" WITH KEY = "vs\"""", "usd")
        )
        .with_variable(
            influx_variable(
                "coin",
                "Coins",
                """SHOW TAG VALUES FROM "price" WITH KEY = "coin" WHERE "vs" = '$vs'""",
                multi=True,
                include_all=True,
            )
        )
        .with_variable(
            influx_variable("window", "Heatmap window", """SHOW TAG VALUES FROM "change" WITH KEY = "window\"""", "15m")
        )
        .annotation(builtin_annotation())
        .annotation(alert_annotation())
        .with_row(dash.Row("Prices"))
        .with_panel(latest_prices())
        .with_panel(change_24h())
        .with_panel(price_history())
        .with_row(dash.Row("Change"))
        .with_panel(change_by_window())
        .with_panel(change_heatmap())
        .with_row(dash.Row("Alerts"))
        .with_panel(alerts_by_kind())
        .with_panel(recent_alerts())
    )
