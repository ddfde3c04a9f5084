"""Pipeline health: is every service up, is data flowing, and where is it stuck or failing?

Reads the services' own metrics (``cw_*``, docs/contracts.md) from Prometheus.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

from .common import (
    PIPELINE_HEALTH_UID,
    base_dashboard,
    builtin_annotation,
    by_thresholds,
    fixed_color,
    legend,
    thresholds,
    tooltip,
)
from .datasources import PROMETHEUS

JOBS = 'job=~"cw-.*"'
"""Scrape jobs of the three services (prometheus/prometheus.yml): cw-producer, cw-processor,
cw-notifier."""

RATE = "$__rate_interval"


def promql(expr: str, ref_id: str, legend_format: str = "__auto", *, instant: bool = False) -> prometheus.Dataquery:
    query = (
        prometheus.Dataquery()
        .expr(expr)
        .ref_id(ref_id)
        .legend_format(legend_format)
        .datasource(PROMETHEUS)
        .editor_mode(QueryEditorMode.CODE)
    )
    return query.instant() if instant else query.range()


def _stat(
    title: str,
    description: str,
    expr: str,
    unit: str,
    steps: list[tuple[float | None, str]],
    legend_format: str = "__auto",
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(promql(expr, "A", legend_format, instant=True))
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.AUTO)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .unit(unit)
        .thresholds(thresholds(steps))
        .color_scheme(by_thresholds())
        .span(4)
        .height(4)
    )


def _timeseries(
    title: str, description: str, unit: str, *targets: prometheus.Dataquery, bars: bool = False
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .legend(legend("lastNotNull", "max", as_table=False))
        .tooltip(tooltip())
        .span(12)
        .height(8)
    )
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def services_up() -> stat.Panel:
    return (
        _stat(
            "Services up",
            "1 when Prometheus could scrape the service's /metrics on its last try, 0 when not.",
            f"up{{{JOBS}}}",
            "none",
            [(None, "red"), (1.0, "green")],
            "{{job}} {{instance}}",
        )
        .mappings(
            [
                dashboard.ValueMap(
                    options={
                        "0": dashboard.ValueMappingResult(text="DOWN", color="red", index=0),
                        "1": dashboard.ValueMappingResult(text="UP", color="green", index=1),
                    }
                ),
            ]
        )
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .span(8)
    )


def overview_stats() -> list[stat.Panel]:
    return [
        services_up(),
        _stat(
            "Time since last poll",
            "Seconds since the producer last polled CoinGecko successfully.",
            "time() - max(cw_producer_last_poll_timestamp_seconds)",
            "s",
            [(None, "green"), (180.0, "orange"), (600.0, "red")],
        ),
        _stat(
            "Event lag",
            "Wall time minus the newest event time the processor has handled: "
            "how far behind the market the dashboards are.",
            "max(cw_processor_event_lag_seconds)",
            "s",
            [(None, "green"), (120.0, "orange"), (600.0, "red")],
        ),
        _stat(
            "Consumer lag",
            "Messages the processor still has to read, all partitions.",
            "sum(cw_processor_consumer_lag)",
            "short",
            [(None, "green"), (100.0, "orange"), (1000.0, "red")],
        ),
        _stat(
            "DLQ records (range)",
            "Records sent to crypto.ticks.dlq in the time range.",
            "sum(increase(cw_processor_dlq_total[$__range])) or vector(0)",
            "short",
            [(None, "green"), (1.0, "red")],
        ),
    ]


def ticks_per_second() -> timeseries.Panel:
    return _timeseries(
        "Ticks per second",
        "Published: ticks Kafka confirmed to the producer. Processed: ticks the processor "
        "handled. Points written: InfluxDB points per second (prices, changes, alerts). The "
        "first two should track each other.",
        "ops",
        promql(f"sum(rate(cw_producer_ticks_published_total[{RATE}]))", "A", "published"),
        promql(f"sum(rate(cw_processor_ticks_total[{RATE}]))", "B", "processed"),
        promql(f"sum(rate(cw_processor_sink_points_total[{RATE}]))", "C", "points written"),
    )


def producer_problems() -> timeseries.Panel:
    return _timeseries(
        "Producer: skipped and undelivered",
        "Quotes the producer did not publish (by reason; 'unchanged' is normal), ticks Kafka "
        "reported as not delivered, and quotes older than the stale limit at the last poll.",
        "short",
        promql(f"sum by (reason) (increase(cw_producer_records_skipped_total[{RATE}]))", "A", "skipped: {{reason}}"),
        promql(f"sum(increase(cw_producer_delivery_failures_total[{RATE}]))", "B", "delivery failures"),
        promql("sum(cw_producer_stale_quotes)", "C", "stale quotes"),
    ).override_by_name("delivery failures", [fixed_color("red")])


def api_calls() -> timeseries.Panel:
    return (
        _timeseries(
            "CoinGecko calls by HTTP status",
            "CoinGecko API calls per second by HTTP status ('error' when no response came back). "
            "429 means the plan's rate limit was hit; the producer then honours Retry-After.",
            "reqps",
            promql(f"sum by (status) (rate(cw_producer_api_calls_total[{RATE}]))", "A", "{{status}}"),
        )
        .override_by_name("429", [fixed_color("red")])
        .override_by_name("200", [fixed_color("green")])
    )


def api_errors() -> timeseries.Panel:
    return _timeseries(
        "CoinGecko errors by kind",
        "Failed calls per second: rate_limited (429), http_5xx, http_4xx, html (a Cloudflare "
        "page instead of JSON), timeout, connection, malformed.",
        "reqps",
        promql(f"sum by (kind) (rate(cw_producer_api_errors_total[{RATE}]))", "A", "{{kind}}"),
    ).override_by_name("rate_limited", [fixed_color("red")])


def rate_limited_stat() -> stat.Panel:
    return _stat(
        "429s (range)",
        "CoinGecko answers 429 Too Many Requests in the time range.",
        'sum(increase(cw_producer_api_calls_total{status="429"}[$__range])) or vector(0)',
        "short",
        [(None, "green"), (1.0, "orange"), (20.0, "red")],
    ).height(8)


def rate_limited_share() -> stat.Panel:
    return _stat(
        "429 share (range)",
        "Share of CoinGecko calls answered with 429 in the time range.",
        # "or vector(0)": with no 429 at all the share is 0 %, not "No data"
        '(sum(increase(cw_producer_api_calls_total{status="429"}[$__range])) or vector(0)) '
        "/ sum(increase(cw_producer_api_calls_total[$__range]))",
        "percentunit",
        [(None, "green"), (0.05, "orange"), (0.25, "red")],
    ).height(8)


def consumer_lag() -> timeseries.Panel:
    return _timeseries(
        "Consumer lag",
        "Messages behind each partition's high watermark. A lag that keeps growing means the "
        "processor cannot keep up (or is stuck on a slow sink).",
        "short",
        promql("sum by (topic, partition) (cw_processor_consumer_lag)", "A", "{{topic}} [{{partition}}]"),
    )


def event_lag() -> timeseries.Panel:
    return _timeseries(
        "Event lag",
        "Wall time minus the newest processed event time, per processor instance. CoinGecko "
        "refreshes prices about once a minute, so a minute or two is normal.",
        "s",
        promql("max by (instance) (cw_processor_event_lag_seconds)", "A", "{{instance}}"),
    )


def sink_latency() -> timeseries.Panel:
    histogram = f"sum by (le) (rate(cw_processor_sink_write_seconds_bucket[{RATE}]))"
    return _timeseries(
        "InfluxDB write latency",
        "Quantiles of one InfluxDB write (histogram cw_processor_sink_write_seconds).",
        "s",
        promql(f"histogram_quantile(0.5, {histogram})", "A", "p50"),
        promql(f"histogram_quantile(0.95, {histogram})", "B", "p95"),
        promql(f"histogram_quantile(0.99, {histogram})", "C", "p99"),
    )


def sink_errors() -> timeseries.Panel:
    return (
        _timeseries(
            "InfluxDB write errors",
            "Failed sink writes per interval: backpressure (InfluxDB slow or down: the processor "
            "pauses and retries, nothing lost) and rejected (InfluxDB refused the points).",
            "short",
            promql(f"sum by (kind) (increase(cw_processor_sink_errors_total[{RATE}]))", "A", "{{kind}}"),
            bars=True,
        )
        .override_by_name("rejected", [fixed_color("red")])
        .override_by_name("backpressure", [fixed_color("orange")])
    )


def dlq() -> timeseries.Panel:
    return _timeseries(
        "Dead-letter queue",
        "Records the processor could not read, sent to crypto.ticks.dlq, by reason "
        "(decode: not JSON; schema: JSON that is not a valid tick).",
        "short",
        promql(f"sum by (reason) (increase(cw_processor_dlq_total[{RATE}]))", "A", "{{reason}}"),
        bars=True,
    )


def alerts_emitted() -> timeseries.Panel:
    return _timeseries(
        "Alerts emitted",
        "Alerts the processor published to crypto.alerts, by kind.",
        "short",
        promql(f"sum by (kind) (increase(cw_processor_alerts_total[{RATE}]))", "A", "{{kind}}"),
        bars=True,
    )


def notifier() -> timeseries.Panel:
    return (
        _timeseries(
            "Notifier deliveries",
            "Alerts read from crypto.alerts, delivery attempts by status, and alerts skipped as "
            "already delivered (replays and restarts).",
            "short",
            promql(f"sum(increase(cw_notifier_alerts_received_total[{RATE}]))", "A", "received"),
            promql(f"sum by (status) (increase(cw_notifier_deliveries_total[{RATE}]))", "B", "delivered: {{status}}"),
            promql(f"sum(increase(cw_notifier_duplicates_total[{RATE}]))", "C", "duplicates"),
            bars=True,
        )
        .override_by_name("delivered: failed", [fixed_color("red")])
        .override_by_name("delivered: ok", [fixed_color("green")])
    )


def build_info() -> table.Panel:
    return (
        table.Panel()
        .title("Versions")
        .description("The version each running service reports (cw_build_info).")
        .datasource(PROMETHEUS)
        .with_target(
            promql(f"max by (job, instance, version) (cw_build_info{{{JOBS}}})", "A", instant=True).format(
                PromQueryFormat.TABLE
            )
        )
        .with_transformation(
            dashboard.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "Value": True},
                    "indexByName": {"job": 0, "instance": 1, "version": 2},
                    "renameByName": {},
                },
            )
        )
        .sort_by([])
        .cell_height(common.TableCellHeight.SM)
        .span(12)
        .height(8)
    )


def build() -> dash.Dashboard:
    dashboard_builder = (
        base_dashboard(
            "Pipeline health",
            PIPELINE_HEALTH_UID,
            "Crypto Watcher: producer, processor and notifier metrics from Prometheus: "
            "throughput, CoinGecko errors and 429s, lags, InfluxDB sink, DLQ, deliveries.",
            "now-3h",
        )
        .annotation(builtin_annotation())
        .with_row(dash.Row("Now"))
    )
    for panel in overview_stats():
        dashboard_builder = dashboard_builder.with_panel(panel)
    return (
        dashboard_builder.with_row(dash.Row("Throughput"))
        .with_panel(ticks_per_second())
        .with_panel(producer_problems())
        .with_row(dash.Row("CoinGecko API"))
        .with_panel(api_calls().span(10))
        .with_panel(api_errors().span(10))
        .with_panel(rate_limited_stat().span(2))
        .with_panel(rate_limited_share().span(2))
        .with_row(dash.Row("Processor"))
        .with_panel(consumer_lag())
        .with_panel(event_lag())
        .with_panel(sink_latency())
        .with_panel(sink_errors())
        .with_panel(dlq())
        .with_panel(alerts_emitted())
        .with_row(dash.Row("Notifier"))
        .with_panel(notifier())
        .with_panel(build_info())
    )
