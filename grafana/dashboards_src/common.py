"""Helpers shared by the dashboards: variables, colours, links, stable panel ids."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common, dashboard

from .datasources import INFLUXDB
from .influxql import InfluxQL

TAG = "crypto-watcher"
REFRESH = "10s"
"""Live viewing: the producer polls about once a minute, ticks arrive every few seconds."""
REFRESH_INTERVALS = ["5s", "10s", "30s", "1m", "5m", "15m", "1h"]

MARKET_OVERVIEW_UID = "cw-market-overview"
COIN_DETAIL_UID = "cw-coin-detail"
PIPELINE_HEALTH_UID = "cw-pipeline-health"
SIGNAL_SCORECARD_UID = "cw-signal-scorecard"

# Percent-change colours, red for falls and green for rises; ``None`` is the base step.
CHANGE_STEPS: list[tuple[float | None, str]] = [
    (None, "dark-red"),
    (-5.0, "red"),
    (-2.0, "light-red"),
    (-0.5, "text"),
    (0.5, "light-green"),
    (2.0, "green"),
    (5.0, "dark-green"),
]


def thresholds(steps: list[tuple[float | None, str]]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([dashboard.Threshold(value=value, color=color) for value, color in steps])
    )


def by_thresholds() -> dash.FieldColor:
    return dash.FieldColor().mode(dashboard.FieldColorModeId.THRESHOLDS)


def fixed_color(color: str) -> dashboard.DynamicConfigValue:
    return dashboard.DynamicConfigValue(id_val="color", value={"fixedColor": color, "mode": "fixed"})


def legend(
    *calcs: str, placement: common.LegendPlacement = common.LegendPlacement.BOTTOM, as_table: bool = False
) -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.TABLE if as_table else common.LegendDisplayMode.LIST)
        .placement(placement)
        .calcs(list(calcs))
    )


def tooltip() -> common_builders.VizTooltipOptions:
    return common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)


def last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def influx_variable(
    name: str,
    label: str,
    query: str,
    default: str | None = None,
    *,
    multi: bool = False,
    include_all: bool = False,
    refresh: dashboard.VariableRefresh = dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED,
) -> dash.QueryVariable:
    """A variable filled by an InfluxQL ``SHOW TAG VALUES`` query.

    A multi-value or "All" variable must be used inside a regex (``"coin" =~ /^$coin$/``): that is
    the form Grafana's InfluxDB datasource renders such values in (``(a|b|c)``, regex-escaped).
    """
    variable = (
        dash.QueryVariable(name)
        .label(label)
        .datasource(INFLUXDB)
        .query(query)
        .refresh(refresh)
        .sort(dashboard.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(multi)
        .include_all(include_all)
    )
    if include_all:
        variable = variable.current(dashboard.VariableOption(selected=True, text=["All"], value=["$__all"]))
    elif default is not None:
        variable = variable.current(dashboard.VariableOption(selected=True, text=default, value=default))
    return variable


def dashboard_links() -> list[cogbuilder.Builder[dashboard.DashboardLink]]:
    """A drop-down to the other Crypto Watcher dashboards, keeping time range and variables."""
    return [
        dash.DashboardLink("Crypto Watcher")
        .type(dashboard.DashboardLinkType.DASHBOARDS)
        .tags([TAG])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
        .target_blank(False)
        .icon("external link")
        .tooltip("")
        .url("")
    ]


def base_dashboard(title: str, uid: str, description: str, time_from: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .refresh(REFRESH)
        .time(time_from, "now")
        .timezone("browser")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .timepicker(dash.TimePicker().refresh_intervals(REFRESH_INTERVALS))
        .links(dashboard_links())
    )


def builtin_annotation() -> dash.AnnotationQuery:
    """Grafana's own annotations and alert state changes, as every new dashboard has."""
    return (
        dash.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(dashboard.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .target(dash.AnnotationTarget().limit(100).match_any(False).tags([]).type("dashboard"))
    )


def assign_panel_ids(model: dashboard.Dashboard) -> dashboard.Dashboard:
    """Numbers panels (rows and the panels in collapsed rows too) 1, 2, 3… in layout order."""
    next_id = 1
    for panel in model.panels or []:
        panel.id_val = next_id
        next_id += 1
        for child in getattr(panel, "panels", None) or []:
            child.id_val = next_id
            next_id += 1
    return model


def alerts_table(title: str, description: str, where: str, columns: list[str]) -> table.Panel:
    """The newest alerts (measurement ``alert``) matching ``where``, one row each."""
    selected = ", ".join(f'"{column}"' for column in columns)
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(INFLUXDB)
        .with_target(
            InfluxQL(
                f"""SELECT {selected} FROM "alert" WHERE {where} AND $timeFilter """
                """ORDER BY time DESC LIMIT 100"""
            )
            .ref_id("A")
            .table()
        )
        .override_by_name(
            "change_pct",
            [
                dashboard.DynamicConfigValue(id_val="unit", value="percent"),
                dashboard.DynamicConfigValue(id_val="decimals", value=2),
                dashboard.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
                dashboard.DynamicConfigValue(id_val="color", value={"mode": "thresholds"}),
                dashboard.DynamicConfigValue(
                    id_val="thresholds",
                    value={
                        "mode": "absolute",
                        "steps": [{"color": "red", "value": None}, {"color": "green", "value": 0}],
                    },
                ),
            ],
        )
        .override_by_name(
            "threshold_pct",
            [
                dashboard.DynamicConfigValue(id_val="unit", value="percent"),
            ],
        )
        .override_by_name(
            "severity",
            [
                dashboard.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
                dashboard.DynamicConfigValue(
                    id_val="mappings",
                    value=[
                        {
                            "type": "value",
                            "options": {
                                "info": {"color": "blue", "index": 0},
                                "warning": {"color": "orange", "index": 1},
                                "critical": {"color": "red", "index": 2},
                            },
                        }
                    ],
                ),
            ],
        )
        .override_by_name(
            "message",
            [
                dashboard.DynamicConfigValue(id_val="custom.width", value=480),
            ],
        )
        .sort_by([common_builders.TableSortByFieldState().display_name("Time").desc(True)])
        .cell_height(common.TableCellHeight.SM)
    )
