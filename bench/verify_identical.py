"""Proof that the performance work changed no output: old and new processor, same feed, same bytes.

The performance changes in processor/ (see docs/performance.md) must not change what the processor
writes. This runs the real pipeline (``processor.app.build_pipeline``, real Kafka, real InfluxDB)
three times over one feed with late ticks (some beyond the grace period), repeated event times and
scripted moves:

  A. the processor code in ``--before`` (e.g. the commit before the work) over the whole feed;
  B. this checkout's code over the whole feed;
  C. an upgrade: the old code over the first half of the feed, then this checkout's code carrying
     on with the same consumer group and state folder over the second half (it reads the state
     the old code wrote, in the old layout).

and asserts that every point in InfluxDB (price, change, candle, alert: all fields and tags) and
every alert on the alerts topic (the JSON, in order) is the same in A, B and C.

  git archive a2e6a8e processor | tar -x -C .cache/bench/before   # the code before the work
  .venv/bin/python bench/verify_identical.py --before .cache/bench/before
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import processor_throughput
import requests

from crypto_watcher.messages import Tick

SCRIPT = "verify_identical.py"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default=".cache/bench/before", help="folder holding the old processor/ package")
    p.add_argument("--coins", type=int, default=40, help="coins in the feed (default 40)")
    p.add_argument("--minutes", type=int, default=360, help="minutes of ticks per coin (default 360)")
    p.add_argument(
        "--windows",
        default="5m,15m,1h",
        help="the processor's CW_WINDOWS in every run (default 5m,15m,1h: the windows both versions have; "
        "the 4h and 24h windows are new, so they and their alerts differ on purpose)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--group", help=argparse.SUPPRESS)
    p.add_argument("--state-dir", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--alerts-topic", help=argparse.SUPPRESS)
    return p


def feed(coins: int, minutes: int) -> list[Tick]:
    """The benchmark market at 20-40 s gaps in arrival order: 15 % of ticks late by up to 100 s
    (the grace period is 60 s, so some are too late to be windowed), plus 1 % repeated event times."""
    rng = random.Random(5)
    ticks = list(common.market_ticks(coins, coins * minutes * 2, step_ms=30_000, move_every=180))
    ticks = [t.model_copy(update={"event_time": t.event_time + rng.randrange(-10_000, 10_000)}) for t in ticks]
    arrival = sorted(ticks, key=lambda t: t.event_time + (rng.randrange(1, 100_000) if rng.random() < 0.15 else 0))
    repeats = [t.model_copy(update={"price": round(t.price * 1.002, 8)}) for t in rng.sample(ticks, len(ticks) // 100)]
    for t in repeats:
        arrival.insert(rng.randrange(len(arrival)), t)
    return arrival


def work(args: argparse.Namespace) -> dict[str, Any]:
    """Process the topic up to its current end with the processor code on PYTHONPATH."""
    import processor
    from crypto_watcher.config import ProcessorSettings, load_settings
    from crypto_watcher.logs import setup_logging
    from processor.app import build_pipeline

    setup_logging("WARNING", "processor", "json")
    ends = common.topic_end_offsets(args.topic)
    settings = load_settings(
        ProcessorSettings,
        {
            "kafka_bootstrap": common.KAFKA,
            "ticks_topic": args.topic,
            "alerts_topic": args.alerts_topic,
            "dlq_topic": f"{args.alerts_topic}.dlq",
            "consumer_group": args.group,
            "state_dir": args.state_dir,
            "influx_url": common.INFLUX,
            "influx_db": args.db,
            "commit_interval": 1000,
            "http_port": -1,
            "windows": args.windows,
        },
    )
    pipeline = build_pipeline(settings)
    watcher = processor_throughput.CommitWatcher(args.group, args.topic, ends, pipeline.app.stop, limit_s=180)
    watcher.start()
    pipeline.app.run(timeout=0, collect=False)
    watcher.join(30)
    if watcher.done_at is None:
        raise common.Disturbed("the processor did not commit every tick")
    return {"processor_code": common.repo_path(Path(processor.__file__).parent), "points": pipeline.sink.points_written}


def run(
    code: Path, topic: str, group: str, state_dir: str, db: str, alerts: str, log: Any, windows: str
) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", "--topic", topic, "--group", group]
    argv += ["--windows", windows]
    argv += ["--state-dir", state_dir, "--db", db, "--alerts-topic", alerts]
    env = {"PYTHONPATH": str(code)} if code != common.ROOT else {}
    return common.run_worker(argv, stderr=log, env=env, timeout_s=1800)


def everything_in(db: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for measurement in ("price", "change", "candle", "alert"):
        response = requests.post(
            f"{common.INFLUX}/query",
            params={"db": db, "q": f"SELECT * FROM {measurement} GROUP BY *", "epoch": "ms"},
            timeout=120,
        )
        response.raise_for_status()
        rows = []
        for series in response.json()["results"][0].get("series", []):
            rows += [(sorted(series["tags"].items()), values) for values in series["values"]]
        out[measurement] = sorted(rows, key=repr)
    return out


def alerts_in(topic: str) -> list[bytes]:
    from confluent_kafka import Consumer, TopicPartition

    ends = common.topic_end_offsets(topic)
    consumer = Consumer({"bootstrap.servers": common.KAFKA, "group.id": common.unique("verify")})
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < sum(ends.values()) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    return got


def per_pair(alerts: list[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for value in alerts:
        alert = json.loads(value)
        out.setdefault(f"{alert['coin']}:{alert['vs']}", []).append(value)
    return out


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    if args.worker:
        common.emit_result(work(args))
        return 0
    command = common.header("old vs new processor: identical output", SCRIPT, parser, args)
    common.check_services()
    before = (common.ROOT / args.before).resolve()
    if not (before / "processor" / "app.py").is_file():
        raise SystemExit(f"--before {args.before}: no processor/app.py (see this script's --help)")
    tag = common.unique("bench_verify")
    ticks = feed(args.coins, args.minutes)
    half = len(ticks) // 2
    records = list(common.tick_records(ticks))
    log_path = common.ROOT / ".cache" / "bench" / f"{tag}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    dbs = {name: common.unique(f"bench_verify_{name}") for name in "ABC"}
    work_dir = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        full, upgrade = f"{tag}.ticks", f"{tag}.upgrade.ticks"
        common.create_topic(full, 3)
        common.create_topic(upgrade, 3)
        common.fill_topic(full, records)
        common.fill_topic(upgrade, records[:half])
        print(f"feed: {len(ticks):,} ticks of {args.coins} coins ({half:,} before the upgrade)", flush=True)
        with log_path.open("a") as log:
            a = run(before, full, f"{tag}-A", str(work_dir / "A"), dbs["A"], f"{tag}.A.alerts", log, args.windows)
            b = run(common.ROOT, full, f"{tag}-B", str(work_dir / "B"), dbs["B"], f"{tag}.B.alerts", log, args.windows)
            c1 = run(before, upgrade, f"{tag}-C", str(work_dir / "C"), dbs["C"], f"{tag}.C.alerts", log, args.windows)
            common.fill_topic(upgrade, records[half:])
            c2 = run(
                common.ROOT, upgrade, f"{tag}-C", str(work_dir / "C"), dbs["C"], f"{tag}.C.alerts", log, args.windows
            )
        for name, r in (("A", a), ("B", b), ("C first half", c1), ("C second half", c2)):
            print(f"  {name}: {r['points']:,} points written by {r['processor_code']}")
        points = {name: everything_in(db) for name, db in dbs.items()}
        alerts = {name: alerts_in(f"{tag}.{name}.alerts") for name in "ABC"}
        ok = True
        for name in "BC":
            for measurement, rows in points["A"].items():
                same = rows == points[name][measurement]
                ok &= same
                print(
                    f"  {measurement}: A {len(rows):,} points, {name} {len(points[name][measurement]):,}: "
                    f"{'identical' if same else 'DIFFERENT'}"
                )
            # Alerts of one pair keep their order (the contract); across pairs the order depends on
            # how the consumer interleaved the ticks topic's partitions, which a restart changes.
            same = per_pair(alerts["A"]) == per_pair(alerts[name])
            ok &= same
            verdict = "identical" if same else "DIFFERENT"
            print(
                f"  alerts topic (each pair's, in order): A {len(alerts['A'])}, {name} {len(alerts[name])}: {verdict}"
            )
        print(f"reproduce: {command}")
        print("RESULT: identical" if ok else "RESULT: DIFFERENT")
        return 0 if ok else 1
    finally:
        for db in dbs.values():
            common.influx_drop(db)
        shutil.rmtree(work_dir, ignore_errors=True)
        common.delete_topics(tag)


if __name__ == "__main__":
    raise SystemExit(main())
