"""Draw docs/img/*.png from the raw results the benchmarks wrote to bench/results/.

  .venv/bin/python bench/plots.py

Each plot is drawn only when its results are there; the plots name the file they came from.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import common
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

IMG = common.ROOT / "docs" / "img"


def load(name: str) -> dict[str, Any] | None:
    path = common.RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def bar(
    ax: Any, labels: list[str], figures: list[dict[str, Any]], unit: str, title: str, colors: list[str] | None = None
) -> None:
    """Median bars with the runs' min-max as whiskers, each bar labelled with its median."""
    medians = [f["median"] for f in figures]
    lows = [f["median"] - f["min"] for f in figures]
    highs = [f["max"] - f["median"] for f in figures]
    colors = colors or ["#9aa5b1", "#2f7ed8", "#f28f43", "#7cb342"][: len(figures)]
    ax.bar(labels, medians, yerr=[lows, highs], capsize=6, color=colors)
    for x, value in enumerate(medians):
        ax.annotate(f"{value:,.0f}", (x, value), ha="center", va="bottom", xytext=(0, 6), textcoords="offset points")
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, max(f["max"] for f in figures) * 1.2)


def grouped_bars(ax: Any, names: list[str], series: dict[str, list[float]]) -> None:
    """One bar per name for each series, side by side, each labelled with its value."""
    width = 0.8 / len(series)
    for n, (label, values) in enumerate(series.items()):
        xs = [i + (n - (len(series) - 1) / 2) * width for i in range(len(values))]
        bars = ax.bar(xs, values, width, label=label)
        for b, v in zip(bars, values, strict=True):
            ax.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names)


def throughput() -> None:
    panels = []
    proc = load("processor_throughput-1000000")
    before = load("processor_throughput-1000000-before")
    if proc:
        labels = ["bare consumer\n+ json.loads"]
        figures = [proc["baseline"]]
        if before:
            runs = len(before["subject"]["values"])
            labels.append("processor\nbefore" + ("" if runs == 3 else f" ({runs} run{'s' if runs > 1 else ''})"))
            figures.append(before["subject"])
        labels.append("processor" + ("\nafter" if before else ""))
        figures.append(proc["subject"])
        panels.append((labels, figures, "ticks/s", "processor, 1M ticks, 1,000 coins"))
    sink = load("sink_throughput-200000")
    if sink:
        panels.append(
            (
                ["raw /write\n(requests)", "InfluxSink\n+ V1Writer"],
                [sink["baseline"], sink["subject"]],
                "points/s",
                "InfluxDB sink, 1M points",
            )
        )
    producer = load("producer_throughput-1000000")
    if producer:
        panels.append(
            (
                ["bare produce\nloop", "TickPublisher"],
                [producer["baseline"], producer["subject"]],
                "ticks/s",
                "producer, 1M ticks",
            )
        )
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2))
    for ax, (labels, figures, unit, title) in zip(axes if len(panels) > 1 else [axes], panels, strict=True):
        bar(ax, labels, figures, unit, title)
    fig.suptitle("Throughput: median of 3 runs, whiskers min-max (2-core machine)", fontsize=11)
    fig.tight_layout()
    fig.savefig(IMG / "throughput.png", dpi=110)
    plt.close(fig)


