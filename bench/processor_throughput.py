"""Processor throughput: ticks/s through the whole Quix pipeline, against a bare Kafka consumer.

Set-up (not measured): one topic with ``--ticks`` ticks of ``--coins`` coins (one quote per coin
per minute of event time, CoinGecko's cadence, with scripted 8 % moves so alerts fire), written
by a plain producer. Then, alternately, in fresh child processes:

- baseline: a bare confluent-kafka consumer (new group, ``subscribe``, ``poll()`` one message at a
  time like Quix) that reads every tick and ``json.loads`` it, then commits;
- floor: the least a Quix Streams app does with these ticks (issue 10's "Quix floor"): the
  processor's own deserializer and event-time extractor, one stateful step that reads and writes a
  small per-key dict, and a sink that discards, on the same topic, same commit interval and same
  RocksDB settings; done, like the subject, when the committed offsets reach the end. What the
  processor costs beyond it is its own work (rules, candles, points, InfluxDB); the Quix machinery
  below it is not ours to cut;
- subject: the processor as ``crypto-processor`` runs it (``processor.app.build_pipeline``, the
  production settings, InfluxDB sink into a fresh database, alerts and changelog topics), from
  ``app.run()`` until a watcher sees the group's committed offsets reach the end of every
  partition. Quix commits only after the sink has written the checkpoint's points, so that moment
  is "every tick processed, every point in InfluxDB, every offset committed". Topic creation
  (input, alerts, DLQ and Quix's changelog topics, all made while the pipeline is built) happens
  before the clock starts; consumer-group join and the first rebalance are inside it, for both.

Usage:
  .venv/bin/python bench/processor_throughput.py                  # 1,000,000 ticks, 3 runs each
  .venv/bin/python bench/processor_throughput.py --ticks 200000   # quick
  .venv/bin/python bench/processor_throughput.py --ticks 200000 --runs 1 --profile pyinstrument
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common
from confluent_kafka import Consumer, KafkaException, TopicPartition
from quixstreams.sinks.base import BatchingSink, SinkBatch

from crypto_watcher.durations import parse_duration_ms

SCRIPT = "processor_throughput.py"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_backlog_args(p, ticks=1_000_000, partitions=3)
    p.add_argument(
        "--code",
        default=".",
        help="folder whose processor/ package is measured (default: this checkout); e.g. .cache/bench/before "
        "after `git archive 0254f7d processor | tar -x -C .cache/bench/before` to measure the code before "
        "the performance work",
    )
    common.add_runs_arg(p)
    p.add_argument(
        "--profile",
        choices=["none", "cprofile", "pyinstrument"],
        default="none",
        help="profile the processor runs (slows them: figures are then not comparable)",
    )
    p.add_argument(
        "--sink",
        choices=["influx", "null"],
        default="influx",
        help="the processor's sink: influx (the real one, issue 10's figure) or null (its InfluxSink with a writer "
        "that discards: what the processor costs without InfluxDB's write and wait, the most a writer outside "
        "the processor could give it)",
    )
    p.add_argument("--worker", choices=["processor", "baseline", "floor"], help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--tag", help=argparse.SUPPRESS)
    p.add_argument("--run-id", default="0", help=argparse.SUPPRESS)
    # bench/replicas.py: several workers in one consumer group, writing into one database it checks
    p.add_argument("--group", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    return p


# ---------------------------------------------------------------------------------------------
# Workers (child processes)
# ---------------------------------------------------------------------------------------------


class CommitWatcher(threading.Thread):
    """Polls the group's committed offsets; when all reached the end, notes the time and stops Quix."""

    def __init__(self, group: str, topic: str, ends: dict[int, int], on_done: Any, limit_s: float) -> None:
        super().__init__(name="commit-watcher", daemon=True)
        self.done_at: float | None = None
        self.timed_out = False
        self._consumer = Consumer({"bootstrap.servers": common.KAFKA, "group.id": group, "enable.auto.commit": False})
        self._partitions = [TopicPartition(topic, p) for p in ends]
        self._ends = ends
        self._on_done = on_done
        self._limit_s = limit_s

    def run(self) -> None:
        last_progress = time.perf_counter()
        best = -1
        try:
            while True:
                try:
                    committed = self._consumer.committed(self._partitions, timeout=10)
                except KafkaException:  # e.g. NOT_COORDINATOR while the group is being set up
                    time.sleep(0.1)
                    continue
                if all(tp.offset >= self._ends[tp.partition] for tp in committed):
                    self.done_at = time.perf_counter()
                    break
                total = sum(max(tp.offset, 0) for tp in committed)
                if total > best:
                    best, last_progress = total, time.perf_counter()
                elif time.perf_counter() - last_progress > self._limit_s:
                    self.timed_out = True  # no commit for that long: Kafka went away (shared machine)
                    break
                time.sleep(0.05)
        finally:
            self._consumer.close()
            self._on_done()


