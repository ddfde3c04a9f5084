"""Coin detail: everything about one coin in one quote currency."""

from __future__ import annotations

from grafana_foundation_sdk.builders import candlestick, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import candlestick as candlestick_models
from grafana_foundation_sdk.models import common, dashboard

from .common import (
    CHANGE_STEPS,
    COIN_DETAIL_UID,
    alerts_table,
    base_dashboard,
    builtin_annotation,
    by_thresholds,
    fixed_color,
    influx_variable,
    last_value,
    legend,
    thresholds,
    tooltip,
)
from .datasources import INFLUXDB
from .influxql import InfluxAnnotation, InfluxQL

PAIR = """"coin" = '$coin' AND "vs" = '$vs'"""


def _price_stat(title: str, field: str, unit: str, description: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                f"""SELECT last("{field}") AS "{field}" FROM "price" WHERE {PAIR} """
                """AND $timeFilter GROUP BY time($__interval) fill(none)"""
            )
            .ref_id("A")
            .alias(field)
        )
        .reduce_options(last_value())
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .unit(unit)
        .span(6)
        .height(4)
    )


def latest_stats() -> list[stat.Panel]:
    price = _price_stat("Price", "price", "none", "The last price of $coin in $vs, with its trend.").decimals(2)
    change = (
        _price_stat(
            "24h change", "change_24h_pct", "percent", "CoinGecko's 24-hour change carried by the latest quote."
        )
        .decimals(2)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .thresholds(thresholds(CHANGE_STEPS))
        .color_scheme(by_thresholds())
    )
    market_cap = _price_stat(
        "Market cap", "market_cap", "short", "Market capitalisation in $vs, from the latest quote."
    )
    volume = _price_stat(
        "24h volume", "volume_24h", "short", "Traded volume over the last 24 hours in $vs, from the latest quote."
    )
    return [price, change, market_cap, volume]


def price_history() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Price ($coin/$vs)")
        .description(
            "Every stored tick's price (the last one per display interval); alerts are marked on the time axis."
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                f"""SELECT last("price") AS "price" FROM "price" WHERE {PAIR} AND $timeFilter """
                """GROUP BY time($__interval) fill(none)"""
            )
            .ref_id("A")
            .alias("price")
        )
        .line_width(2)
        .fill_opacity(10)
        .span_nulls(True)
        .decimals(2)
        .legend(legend("lastNotNull", "min", "max"))
        .tooltip(tooltip())
        .span(24)
        .height(9)
    )


def candles() -> candlestick.Panel:
    """Stored candles re-bucketed to the display interval: first open, max high, min low…"""
    return (
        candlestick.Panel()
        .title("Candles ($candle, $coin/$vs)")
        .description(
            "OHLC candles from measurement candle at the $candle interval; when the "
            "time range is long, neighbouring candles are merged (first open, highest "
            "high, lowest low, last close). Volume bars count the ticks behind each."
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                """SELECT first("open") AS "open", max("high") AS "high", min("low") AS "low", """
                """last("close") AS "close", sum("ticks") AS "ticks" FROM "candle" """
                f"""WHERE {PAIR} AND "interval" = '$candle' AND $timeFilter """
                """GROUP BY time($__interval) fill(none)"""
            )
            .ref_id("A")
            .table()  # one frame holding open/high/low/close/ticks, as the panel wants
        )
        .interval("1m")
        .mode(candlestick_models.VizDisplayMode.CANDLES_VOLUME)
        .candle_style(candlestick_models.CandleStyle.CANDLES)
        .color_strategy(candlestick_models.ColorStrategy.OPEN_CLOSE)
        .fields(candlestick.CandlestickFieldMap().open("open").high("high").low("low").close("close").volume("ticks"))
        .colors(candlestick.CandlestickColors().up("green").down("red").flat("gray"))
        .include_all_fields(False)
        .legend(legend())
        .decimals(2)
        .span(24)
        .height(11)
    )


def change_per_window() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Change per window (%)")
        .description(
            "Percent change from the first to the last price inside each window, as "
            "the processor computed it at every tick."
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                f"""SELECT last("change_pct") AS "change_pct" FROM "change" WHERE {PAIR} """
                """AND $timeFilter GROUP BY time($__interval), "window" fill(none)"""
            )
            .ref_id("A")
            .alias("$tag_window")
        )
        .unit("percent")
        .decimals(2)
        .line_width(1)
        .fill_opacity(0)
        .span_nulls(True)
        .axis_centered_zero(True)
        .legend(legend("lastNotNull", "min", "max", as_table=True))
        .tooltip(tooltip())
        .span(12)
        .height(9)
    )


