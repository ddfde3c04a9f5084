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


def bar(ax: Any, labels: list[str], figures: list[dict[str, Any]], unit: str, title: str) -> None:
    medians = [f["median"] for f in figures]
    lows = [f["median"] - f["min"] for f in figures]
    highs = [f["max"] - f["median"] for f in figures]
    colors = ["#9aa5b1", "#2f7ed8", "#f28f43", "#7cb342"][: len(figures)]
    ax.bar(labels, medians, yerr=[lows, highs], capsize=6, color=colors)
    for x, value in enumerate(medians):
        ax.annotate(f"{value:,.0f}", (x, value), ha="center", va="bottom", xytext=(0, 6), textcoords="offset points")
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, max(f["max"] for f in figures) * 1.2)


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
    width = 0.38
    for n, (coins, data) in enumerate(result["results"].items()):
        comps = data["comparisons"]
        values = []
        names = []
        for service in services:
            if service == "baseline":
                figure = next(iter(comps.values()))["baseline"]
            elif service in comps:
                figure = comps[service]["subject"]
            else:
                continue
            names.append(service if service != "baseline" else "idle python\n+ confluent_kafka")
            values.append(figure["median"])
        xs = [i + (n - 0.5) * width for i in range(len(values))]
        bars = ax.bar(xs, values, width, label=f"{int(coins):,} coins")
        for b, v in zip(bars, values, strict=True):
            ax.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("peak RSS (MB), median of 3")
    ax.set_title("Peak resident memory per service", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(IMG / "memory.png", dpi=110)
    plt.close(fig)


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    IMG.mkdir(parents=True, exist_ok=True)
    throughput()
    latency()
    memory()
    for path in sorted(IMG.glob("*.png")):
        print(path.relative_to(common.ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