def latency() -> None:
    result = load("latency-5s")
    if not result:
        return
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for kind, label, color in (("echo", "bare consume-produce", "#9aa5b1"), ("processor", "processor", "#2f7ed8")):
        values = [v for r in result["runs"] if r["kind"] == kind for v in r["latencies_ms"]]
        if not values:
            continue
        p50, p99 = common.percentile(values, 50), common.percentile(values, 99)
        bins = [2 ** (i / 4) for i in range(0, 57)]  # 1 ms .. ~16 s, log-spaced
        ax.hist(values, bins=bins, alpha=0.75, color=color, label=f"{label}: p50 {p50:,.0f} ms, p99 {p99:,.0f} ms")
    ax.set_xscale("log")
    ax.set_xlabel("tick produced -> alert received (ms, log scale)")
    ax.set_ylabel("alerts")
    ax.set_title("Alert latency at 1,000 ticks/s (1,000 coins), all runs pooled; checkpoint every 5 s", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(IMG / "latency.png", dpi=110)
    plt.close(fig)


def memory() -> None:
    result = load("memory-1000-10000")
    if not result:
        return
    services = ["baseline", "producer", "processor", "notifier"]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    names: list[str] = []
    series: dict[str, list[float]] = {}
    for coins, data in result["results"].items():
        comps = data["comparisons"]
        figures = {
            service: next(iter(comps.values()))["baseline"] if service == "baseline" else comps[service]["subject"]
            for service in services
            if service == "baseline" or service in comps
        }
        names = [s if s != "baseline" else "idle python\n+ confluent_kafka" for s in figures]
        series[f"{int(coins):,} coins"] = [f["median"] for f in figures.values()]
    grouped_bars(ax, names, series)
    ax.set_ylabel("peak RSS (MB), median of 3")
    ax.set_title("Peak resident memory per service", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(IMG / "memory.png", dpi=110)
    plt.close(fig)


# Issue 10's figures, each panel from the result files named here (bench/results/<name>.json).
ISSUE10_THROUGHPUT = (
    (
        "before issue 10\n(735612d, 3 windows,\nload 9-12)",
        "processor_throughput-100000-stop20-windows-5m-15m-1h-before10",
    ),
    ("stop 21 code\n(b6d1273)", "processor_throughput-100000-stop22-commit1s-before"),
    ("one state value\n(stop 22), 1 s", "processor_throughput-100000-stop22-commit1s"),
    ("defaults\n(stop 22), 250 ms", "processor_throughput-100000-stop22-commit250ms-cache16-wb4-prefetch256"),
    ("defaults,\nstop 24", "processor_throughput-100000-stop24-influx-sink"),
    ("no InfluxDB:\n--sink null,\nstop 24", "processor_throughput-100000-stop24-null-sink"),
)
ISSUE10_LATENCY = (
    ("before issue 10\n5 s checkpoints", "latency-5s"),
    ("stop 20\n1 s", "latency-1s-stop20"),
    ("stop 21\n1 s", "latency-1s-stop21-quiet-probe"),
    ("stop 22\n1 s", "latency-1s-stop22"),
    ("defaults\n(stop 22), 250 ms", "latency-250ms-stop22-new-defaults"),
)
ISSUE10_MEMORY = (
    ("before issue 10", "memory-1000-10000"),
    ("stop 21 defaults", "memory-1000-10000-stop20"),
    ("defaults (stop 22)", "memory-1000-10000-stop22"),
)
ISSUE10_SOAKS = (
    ("stop 21 defaults", "soak-10000-stop21"),
    ("defaults (stop 22)", "soak-10000-stop23"),
)


def issue10() -> None:
    """Issue 10's four targets against the runs that measured them, each with its target line."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.4))
    (ax_tp, ax_lat), (ax_mem, ax_soak) = axes

    runs = [(label, load(name)) for label, name in ISSUE10_THROUGHPUT]
    runs = [(label, r) for label, r in runs if r and r.get("ratio_to_floor")]
    null = [r["args"].get("sink") == "null" for _, r in runs]  # not the target's figure: drawn hatched
    ax_tp.bar(
        [label for label, _ in runs],
        [r["ratio_to_floor"] for _, r in runs],
        color=["#c9d6e3" if n else "#2f7ed8" for n in null],
        edgecolor="#2f7ed8",
    )
    for patch, n in zip(ax_tp.patches, null, strict=True):
        patch.set_hatch("//" if n else None)
    for x, (_, r) in enumerate(runs):
        ax_tp.annotate(f"{r['ratio_to_floor']:.3f}", (x, r["ratio_to_floor"]), ha="center", va="bottom", fontsize=8)
    ax_tp.axhline(0.4, color="#c0392b", linestyle="--", label="target 0.4 x")
    ax_tp.set_ylim(0, 0.45)
    ax_tp.set_ylabel("processor ticks/s / Quix floor ticks/s")
    ax_tp.set_title("Throughput, 100,000 ticks, ratio to the floor in the same run", fontsize=10)
    ax_tp.legend(fontsize=8)
    ax_tp.tick_params(axis="x", labelsize=7)

    lat = [(label, load(name)) for label, name in ISSUE10_LATENCY]
    lat = [(label, r) for label, r in lat if r]
    bar(
        ax_lat,
        [label for label, _ in lat],
        [r["p99"]["subject"] for _, r in lat],
        "p99 tick -> alert (ms); whiskers: runs' min-max",
        "Latency at 1,000 ticks/s, 1,000 coins",
        colors=["#f28f43"] * len(lat),
    )
    ax_lat.axhline(100, color="#c0392b", linestyle="--", label="target 100 ms")
    ax_lat.legend(fontsize=8)
    ax_lat.tick_params(axis="x", labelsize=7)

    mem = [(label, load(name)) for label, name in ISSUE10_MEMORY]
    mem = [(label, r) for label, r in mem if r]

    def processor_peak(result: dict[str, Any], coins: str) -> float:
        return float(result["results"][coins]["comparisons"]["processor"]["subject"]["median"])

    grouped_bars(
        ax_mem,
        [label for label, _ in mem],
        {f"{int(coins):,} coins": [processor_peak(r, coins) for _, r in mem] for coins in ("1000", "10000")},
    )
    ax_mem.tick_params(axis="x", labelsize=8)
    ax_mem.axhline(150, color="#1f77b4", linestyle="--", linewidth=1, label="target at 1,000 coins")
    ax_mem.axhline(350, color="#ff7f0e", linestyle="--", linewidth=1, label="target at 10,000 coins")
    ax_mem.set_ylabel("processor peak RSS (MB)")
    ax_mem.set_title("Peak memory, a 65-round backlog", fontsize=10)
    ax_mem.legend(fontsize=8)

    for label, name in ISSUE10_SOAKS:
        soak = load(name)
        if not soak:
            continue
        samples = soak["samples"]
        figures = soak["figures"]
        ax_soak.plot(
            [s["t_s"] / 60 for s in samples],
            [s["rss_mb"] for s in samples],
            linewidth=0.8,
            label=f"{label}: {figures['growth_pct']:+.1f} % over the measured hour",
        )
        ax_soak.axvspan(0, figures["warmup_min"], color="#dddddd", alpha=0.3)
    ax_soak.set_xlabel("minutes (grey: warm-up, left out)")
    ax_soak.set_ylabel("processor RSS (MB)")
    ax_soak.set_title("Soak at 10,000 coins, every coin quoted every 30 s (target: growth <= 5 %)", fontsize=10)
    ax_soak.legend(fontsize=8)

    fig.suptitle("Issue 10: the processor's targets (2-core machine; bench/results/ names each run)", fontsize=11)
    fig.tight_layout()
    fig.savefig(IMG / "issue10.png", dpi=100)
    plt.close(fig)


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    IMG.mkdir(parents=True, exist_ok=True)
    throughput()
    latency()
    memory()
    issue10()
    for path in sorted(IMG.glob("*.png")):
        print(path.relative_to(common.ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
