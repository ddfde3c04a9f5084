"""End-to-end alert latency: tick produced -> alert on the alerts topic, p50/p99, at a steady rate.

A paced producer (``producer.publisher.TickPublisher``, the producer's own Kafka settings) sends
``--rate`` ticks/s of ``--coins`` coins (each coin once every coins/rate seconds, event time =
wall time, prices flat) into a fresh ticks topic. Scripted ticks make alerts: a known set of
coins falls 8 % in one tick (a ``drop`` alert) and a few seconds later comes back (a ``spike``
alert), so ``--alert-fraction`` of the measured ticks each trigger exactly one alert. The latency
of one alert is the wall time from just before ``publish()`` of its trigger tick to the moment a
consumer in this process receives the alert (both clocks are this process's).

- subject: the real processor, ``crypto-processor run`` as a separate process (InfluxDB sink into a
  fresh database, checkpoint every ``--commit-interval``);
- baseline: the same two Kafka hops with no processing to speak of: a bare confluent-kafka consumer
  (``poll()`` per message, ``json.loads``) that produces an alert-shaped message whenever a price
  moved 5 % from that coin's previous tick (bare producer, librdkafka defaults, like Quix's).

Each run starts its service, produces warm-up ticks until a probe alert came through (the service
is assigned and caught up) and ``--warmup`` seconds passed, then measures for ``--duration``
seconds, then keeps the load on until every expected alert arrived (or ``--drain`` seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
from confluent_kafka import Consumer, Producer, TopicPartition

from crypto_watcher.messages import Tick
from producer.publisher import TickPublisher

SCRIPT = "latency.py"
PROBE_DIR = Path(__file__).resolve().parent / "checkpoint_probe"
DROP = 0.92  # an 8 % fall: over the 5 % threshold, under the 10 % of "critical"
PROBE = "probe"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=1000.0, help="ticks per second (default 1000)")
    p.add_argument("--coins", type=int, default=1000, help="distinct coins (default 1000)")
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds per run (default 60)")
    p.add_argument("--warmup", type=float, default=20.0, help="least seconds of load before measuring (default 20)")
    p.add_argument("--drain", type=float, default=30.0, help="most seconds to wait for the last alerts (default 30)")
    p.add_argument(
        "--alert-fraction",
        type=float,
        default=0.01,
        help="fraction of the measured ticks that trigger an alert (default 0.01: 10 alerts/s at 1000 ticks/s)",
    )
    common.add_commit_interval_arg(p)
    p.add_argument(
        "--code",
        default=".",
        help="folder whose processor/ package is measured (default: this checkout; e.g. the code before a change "
        "after `git archive <commit> processor | tar -x -C .cache/bench/before`)",
    )
    p.add_argument(
        "--probe-checkpoints",
        action="store_true",
        help="time and profile every checkpoint commit of the processor (bench/checkpoint_probe) and print "
        "where the commits' time went",
    )
    common.add_runs_arg(p)
    p.add_argument("--worker", choices=["echo"], help=argparse.SUPPRESS)
    p.add_argument("--ticks-topic", help=argparse.SUPPRESS)
    p.add_argument("--alerts-topic", help=argparse.SUPPRESS)
    p.add_argument("--group", help=argparse.SUPPRESS)
    return p


# ---------------------------------------------------------------------------------------------
# The baseline service: consume, decode, a one-line rule, produce
# ---------------------------------------------------------------------------------------------


def work_echo(args: argparse.Namespace) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer = Consumer({"bootstrap.servers": common.KAFKA, "group.id": args.group, "auto.offset.reset": "earliest"})
    producer = Producer({"bootstrap.servers": common.KAFKA})
    consumer.subscribe([args.ticks_topic])
    last: dict[str, float] = {}
    while not stop.is_set():
        msg = consumer.poll(0.1)
        producer.poll(0)
        if msg is None or msg.error() is not None:
            continue
        tick = json.loads(msg.value())
        key = msg.key()
        price = tick["price"]
        before = last.get(key)
        last[key] = price
        if before is not None and abs(price / before - 1) >= 0.05:
            alert = {"coin": tick["coin"], "vs": tick["vs"], "event_time": tick["event_time"], "price": price}
            producer.produce(args.alerts_topic, key=key, value=json.dumps(alert).encode())
    producer.flush(10)
    consumer.close()


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------


@dataclass
class Arrivals:
    """Alerts as they arrive: (coin, event_time) -> perf_counter at arrival."""

    at: dict[tuple[str, int], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    kinds: dict[str, int] = field(default_factory=dict)

    def add(self, coin: str, event_time: int, when: float, kind: str) -> None:
        with self.lock:
            self.at.setdefault((coin, event_time), when)
            self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def get(self, key: tuple[str, int]) -> float | None:
        with self.lock:
            return self.at.get(key)


def listen(topic: str, arrivals: Arrivals, stop: threading.Event) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": common.KAFKA,
            "group.id": common.unique("bench-latency-listener"),
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        while not stop.is_set():
            msg = consumer.poll(0.05)
            if msg is None or msg.error() is not None:
                continue
            when = time.perf_counter()
            alert = json.loads(msg.value())
            arrivals.add(alert["coin"], int(alert["event_time"]), when, alert.get("kind", "echo"))
    finally:
        consumer.close()


def start_service(
    kind: str, args: argparse.Namespace, tag: str, topics: dict[str, str], log: Any
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    group = f"{tag}-{kind}"
    if kind == "echo":
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker", "echo"]
        argv += ["--ticks-topic", topics["ticks"], "--alerts-topic", topics["alerts"], "--group", group]
        return subprocess.Popen(argv, cwd=common.ROOT, stdout=log, stderr=log), {}
    db = common.unique("bench_latency")
    state_dir = tempfile.mkdtemp(prefix="bench-latency-state-")
    code = common.processor_code(args.code)
    command = Path(sys.executable).parent / "crypto-processor"
    argv = [str(command)] if command.exists() and code == common.ROOT else [sys.executable, "-m", "processor"]
    argv += ["run", "--bootstrap", common.KAFKA, "--group", group, "--ticks-topic", topics["ticks"]]
    argv += ["--alerts-topic", topics["alerts"], "--influx-url", common.INFLUX, "--influx-db", db]
    argv += ["--state-dir", state_dir, "--http-port", "-1"]
    env = {
        **os.environ,
        "CW_COMMIT_INTERVAL": args.commit_interval,
        "CW_DLQ_TOPIC": topics["dlq"],
        "CW_TICKS_PARTITIONS": "3",
        "CW_LOG_FORMAT": "json",
    }
    paths = [str(code)] if code != common.ROOT else []
    extra = {"db": db, "state_dir": state_dir}
    if args.probe_checkpoints:
        paths.insert(0, str(PROBE_DIR))
        extra["probe"] = env["CW_BENCH_PROBE_OUT"] = str(common.LOGS / f"{tag}-checkpoints.json")
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    proc = subprocess.Popen(argv, cwd=common.ROOT, stdout=log, stderr=log, env=env)
    return proc, extra


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Feed:
    """Paced ticks: coin i of ``coins`` every coins/rate seconds, flat prices unless scripted."""

    def __init__(self, coins: int, rate: float, publisher: TickPublisher) -> None:
        self.ids = common.coin_ids(coins)
        self.base = [round(10 ** (1 + (i % 40) / 10), 4) for i in range(coins)]
        self.level = [1.0] * coins
        self.rate = rate
        self.publisher = publisher
        self.sent = 0
        self.turn = 0
        self.last_ms: dict[str, int] = {}
        self.start = time.perf_counter()

    def _event_time(self, coin: str) -> int:
        now = int(time.time() * 1000)
        event_time = max(now, self.last_ms.get(coin, 0) + 1)
        self.last_ms[coin] = event_time
        return event_time

    def publish(self, coin: str, price: float) -> tuple[int, float]:
        tick = Tick(coin=coin, vs="usd", price=price, source="test", event_time=self._event_time(coin))
        sent_at = time.perf_counter()
        self.publisher.publish(tick)
        self.sent += 1
        return tick.event_time, sent_at

    def wait_turn(self) -> None:
        """Sleep until the next tick is due (the schedule never drifts: it is start + n / rate)."""
        due = self.start + self.sent / self.rate
        while True:
            now = time.perf_counter()
            if now >= due:
                return
            self.publisher.poll(0)
            time.sleep(min(due - now, 0.002))

    def next_coin(self) -> int:
        """Round robin over the coins (the probe coin does not take a turn)."""
        coin = self.turn % len(self.ids)
        self.turn += 1
        return coin


def schedule(coins: int, rounds: int, alerts: int) -> dict[tuple[int, int], float]:
    """(coin index, round) -> new price level, for ``alerts`` scripted alerts: half the moving coins'
    drops, half their recoveries 3 rounds later, spread over the measured rounds."""
    moving = max(1, min(coins, alerts // 2))
    span = max(1, rounds - 5)
    plan: dict[tuple[int, int], float] = {}
    for m in range(moving):
        coin = m * coins // moving
        drop_round = 1 + (m * span) // moving
        plan[(coin, drop_round)] = DROP
        plan[(coin, drop_round + 3)] = 1.0
    return plan


def run_once(kind: str, args: argparse.Namespace, i: int) -> dict[str, Any]:
    tag = common.unique(f"bench_latency_{kind}")
    topics = {"ticks": f"{tag}.ticks", "alerts": f"{tag}.alerts", "dlq": f"{tag}.dlq"}
    common.create_topic(topics["ticks"], 3)
    common.create_topic(topics["alerts"], 1)
    log_path = common.log_file(tag, None)
    arrivals = Arrivals()
    stop = threading.Event()
    listener = threading.Thread(target=listen, args=(topics["alerts"], arrivals, stop), daemon=True)
    listener.start()
    with log_path.open("wb") as log:
        proc, extra = start_service(kind, args, tag, topics, log)
    publisher = TickPublisher(common.KAFKA, topics["ticks"])
    feed = Feed(args.coins, args.rate, publisher)
    try:
        # Warm-up: flat prices, plus a probe coin that drops once; its alert proves the service is
        # assigned, running and caught up with the backlog its start-up left.
        probe_key: tuple[str, int] | None = None
        probe_base = 100.0
        last_probe = -1.0
        while True:
            feed.wait_turn()
            elapsed = time.perf_counter() - feed.start
            if probe_key is None and elapsed - last_probe >= 1.0:  # once a second; drops after 2 s
                last_probe = elapsed
                if elapsed > 2:
                    event_time, _ = feed.publish(PROBE, probe_base * DROP)
                    probe_key = (PROBE, event_time)
                else:
                    feed.publish(PROBE, probe_base)
                continue
            c = feed.next_coin()
            feed.publish(feed.ids[c], feed.base[c])
            if probe_key is not None and arrivals.get(probe_key) is not None and elapsed >= args.warmup:
                break
            if elapsed > args.warmup + 180:
                raise RuntimeError(f"{kind}: no probe alert after {elapsed:.0f}s (see {log_path})")
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited with {proc.returncode} (see {log_path})")
        warmup_s = time.perf_counter() - feed.start
        # Measured phase: rounds of every coin, some ticks scripted.
        rounds = max(6, round(args.duration * args.rate / args.coins))
        expected_alerts = round(args.alert_fraction * rounds * args.coins)
        plan = schedule(args.coins, rounds, expected_alerts)
        triggers: dict[tuple[str, int], float] = {}
        while feed.turn % args.coins:  # finish the current round with flat prices
            feed.wait_turn()
            c = feed.next_coin()
            feed.publish(feed.ids[c], feed.base[c])
        measured_from = time.perf_counter()
        measured_ticks = rounds * args.coins
        for n in range(measured_ticks):
            feed.wait_turn()
            c, r = feed.next_coin(), n // args.coins
            level = plan.get((c, r))
            if level is not None:
                feed.level[c] = level
            event_time, sent_at = feed.publish(feed.ids[c], round(feed.base[c] * feed.level[c], 6))
            if level is not None:
                triggers[(feed.ids[c], event_time)] = sent_at
        measured_s = time.perf_counter() - measured_from
        # Drain: same load, flat prices, until every scripted alert arrived.
        drain_from = time.perf_counter()
        while time.perf_counter() - drain_from < args.drain:
            if all(arrivals.get(k) is not None for k in triggers):
                break
            feed.wait_turn()
            c = feed.next_coin()
            feed.publish(feed.ids[c], round(feed.base[c] * feed.level[c], 6))
        publisher.flush(30)
    finally:
        stop_service(proc)
        stop.set()
        listener.join(10)
        if "db" in extra:
            common.influx_drop(extra["db"])
            shutil.rmtree(extra["state_dir"], ignore_errors=True)
        common.delete_topics(tag)
    probe = checkpoint_figures(Path(extra["probe"])) if "probe" in extra else None
    latencies = []
    missing = 0
    for key, sent_at in triggers.items():
        arrived = arrivals.get(key)
        if arrived is None:
            missing += 1
        else:
            latencies.append((arrived - sent_at) * 1000)
    unexpected = len(arrivals.at) - len(latencies) - (1 if probe_key and arrivals.get(probe_key) else 0)
    return {
        "kind": kind,
        "latencies_ms": latencies,
        "p50_ms": common.percentile(latencies, 50),
        "p99_ms": common.percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else float("nan"),
        "triggers": len(triggers),
        "missing": missing,
        "unexpected": unexpected,
        "alert_kinds": arrivals.kinds,
        "measured_ticks": measured_ticks,
        "achieved_rate": measured_ticks / measured_s,
        "warmup_s": warmup_s,
        "log": str(log_path.relative_to(common.ROOT)),
        **({"checkpoints": probe} if probe else {}),
    }


# Where a checkpoint's time goes: the functions of each step of quixstreams 3.28's Checkpoint.commit
# (file suffix, name); InfluxSink inherits BatchingSink's flush.
COMMIT_STEPS = {
    "sink flush (InfluxDB writes)": [("quixstreams/sinks/base/sink.py", "flush")],
    "state changelogs (produce)": [("quixstreams/state/base/transaction.py", "prepare")],
    "producer flush": [("quixstreams/internal_producer.py", "flush")],
    "consumer offset commit": [("quixstreams/kafka/consumer.py", "commit")],
    "state write (RocksDB)": [("quixstreams/state/base/transaction.py", "flush")],
}


def checkpoint_figures(path: Path) -> dict[str, Any] | None:
    """What bench/checkpoint_probe recorded, printed and returned (None if the processor wrote nothing)."""
    if not path.is_file():
        print(f"    checkpoint probe: no record at {common.repo_path(path)} (did the processor exit cleanly?)")
        return None
    record = json.loads(path.read_text())
    took = [ms for _at, ms in record["commits"]]
    stats = pstats.Stats(str(path) + ".pstats").stats  # type: ignore[attr-defined]
    steps = {
        step: sum(
            v[3] for (file, _line, func), v in stats.items() if any(file.endswith(f) and func == n for f, n in where)
        )
        for step, where in COMMIT_STEPS.items()
    }
    total = sum(took) / 1000
    figures = {
        "commits": len(took),
        "median_ms": common.percentile(took, 50),
        "p99_ms": common.percentile(took, 99),
        "max_ms": max(took, default=float("nan")),
        "over_100ms": sum(1 for ms in took if ms > 100),
        "share_s": {step: round(s, 3) for step, s in steps.items()},
        "slow_gcs": record["collections"],
    }
    print(
        f"    checkpoints: {len(took)}, median {figures['median_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms, "
        f"max {figures['max_ms']:.0f} ms, {figures['over_100ms']} over 100 ms; of their {total:.1f}s (profiled): "
        + ", ".join(f"{step} {s:.1f}s" for step, s in steps.items())
        + f"; garbage collections over 5 ms: {len(record['collections'])}"
    )
    return figures


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    code = common.processor_code(args.code)
    if args.worker == "echo":
        work_echo(args)
        return 0
    command = common.header(
        f"alert latency at {args.rate:,.0f} ticks/s of {args.coins:,} coins, processor checkpoint every "
        f"{args.commit_interval}",
        SCRIPT,
        parser,
        args,
    )
    common.check_services()
    figures = {
        ("processor", "p50"): common.Figure("processor p50", "ms", higher_is_better=False),
        ("processor", "p99"): common.Figure("processor p99", "ms", higher_is_better=False),
        ("echo", "p50"): common.Figure("bare consume-produce p50", "ms", higher_is_better=False),
        ("echo", "p99"): common.Figure("bare consume-produce p99", "ms", higher_is_better=False),
    }
    runs: list[dict[str, Any]] = []

    def run(kind: str, i: int) -> None:
        result = run_once(kind, args, i)
        runs.append(result)
        figures[(kind, "p50")].values.append(result["p50_ms"])
        figures[(kind, "p99")].values.append(result["p99_ms"])
        print(
            f"  run {i + 1} {kind}: {len(result['latencies_ms'])} alerts of {result['triggers']} scripted "
            f"({result['missing']} missing, {result['unexpected']} unscripted), at {result['achieved_rate']:,.0f} "
            f"ticks/s after {result['warmup_s']:.0f}s warm-up: p50 {result['p50_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms",
            flush=True,
        )

    common.interleaved(args.runs, lambda i: run("echo", i), lambda i: run("processor", i))
    p50 = common.compare(figures[("processor", "p50")], figures[("echo", "p50")])
    p99 = common.compare(figures[("processor", "p99")], figures[("echo", "p99")])
    pooled = {kind: [v for r in runs if r["kind"] == kind for v in r["latencies_ms"]] for kind in ("processor", "echo")}
    for kind, values in pooled.items():
        print(
            f"  all {kind} alerts pooled ({len(values)}): p50 {common.percentile(values, 50):.1f} ms, "
            f"p99 {common.percentile(values, 99):.1f} ms"
        )
    print(f"reproduce: {command}")
    common.save_results(
        f"latency-{args.commit_interval}" + ("" if code == common.ROOT else f"-{code.name}"),
        command,
        {"args": vars(args), "runs": runs, "p50": p50, "p99": p99},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