def run_until_committed(app: Any, group: str, topic: str, profile: str) -> tuple[dict[str, Any], Any]:
    """Runs a Quix app over the whole topic and times it: from ``app.run`` until the group's committed
    offsets reach the topic's end (``CommitWatcher`` then stops the app). Shared by every worker, so
    the processor and the floor are clocked alike. The result also holds the worker's CPU, the
    services' CPU and its peak RSS; the profiler comes beside it (None unless ``profile`` asked)."""
    ends = common.topic_end_offsets(topic)
    expected = sum(ends.values())
    first: list[float] = []

    def on_processed(_topic: str, _partition: int, _offset: int) -> None:
        if not first:
            first.append(time.perf_counter())

    app._on_message_processed = on_processed  # Quix's hook; build_pipeline does not expose it
    watcher = CommitWatcher(group, topic, ends, app.stop, limit_s=180)
    profiler: Any = None
    if profile == "cprofile":
        import cProfile

        profiler = cProfile.Profile()
    elif profile == "pyinstrument":
        import pyinstrument

        profiler = pyinstrument.Profiler(interval=0.001)
    services = common.ServiceCpu().start()
    cpu0 = common.cpu_seconds()
    start = time.perf_counter()
    watcher.start()
    if profiler is not None:
        profiler.enable() if profile == "cprofile" else profiler.start()
    app.run(timeout=0, collect=False)
    if profiler is not None:
        profiler.disable() if profile == "cprofile" else profiler.stop()
    cpu_s = common.cpu_seconds() - cpu0
    service_cpu = services.stop()
    watcher.join(30)
    if watcher.done_at is None:
        raise common.Disturbed("no offset committed for 180 s: stopped" if watcher.timed_out else "stopped early")
    elapsed = watcher.done_at - start
    return {
        "ticks": expected,
        "seconds": elapsed,
        "ticks_per_s": expected / elapsed,
        "startup_s": (first[0] - start) if first else None,
        "steady_ticks_per_s": expected / (watcher.done_at - first[0]) if first else None,
        "peak_rss_mb": common.peak_rss_mb(),
        "cpu_s": cpu_s,
        "service_cpu_s": service_cpu,
    }, profiler


class DiscardingWriter:
    """``--sink null``: a LineWriter that takes every line and sends none, so the InfluxSink's own
    work (batching, chunking, counting) stays in the measurement and only InfluxDB's leaves it."""

    description = "nowhere (--sink null)"

    def check(self) -> None:
        return None

    def ping(self) -> bool:
        return True

    def write(self, lines: Sequence[str]) -> None:
        return None

    def close(self) -> None:
        return None


def work_processor(args: argparse.Namespace) -> dict[str, Any]:
    import processor
    from crypto_watcher.config import ProcessorSettings, load_settings
    from crypto_watcher.logs import setup_logging
    from processor.app import build_pipeline
    from processor.influx import InfluxSink

    setup_logging("WARNING", "processor", "json")  # as deployed (alerts are WARNING lines), to the log file
    expected = sum(common.topic_end_offsets(args.topic).values())
    shared = args.db is not None  # one of several replicas: the caller made the database and checks it
    null = args.sink == "null"
    owns_db = not shared and not null  # made here, checked here and dropped after
    db = args.db or common.unique("bench_proc")
    state_dir = tempfile.mkdtemp(prefix="bench-proc-state-")
    run = common.unique(f"{args.tag}-{args.run_id}")  # a repeated run must not reuse a group or topic
    group = args.group or f"{run}-proc"
    settings = load_settings(
        ProcessorSettings,
        {
            "kafka_bootstrap": common.KAFKA,
            "ticks_topic": args.topic,
            "alerts_topic": f"{run}.alerts",
            "dlq_topic": f"{run}.dlq",
            "ticks_partitions": args.partitions,
            "consumer_group": group,
            "state_dir": state_dir,
            "influx_url": common.INFLUX,
            "influx_db": db,
            "commit_interval": parse_duration_ms(args.commit_interval),
            "http_port": -1,
        },
    )
    if owns_db:
        common.influx_create(db)
    try:
        built = time.perf_counter()
        sink = InfluxSink(DiscardingWriter()) if null else None
        pipeline = build_pipeline(settings, sink=sink)  # declares (creates) every topic, incl. Quix changelogs
        build_s = time.perf_counter() - built
        measured, profiler = run_until_committed(pipeline.app, group, args.topic, args.profile)
        elapsed = measured["seconds"]
        points = pipeline.sink.points_written
        alerts = sum(common.topic_end_offsets(settings.alerts_topic).values())
        stored = common.influx_count(db, "price", "price") if owns_db else expected
        if stored != expected:
            raise RuntimeError(f"InfluxDB holds {stored} price points, expected {expected}")
        result: dict[str, Any] = {
            **measured,
            "build_s": build_s,
            "points_written": points,
            "points_per_s": points / elapsed,
            "dlq": pipeline.dead_letters.count,
            "alerts": alerts,
            "processor_code": common.repo_path(Path(processor.__file__).parent),
            "windows": settings.windows,  # CW_WINDOWS, when set, changes the work per tick
            "sink": args.sink,
        }
        if profiler is not None:
            result["profile"] = save_profile(args, profiler)
        return result
    finally:
        if owns_db:
            common.influx_drop(db)
        shutil.rmtree(state_dir, ignore_errors=True)


