"""Processor replicas: two processors in one consumer group sharing a topic's partitions, against one.

Issue 10 asks that 2 replicas on 2 partitions reach at least 1.8x the throughput of one, with the
real InfluxDB sink. Set-up (not measured): one topic of ``--partitions`` partitions holding
``--ticks`` ticks (bench/processor_throughput.py's market). Then, alternately, in fresh processes:

- baseline: one processor (``processor_throughput.py``'s worker: ``build_pipeline`` with the
  production settings) over the whole topic;
- subject: ``--replicas`` such processors started together in one new consumer group, writing into
  one InfluxDB database; done when the group's committed offsets reach the end of every partition
  (each replica watches the group, so the slower one's time is the group's). The database must then
  hold a price point for every tick, so a replica that skipped its share cannot score.

The group's join and its rebalance (the second replica arriving while the first has started) are
inside the clock, as they are in production when a replica is added.

On a machine whose cores the replicas share with Kafka and InfluxDB, the ratio is bounded by the
cores, not the processor: the output states the CPU the services used.

Usage:
  .venv/bin/python bench/replicas.py                       # 200,000 ticks, 2 partitions, 2 replicas, 3 runs
  .venv/bin/python bench/replicas.py --ticks 50000 --runs 1
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import common
import processor_throughput

SCRIPT = "replicas.py"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_backlog_args(p, ticks=200_000, partitions=2)
    p.add_argument("--replicas", type=int, default=2, help="processors in the subject's group (default 2)")
    common.add_runs_arg(p)
    return p


def worker_args(args: argparse.Namespace) -> argparse.Namespace:
    """What processor_throughput.worker_argv reads, for its processor worker."""
    return argparse.Namespace(
        ticks=args.ticks,
        coins=args.coins,
        partitions=args.partitions,
        commit_interval=args.commit_interval,
        profile="none",
        sink="influx",  # replicas share one real database, which run_group checks
    )


def run_group(args: argparse.Namespace, topic: str, tag: str, replicas: int, i: int, log: Any) -> dict[str, Any]:
    """``replicas`` processors in one new group over the whole topic; their shared result."""
    group = common.unique(f"{tag}-{replicas}r{i}")
    db = common.unique("bench_replicas")
    expected = sum(common.topic_end_offsets(topic).values())
    common.influx_create(db)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def one(k: int) -> None:
        argv = processor_throughput.worker_argv(worker_args(args), "processor", topic, tag, f"{i}-{k}")
        try:
            results.append(common.run_worker([*argv, "--group", group, "--db", db], stderr=log))
        except BaseException as exc:  # reported below, after the other replica ended
            errors.append(exc)

    try:
        threads = [threading.Thread(target=one, args=(k,)) for k in range(replicas)]
        for thread in threads:
            thread.start()
            time.sleep(0.2)  # as a scale-out does: the second one joins a group already running
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        stored = common.influx_count(db, "price", "price")
        if stored != expected:
            raise RuntimeError(f"InfluxDB holds {stored} price points, expected {expected}")
    finally:
        common.influx_drop(db)
    seconds = max(r["seconds"] for r in results)
    return {
        "replicas": replicas,
        "ticks": expected,
        "seconds": seconds,
        "ticks_per_s": expected / seconds,
        "cpu_s": sum(r["cpu_s"] for r in results),
        "service_cpu_s": results[0]["service_cpu_s"],
        "peak_rss_mb": [r["peak_rss_mb"] for r in results],
        "points_written": sum(r["points_written"] for r in results),
    }


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    command = common.header(
        f"processor replicas: {args.replicas} in one group against one, {args.ticks:,} ticks on "
        f"{args.partitions} partitions",
        SCRIPT,
        parser,
        args,
    )
    if args.partitions < args.replicas:
        raise SystemExit(f"--partitions {args.partitions} < --replicas {args.replicas}: a replica would stay idle")
    common.check_services()
    tag = common.unique("bench_replicas")
    topic = f"{tag}.ticks"
    log_path = common.log_file(tag)
    try:
        common.fill_backlog(topic, args)
        subject = common.Figure(f"{args.replicas} replicas", "ticks/s")
        baseline = common.Figure("1 replica", "ticks/s")
        runs: list[dict[str, Any]] = []

        def run(replicas: int, figure: common.Figure, i: int) -> None:
            with log_path.open("a") as log:
                result = run_group(args, topic, tag, replicas, i, log)
            runs.append(result)
            figure.values.append(result["ticks_per_s"])
            print(
                f"  run {i + 1}, {replicas} replica(s): {result['ticks']:,} ticks in {result['seconds']:.1f}s = "
                f"{result['ticks_per_s']:,.0f} ticks/s; {result['cpu_s'] / result['ticks'] * 1e6:.0f} us CPU per "
                f"tick; {common.cpu_note(result['cpu_s'], result['service_cpu_s'], result['seconds'])}",
                flush=True,
            )

        common.interleaved(args.runs, lambda i: run(1, baseline, i), lambda i: run(args.replicas, subject, i))
        comparison = common.compare(subject, baseline)
        print(f"reproduce: {command}")
        common.save_results(
            f"replicas-{args.replicas}-{args.ticks}", command, {"args": vars(args), "runs": runs, **comparison}
        )
    finally:
        common.delete_topics(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