def drawdown_runup() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Drawdown and run-up (%)")
        .description(
            "Drawdown: the last price against the window's high (how far it fell from "
            "the top). Run-up: the last price against the window's low (how far it "
            "rose from the bottom). The alert rules fire on these."
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                f"""SELECT min("drawdown_pct") AS "drawdown_pct" FROM "change" WHERE {PAIR} """
                """AND $timeFilter GROUP BY time($__interval), "window" fill(none)"""
            )
            .ref_id("A")
            .alias("drawdown $tag_window")
        )
        .with_target(
            InfluxQL(
                f"""SELECT max("runup_pct") AS "runup_pct" FROM "change" WHERE {PAIR} """
                """AND $timeFilter GROUP BY time($__interval), "window" fill(none)"""
            )
            .ref_id("B")
            .alias("run-up $tag_window")
        )
        .unit("percent")
        .decimals(2)
        .line_width(1)
        .fill_opacity(10)
        .span_nulls(True)
        .legend(legend("lastNotNull", "min", "max", as_table=True))
        .tooltip(tooltip())
        .override_by_regexp("^drawdown.*", [fixed_color("red")])
        .override_by_regexp("^run-up.*", [fixed_color("green")])
        .span(12)
        .height(9)
    )


def latest_per_window() -> table.Panel:
    fields = ["change_pct", "drawdown_pct", "runup_pct", "first", "last", "high", "low", "ticks"]
    selected = ", ".join(f'last("{field}") AS "{field}"' for field in fields)
    percent = [
        dashboard.DynamicConfigValue(id_val="unit", value="percent"),
        dashboard.DynamicConfigValue(id_val="decimals", value=2),
        dashboard.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background", "mode": "basic"}),
        dashboard.DynamicConfigValue(id_val="color", value={"mode": "thresholds"}),
    ]
    panel = (
        table.Panel()
        .title("Latest window state")
        .description(
            "The newest result of each window: change, drawdown, run-up, the prices "
            "that bound the window and how many ticks it held."
        )
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                f"""SELECT {selected} FROM "change" WHERE {PAIR} AND $timeFilter """
                """GROUP BY "window\""""
            )
            .ref_id("A")
            .table()
        )
        .with_transformation(
            dashboard.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "indexByName": {"window": 0}, "renameByName": {}},
            )
        )
        .thresholds(thresholds(CHANGE_STEPS))
        .decimals(2)
        .override_by_name("ticks", [dashboard.DynamicConfigValue(id_val="decimals", value=0)])
        .sort_by([])
        .cell_height(common.TableCellHeight.SM)
        .span(24)
        .height(6)
    )
    for name in ("change_pct", "drawdown_pct", "runup_pct"):
        panel = panel.override_by_name(name, percent)
    return panel


def coin_alerts() -> table.Panel:
    return (
        alerts_table(
            title="Alerts ($coin/$vs)",
            description="Every alert raised for this pair in the time range, newest first.",
            where=PAIR,
            columns=[
                "kind",
                "window",
                "severity",
                "rule",
                "change_pct",
                "threshold_pct",
                "reference_price",
                "price",
                "message",
            ],
        )
        .span(24)
        .height(8)
    )


def alert_annotation() -> InfluxAnnotation:
    return (
        InfluxAnnotation(
            "Alerts",
            """SELECT "message", "change_pct", "kind", "window", "severity" FROM "alert" """
            f"""WHERE {PAIR} AND $timeFilter""",
        )
        .text_column("message")
        .tags_column("kind,window,severity")
        .title_column("kind")
        .icon_color("red")
    )


def build() -> dash.Dashboard:
    dashboard_builder = (
        base_dashboard(
            "Coin detail",
            COIN_DETAIL_UID,
            "Crypto Watcher: one coin in one quote currency: price, candles, change per window, "
            "drawdown and run-up, and its alerts.",
            "now-6h",
        )
        .with_variable(
            influx_variable("coin", "Coin", """SHOW TAG VALUES FROM "price" WITH KEY = "coin\"""", "bitcoin")
        )
        .with_variable(
            influx_variable(
                "vs",
                "Quote currency",
                """SHOW TAG VALUES FROM "price" WITH KEY = "vs" """
                """WHERE "coin" = '$coin'""",
                "usd",
            )
        )
        .with_variable(
            influx_variable(
                "candle",
                "Candle interval",
                """SHOW TAG VALUES FROM "candle" WITH KEY = "interval" """
                """WHERE "coin" = '$coin' AND "vs" = '$vs'""",
                "1m",
            )
        )
        .annotation(builtin_annotation())
        .annotation(alert_annotation())
        .with_row(dash.Row("Now"))
    )
    for panel in latest_stats():
        dashboard_builder = dashboard_builder.with_panel(panel)
    return (
        dashboard_builder.with_row(dash.Row("Price"))
        .with_panel(price_history())
        .with_panel(candles())
        .with_row(dash.Row("Change"))
        .with_panel(change_per_window())
        .with_panel(drawdown_runup())
        .with_panel(latest_per_window())
        .with_row(dash.Row("Alerts"))
        .with_panel(coin_alerts())
    )