def save_profile(args: argparse.Namespace, profiler: Any) -> str:
    common.LOGS.mkdir(parents=True, exist_ok=True)
    stem = common.LOGS / f"profile-{args.profile}-{args.ticks}-{args.run_id}-{int(time.time())}"
    if args.profile == "cprofile":
        import io
        import pstats

        path = stem.with_suffix(".pstats")
        profiler.dump_stats(path)
        text = io.StringIO()
        pstats.Stats(str(path), stream=text).sort_stats("tottime").print_stats(40)
        stem.with_suffix(".tottime.txt").write_text(text.getvalue())
        text = io.StringIO()
        pstats.Stats(str(path), stream=text).sort_stats("cumulative").print_stats(80)
        stem.with_suffix(".cumulative.txt").write_text(text.getvalue())
        return common.repo_path(path)
    path = stem.with_suffix(".txt")
    path.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    stem.with_suffix(".html").write_text(profiler.output_html())
    return common.repo_path(path)


def work_baseline(args: argparse.Namespace) -> dict[str, Any]:
    ends = common.topic_end_offsets(args.topic)
    expected = sum(ends.values())
    consumer = Consumer(
        {
            "bootstrap.servers": common.KAFKA,
            "group.id": common.unique(f"{args.tag}-{args.run_id}-bare"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    services = common.ServiceCpu().start()
    cpu0 = common.cpu_seconds()
    start = time.perf_counter()
    consumer.subscribe([args.topic])
    n = 0
    first = None
    last: dict[int, int] = {}
    loads = json.loads
    while n < expected:
        msg = consumer.poll(1.0)
        if msg is None or msg.error() is not None:
            continue
        if first is None:
            first = time.perf_counter()
        loads(msg.value())
        last[msg.partition()] = msg.offset()
        n += 1
    consumer.commit(offsets=[TopicPartition(args.topic, p, o + 1) for p, o in last.items()], asynchronous=False)
    done = time.perf_counter()
    cpu_s = common.cpu_seconds() - cpu0
    service_cpu = services.stop()
    consumer.close()
    assert first is not None
    return {
        "ticks": n,
        "seconds": done - start,
        "ticks_per_s": n / (done - start),
        "startup_s": first - start,
        "steady_ticks_per_s": n / (done - first),
        "peak_rss_mb": common.peak_rss_mb(),
        "cpu_s": cpu_s,
        "service_cpu_s": service_cpu,
    }


class NullSink(BatchingSink):
    """Discards: the floor measures Quix's own cost per tick, not any writer's."""

    def write(self, batch: SinkBatch) -> None:
        return None


def work_floor(args: argparse.Namespace) -> dict[str, Any]:
    from quixstreams import Application

    from crypto_watcher.config import ProcessorSettings, load_settings
    from processor.app import TickDeserializer, rocksdb_options, tick_event_time

    state_dir = tempfile.mkdtemp(prefix="bench-floor-state-")
    group = f"{common.unique(f'{args.tag}-{args.run_id}')}-floor"
    settings = load_settings(ProcessorSettings, {"kafka_bootstrap": common.KAFKA, "http_port": -1})
    try:
        app = Application(
            broker_address=common.KAFKA,
            consumer_group=group,
            auto_offset_reset="earliest",
            state_dir=state_dir,
            rocksdb_options=rocksdb_options(settings),
            commit_interval=parse_duration_ms(args.commit_interval) / 1000,
            processing_guarantee="at-least-once",
            loglevel=None,
        )
        topic = app.topic(
            args.topic,
            key_deserializer="str",
            value_deserializer=TickDeserializer(),
            timestamp_extractor=tick_event_time,
        )

        def step(tick: dict[str, Any], state: Any) -> dict[str, Any]:
            last = state.get("s") or {"n": 0}
            state.set("s", {"n": last["n"] + 1, "price": tick["price"], "t": tick["event_time"]})
            return tick

        app.dataframe(topic).apply(step, stateful=True).sink(NullSink())
        measured, _ = run_until_committed(app, group, args.topic, "none")
        return measured
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------


def worker_argv(args: argparse.Namespace, kind: str, topic: str, tag: str, run_id: str) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--topic",
        topic,
        "--tag",
        tag,
        "--run-id",
        run_id,
        "--ticks",
        str(args.ticks),
        "--coins",
        str(args.coins),
        "--partitions",
        str(args.partitions),
        "--commit-interval",
        args.commit_interval,
        "--profile",
        args.profile,
        "--sink",
        args.sink,
    ]


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    if args.worker:
        workers = {"processor": work_processor, "baseline": work_baseline, "floor": work_floor}
        common.emit_result(workers[args.worker](args))
        return 0
    command = common.header(
        f"processor throughput: {args.ticks:,} ticks of {args.coins:,} coins already in Kafka", SCRIPT, parser, args
    )
    common.check_services()
    code = common.processor_code(args.code)
    env = {"PYTHONPATH": str(code)} if code != common.ROOT else {}
    tag = common.unique("bench_proc")
    topic = f"{tag}.ticks"
    log_path = common.log_file(tag)
    try:
        common.fill_backlog(topic, args)
        subject = common.Figure("processor", "ticks/s")
        baseline = common.Figure("bare consumer + json.loads", "ticks/s")
        floor = common.Figure("Quix floor (deserializer + one stateful step + null sink)", "ticks/s")
        runs: list[dict[str, Any]] = []

        def run(kind: str, figure: common.Figure, i: int) -> None:
            with log_path.open("a") as log:
                log.write(f"--- {kind} run {i}\n")
                log.flush()
                result = common.run_worker(worker_argv(args, kind, topic, tag, str(i)), stderr=log, env=env)
            result["kind"] = kind
            runs.append(result)
            figure.values.append(result["ticks_per_s"])
            extra = ""
            if kind == "processor":
                extra = (
                    f", {result['points_written']:,} points written ({result['points_per_s']:,.0f}/s), "
                    f"{result['alerts']:,} alerts, "
                    f"build {result['build_s']:.1f}s"
                )
            extra += f"; {result['cpu_s'] / result['ticks'] * 1e6:.0f} us CPU per tick; "
            extra += common.cpu_note(result["cpu_s"], result["service_cpu_s"], result["seconds"])
            print(
                f"  run {i + 1} {kind}: {result['ticks']:,} ticks in {result['seconds']:.1f}s = "
                f"{result['ticks_per_s']:,.0f} ticks/s (first message after {result['startup_s']:.1f}s, "
                f"{result['steady_ticks_per_s']:,.0f} ticks/s from there; peak RSS {result['peak_rss_mb']:.0f} MB"
                f"{extra})",
                flush=True,
            )

        def baselines(i: int) -> None:
            run("baseline", baseline, i)
            run("floor", floor, i)

        common.interleaved(args.runs, baselines, lambda i: run("processor", subject, i))
        comparison = common.compare(subject, baseline)
        # Issue 10's target: the processor with its real InfluxDB sink at >= 0.4x the Quix floor.
        against_floor = common.compare(subject, floor)
        if args.sink != "influx":
            print(f"(--sink {args.sink}: not issue 10's figure, which is the processor with its real InfluxDB sink)")
        print(f"reproduce: {command}")
        label = "" if code == common.ROOT else f"-{code.name}"
        label += "" if args.sink == "influx" else f"-{args.sink}-sink"
        common.save_results(
            f"processor_throughput-{args.ticks}{label}" + ("" if args.profile == "none" else f"-{args.profile}"),
            command,
            {
                "args": {k: v for k, v in vars(args).items() if k not in ("worker", "topic", "tag", "run_id")},
                "runs": runs,
                **comparison,
                "floor": floor.as_dict(),
                "ratio_to_floor": against_floor["ratio"],
            },
        )
    finally:
        common.delete_topics(tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
