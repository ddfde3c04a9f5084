"""Peak resident memory of each service at 1,000 and 10,000 coins, against an idle Python process.

Every service runs as its own command, exactly as deployed, and its peak resident set size is
the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``), read every 0.1 s until it exits:

- baseline: ``python -c "import confluent_kafka; time.sleep(3)"``, an idle interpreter with the
  Kafka client loaded (what every service costs before doing anything);
- producer: ``crypto-producer --source simulate --coins <N ids> --interval 2s --iterations 15``
  (the simulated market publishing a quote of every coin every 2 s for 30 s);
- processor: ``crypto-processor run --stop-when-idle 15`` over ``--rounds`` minutes of history of
  every coin (one tick per coin per minute, written before it starts), so that its window buffers
  (1 h + grace), candle indicators and RocksDB state hold what a long-running processor holds.
  It processes that backlog at full speed, so its InfluxDB batches are as large as they get
  (a checkpoint's worth of points): an upper bound of its live use;
- notifier: ``crypto-notifier --stop-when-idle 10`` delivering (to stdout) every alert the
  processor run raised; skipped, with a note, when the ``crypto-notifier`` command is not there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

from crypto_watcher.config import ProcessorSettings

SCRIPT = "memory.py"
BIN = Path(sys.executable).parent


# The processor's own defaults, so that a result file named without a suffix measured exactly them.
STATE_DEFAULTS = (
    ProcessorSettings.model_fields["state_cache_mb"].default,
    ProcessorSettings.model_fields["state_write_buffer_mb"].default,
)


def add_state_args(p: argparse.ArgumentParser) -> None:
    """--state-cache-mb and --state-write-buffer-mb, defaulting to the processor's own (every
    benchmark that starts the processor: memory.py, memory_breakdown.py, soak.py)."""
    p.add_argument(
        "--state-cache-mb",
        type=int,
        default=STATE_DEFAULTS[0],
        help=f"the processor's CW_STATE_CACHE_MB, RocksDB block cache (default {STATE_DEFAULTS[0]}, its default)",
    )
    p.add_argument(
        "--state-write-buffer-mb",
        type=int,
        default=STATE_DEFAULTS[1],
        help=f"the processor's CW_STATE_WRITE_BUFFER_MB, RocksDB write buffer per partition "
        f"(default {STATE_DEFAULTS[1]}, its default)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coins", type=int, nargs="+", default=[1000, 10000], help="coin counts (default 1000 10000)")
    p.add_argument("--rounds", type=int, default=65, help="minutes of history fed to the processor (default 65)")
    p.add_argument("--producer-polls", type=int, default=15, help="polls of the simulated producer (default 15)")
    add_state_args(p)
    common.add_runs_arg(p)
    return p


def measure(
    name: str, argv: list[str], log: Path, env: dict[str, str] | None = None, timeout_s: float = 3600
) -> dict[str, Any]:
    """Run ``argv`` to its end; its peak RSS (VmHWM), wall time and exit status."""
    with log.open("ab") as out:
        out.write(f"--- {name}: {' '.join(argv)[:500]}\n".encode())
        out.flush()
        began = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=common.ROOT, stdout=out, stderr=out, env={**os.environ, **(env or {})})
        peak = 0.0
        rss_samples: list[float] = []
        while proc.poll() is None:
            try:
                peak = common.peak_rss_mb(proc.pid)
                rss_samples.append(current_rss_mb(proc.pid))
            except (OSError, RuntimeError):
                pass  # exiting
            if time.perf_counter() - began > timeout_s:
                proc.kill()
                raise RuntimeError(f"{name} did not finish within {timeout_s:.0f}s (see {log})")
            time.sleep(0.1)
        seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{name} exited with {proc.returncode} (see {log})")
    return {"peak_rss_mb": peak, "seconds": seconds, "median_rss_mb": sorted(rss_samples)[len(rss_samples) // 2]}


def current_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def command(name: str) -> list[str] | None:
    path = BIN / name
    return [str(path)] if path.exists() else None


def run_round(coins: int, args: argparse.Namespace, i: int, log: Path) -> dict[str, dict[str, Any]]:
    tag = common.unique(f"bench_mem_{coins}")
    topics = {"ticks": f"{tag}.ticks", "alerts": f"{tag}.alerts", "dlq": f"{tag}.dlq", "produced": f"{tag}.produced"}
    db = common.unique("bench_mem")
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    out: dict[str, dict[str, Any]] = {}
    kafka_env = {"CW_KAFKA_BOOTSTRAP": common.KAFKA, "CW_LOG_FORMAT": "json", "CW_TICKS_PARTITIONS": "3"}
    try:
        out["baseline"] = measure(
            "baseline",
            [sys.executable, "-c", "import time, confluent_kafka; time.sleep(3)"],
            log,
        )
        common.create_topic(topics["ticks"], 3)
        common.fill_topic(topics["ticks"], common.tick_records(common.market_ticks(coins, coins * args.rounds)))
        processor = command("crypto-processor") or [sys.executable, "-m", "processor"]
        out["processor"] = measure(
            "processor",
            [
                *processor,
                *("run", "--ticks-topic", topics["ticks"], "--alerts-topic", topics["alerts"]),
                *("--group", f"{tag}-processor", "--influx-url", common.INFLUX, "--influx-db", db),
                *("--state-dir", str(work / "state"), "--http-port", "-1", "--stop-when-idle", "15"),
            ],
            log,
            env={
                **kafka_env,
                "CW_DLQ_TOPIC": topics["dlq"],
                "CW_LOG_LEVEL": "ERROR",
                "CW_STATE_CACHE_MB": str(args.state_cache_mb),
                "CW_STATE_WRITE_BUFFER_MB": str(args.state_write_buffer_mb),
            },
        )
        out["processor"]["alerts"] = sum(common.topic_end_offsets(topics["alerts"]).values())
        notifier = command("crypto-notifier")
        if notifier is None:
            print(f"  note: no {BIN / 'crypto-notifier'} command yet: notifier not measured", flush=True)
        else:
            out["notifier"] = measure(
                "notifier",
                [
                    *notifier,
                    *("--topic", topics["alerts"], "--group", f"{tag}-notifier", "--http-port", "-1"),
                    *("--state", str(work / "delivered.sqlite"), "--stop-when-idle", "10"),
                ],
                log,
                # the history's alerts are months old: deliver them anyway (default: skip > 1 day)
                env={**kafka_env, "CW_NOTIFY_RETENTION": "3650d", "CW_LOG_LEVEL": "WARNING"},
            )
            out["notifier"]["alerts"] = out["processor"]["alerts"]
        producer = command("crypto-producer") or [sys.executable, "-m", "producer"]
        coin_list = ",".join(common.coin_ids(coins))
        out["producer"] = measure(
            "producer",
            [
                *producer,
                *("--source", "simulate", "--vs", "usd", "--interval", "2s"),
                *("--iterations", str(args.producer_polls), "--http-port", "-1", "--topic", topics["produced"]),
            ],
            log,
            env={**kafka_env, "CW_COINS": coin_list, "CW_LOG_LEVEL": "WARNING"},
        )
        produced = sum(common.topic_end_offsets(topics["produced"]).values())
        out["producer"]["ticks"] = produced
        if produced != coins * args.producer_polls:
            raise RuntimeError(f"producer published {produced} ticks, expected {coins * args.producer_polls}")
    finally:
        common.influx_drop(db)
        shutil.rmtree(work, ignore_errors=True)
        common.delete_topics(tag)
    return out


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    command_line = common.header(
        f"peak resident memory of each service at {', '.join(f'{c:,}' for c in args.coins)} coins",
        SCRIPT,
        parser,
        args,
    )
    common.check_services()
    log = common.log_file(common.unique("bench_memory"), "service logs")
    results: dict[str, Any] = {}
    for coins in args.coins:
        print(f"{coins:,} coins:", flush=True)
        figures: dict[str, common.Figure] = {}
        rounds: list[dict[str, dict[str, Any]]] = []
        for i in range(args.runs):
            for attempt in range(1, 4):
                try:
                    got = run_round(coins, args, i, log)
                    break
                except Exception as exc:
                    if attempt == 3:
                        raise
                    print(f"  run {i + 1} failed ({exc}); repeating it", flush=True)
                    time.sleep(10)
            rounds.append(got)
            for name, result in got.items():
                label = "idle python + confluent_kafka" if name == "baseline" else name
                figures.setdefault(name, common.Figure(label, "MB", higher_is_better=False)).values.append(
                    result["peak_rss_mb"]
                )
            print(
                f"  run {i + 1}: "
                + ", ".join(f"{name} {r['peak_rss_mb']:.0f} MB ({r['seconds']:.0f}s)" for name, r in got.items())
                + f"; processor saw {got['processor']['alerts']:,} alerts; load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        comparisons = {
            name: common.compare(figure, figures["baseline"]) for name, figure in figures.items() if name != "baseline"
        }
        results[str(coins)] = {"runs": rounds, "comparisons": comparisons}
    print(f"reproduce: {command_line}")
    defaults = (args.state_cache_mb, args.state_write_buffer_mb) == STATE_DEFAULTS
    suffix = "" if defaults else f"-cache{args.state_cache_mb}-wb{args.state_write_buffer_mb}"
    common.save_results(
        "memory-" + "-".join(str(c) for c in args.coins) + suffix,
        command_line,
        {"args": vars(args), "results": results},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
