"""Draw the fault-injection timelines as PNGs for docs/reliability.md.

Single broker (tests/services/test_fault_injection.py) -> docs/img/reliability.png:
    bash scripts/services.sh up && .venv/bin/python -m pytest tests/services/test_fault_injection.py -s
    .venv/bin/python bench/plot_reliability.py [.cache/reliability/fault-run.json]
Production topology (tests/services/test_scale_out.py) -> docs/img/scale-out.png:
    .venv/bin/python -m pytest tests/services/test_scale_out.py -s
    .venv/bin/python bench/plot_reliability.py --scale-out [.cache/reliability/scale-out.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"kill": "tab:red", "influx-stop": "tab:orange", "kafka-stop": "tab:purple"}


def _timeline(samples: list[list[Any]], stored_label: str) -> tuple[Any, Any, Any]:
    """Ticks stored (left axis) and alerts delivered (right axis) over the run's seconds."""
    times = [s[0] for s in samples]
    stored: list[float] = []
    high = 0
    for sample in samples:
        # a stored count never goes down: None or a drop means InfluxDB could not be asked (a gap)
        if sample[1] is None or sample[1] < high:
            stored.append(float("nan"))
        else:
            high = sample[1]
            stored.append(sample[1])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(times, stored, label=stored_label, color="tab:blue")
    ax.set_xlabel("seconds since the producer started")
    ax.set_ylabel("ticks stored")
    ax2 = ax.twinx()
    ax2.plot(times, [s[2] for s in samples], label="alerts delivered", color="tab:green", linestyle="--")
    ax2.set_ylabel("alerts delivered")
    return fig, ax, ax2


def scale_out(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else ROOT / ".cache" / "reliability" / "scale-out.json"
    run = json.loads(source.read_text())
    fig, ax, ax2 = _timeline(run["samples"], "ticks stored in InfluxDB 2")
    moments = {name: t for t, name in run["events"]}
    spans = [
        ("broker-kill", "broker-back", "broker 2 SIGKILLed until back", "tab:purple"),
        ("roll-start", "roll-end", "rolling restart of every replica", "tab:orange"),
    ]
    for begin, end, label, colour in spans:
        if begin in moments and end in moments:
            ax.axvspan(moments[begin], moments[end], color=colour, alpha=0.2, label=label)
    for name, label, colour in (
        ("replica-kill", "replica SIGKILLed for good", "tab:red"),
        ("replica-join", "new replica joins", "tab:cyan"),
    ):
        if name in moments:
            ax.axvline(moments[name], color=colour, linewidth=1.2, label=label)
    lines, labels = ax.get_legend_handles_labels()
    lines2, labels2 = ax2.get_legend_handles_labels()
    ax.legend(lines + lines2, labels + labels2, loc="upper left", fontsize=8)
    ax.set_title(f"{run['ticks']:,} ticks, 3 brokers, {run['partitions']} partitions, processor replicas, InfluxDB 2")
    fig.tight_layout()
    out = ROOT / "docs" / "img" / "scale-out.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out.relative_to(ROOT)} from {source}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[1] == "--scale-out":
        return scale_out(argv[2:])
    source = Path(argv[1]) if len(argv) > 1 else ROOT / ".cache" / "reliability" / "fault-run.json"
    run = json.loads(source.read_text())
    fig, ax, ax2 = _timeline(run["samples"], "ticks stored in InfluxDB")
    starts = {"influx-stop": None, "kafka-stop": None}
    kills = 0
    for moment, name in run["events"]:
        if name == "kill":
            kills += 1
            ax.axvline(moment, color=COLOURS["kill"], linewidth=1, label="processor SIGKILL" if kills == 1 else None)
        elif name.endswith("-stop"):
            starts[name] = moment
        elif name.endswith("-start"):
            stop_name = name.replace("-start", "-stop")
            begin = starts.get(stop_name)
            if begin is not None:
                label = "InfluxDB down" if stop_name.startswith("influx") else "Kafka down"
                ax.axvspan(begin, moment, color=COLOURS[stop_name], alpha=0.2, label=label)
    lines, labels = ax.get_legend_handles_labels()
    lines2, labels2 = ax2.get_legend_handles_labels()
    ax.legend(lines + lines2, labels + labels2, loc="upper left", fontsize=8)
    ax.set_title(f"{run['ticks']:,} ticks, {run['coins']:,} coins: 3 SIGKILLs, InfluxDB down 30 s, Kafka down 20 s")
    fig.tight_layout()
    out = ROOT / "docs" / "img" / "reliability.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out.relative_to(ROOT)} from {source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
