"""Does the processor's memory stay flat under a steady live feed? A soak at 10,000 coins (issue 10).

``bench/memory.py`` gives the peak of a processor working through a backlog at full speed; it
cannot show a slow leak, which is what a service that runs for weeks dies of: state that is never
expired (a coin's cooldowns, old candles, a window's ticks), a cache that only grows, allocator
fragmentation. This runs the processor as deployed (``crypto-processor run``, settings from the
environment, its default windows, rules and RocksDB sizes) against a live feed for ``--minutes``
and samples its resident memory (``VmRSS`` in ``/proc/<pid>/status``) every ``--sample-every``
seconds.

The feed is published by this script with confluent-kafka: every coin is quoted once every
``--cadence`` seconds (CoinGecko's free tier refreshes every 60 s, paid plans every 20-30 s),
each coin at its own fixed phase within the round, as a producer that splits the coin list over
several rate-limited calls does. The event time is the wall time of publication, so windows,
candles and cooldowns open and expire exactly as in production. Prices random-walk (0.1 % per
quote) and, once every ``--move-every`` quotes (staggered over the coins), a coin falls or rises
8 % over five quotes, so the alert path and its cooldown state are exercised too.

Flat memory only means something if the processor did its work: every sample also records the
ticks the processor has processed (its ``cw_processor_ticks_total``, from its metrics endpoint),
the ticks published, their difference (the backlog), the committed consumer lag it reports
(``cw_processor_consumer_lag``) and how old the newest processed event is. The verdict is
"flat" only if the processor also kept up: its backlog after the warm-up never exceeded one
round of quotes (``--coins`` ticks).

The figures: the first ``--warmup`` minutes are excluded (imports, the consumer's first fetches,
RocksDB's memtables and block cache filling). Of the rest, the mean RSS of the first ``--span``
minutes is compared with the mean of the last ``--span`` minutes: growth = (last - first) / first.
Flat means growth <= ``--limit-pct``. Note that each pair's state keeps the ticks of its longest
window plus the grace period (1 h + 1 m by default): that buffer fills for the first 61 minutes,
so growth measured inside that time includes it (legitimate, bounded growth, not a leak); a
``--minutes`` beyond the longest window shows the steady state. The end also prints the RSS curve
in 5-minute steps. Every sample is written to ``bench/results/soak-<coins>.json``.

Everything is private to the run (topics, consumer group, InfluxDB database, state folder) and
removed at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import common
import memory
import requests
from confluent_kafka import Producer

from crypto_watcher.messages import Tick

SCRIPT = "soak.py"
BIN = Path(sys.executable).parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coins", type=int, default=10_000, help="coins in the feed (default 10000)")
    p.add_argument("--minutes", type=float, default=60, help="length of the soak in minutes (default 60)")
    p.add_argument("--cadence", type=float, default=30, help="seconds between two quotes of one coin (default 30)")
    p.add_argument("--warmup", type=float, default=10, help="minutes at the start left out of the figures (default 10)")
    p.add_argument(
        "--span",
        type=float,
        default=10,
        help="minutes averaged at each end of the measured part, first vs last (default 10)",
    )
    p.add_argument("--sample-every", type=float, default=10, help="seconds between RSS samples (default 10)")
    p.add_argument("--limit-pct", type=float, default=5.0, help="largest growth called flat, in percent (default 5)")
    p.add_argument(
        "--move-every",
        type=int,
        default=240,
        help="quotes between two 8%% moves of a coin, staggered over the coins; 0: random walk only (default 240)",
    )
    p.add_argument("--partitions", type=int, default=3, help="partitions of the ticks topic (default 3)")
    p.add_argument("--seed", type=int, default=7, help="seed of the feed's prices (default 7)")
    memory.add_state_args(p)
    return p


# ---------------------------------------------------------------------------------------------
# The feed
# ---------------------------------------------------------------------------------------------


class Feed(threading.Thread):
    """Publishes a quote of every coin every ``cadence`` seconds, each coin at a fixed phase."""

    def __init__(self, topic: str, coins: int, cadence_s: float, move_every: int, seed: int) -> None:
        super().__init__(name="feed", daemon=True)
        self.topic = topic
        self.cadence_s = cadence_s
        self.move_every = move_every
        rng = random.Random(seed)
        self.rng = rng
        self.ids = common.coin_ids(coins)
        self.phases = sorted((rng.uniform(0, cadence_s), i) for i in range(coins))
        self.prices = [10 ** rng.uniform(-2, 4) for _ in range(coins)]
        self.sent = 0  # handed to the client
        self.published = 0  # delivered (acknowledged by the broker)
        self.failed = 0
        self.late_s = 0.0  # the most a quote was published behind its schedule
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.producer = Producer(
            {
                "bootstrap.servers": common.KAFKA,
                "log_level": 4,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 20,
                "compression.type": "lz4",
            }
        )

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.published += 1
        else:
            self.failed += 1

    def _tick(self, i: int, step: int, now_ms: int) -> Tick:
        drift = 0.0
        if self.move_every:
            phase = (step + i * 7) % self.move_every
            if phase < 5:
                drift = -0.017 if (step // self.move_every + i) % 2 == 0 else 0.017
        self.prices[i] *= 1 + drift + self.rng.gauss(0, 0.001)
        price = round(self.prices[i], 8)
        return Tick(
            coin=self.ids[i],
            symbol=self.ids[i][-4:],
            vs="usd",
            price=price,
            market_cap=round(price * 19_000_000, 2),
            volume_24h=round(price * 350_000, 2),
            change_24h_pct=round(self.rng.gauss(0, 3), 4),
            source="coingecko",
            event_time=now_ms,
            fetch_time=now_ms,
        )

    def run(self) -> None:
        try:
            start = time.time()
            step = 0
            while not self.stopping.is_set():
                round_start = start + step * self.cadence_s
                for phase, i in self.phases:
                    due = round_start + phase
                    wait = due - time.time()
                    if wait > 0.005:
                        self.producer.poll(0)
                        if self.stopping.wait(wait):
                            return
                    else:
                        self.late_s = max(self.late_s, -wait)
                    now_ms = int(time.time() * 1000)
                    tick = self._tick(i, step, now_ms)
                    while True:
                        try:
                            self.producer.produce(
                                self.topic, key=tick.key.encode(), value=tick.to_json(), on_delivery=self._delivered
                            )
                            break
                        except BufferError:
                            self.producer.poll(0.05)
                    self.sent += 1
                    if self.sent % 100 == 0:
                        self.producer.poll(0)
                step += 1
        except BaseException as exc:  # reported by the sampler: a dead feed must not look like a flat processor
            self.error = exc
        finally:
            self.producer.flush(30)


# ---------------------------------------------------------------------------------------------
# The processor
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> dict[str, float]:
    """The processor's counters and gauges this soak follows, summed over their labels."""
    wanted = {
        "cw_processor_ticks_total": "processed",
        "cw_processor_alerts_total": "alerts",
        "cw_processor_sink_points_total": "points",
        "cw_processor_sink_errors_total": "sink_errors",
        "cw_processor_dlq_total": "dlq",
        "cw_processor_consumer_lag": "committed_lag",
        "cw_processor_event_lag_seconds": "event_lag_s",
        "cw_processor_group_rejoins_total": "rejoins",
    }
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out = dict.fromkeys(wanted.values(), 0.0)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            out[wanted[name]] += float(line.rsplit(" ", 1)[1])
    return out


def status_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak so far) of a live process, in MB."""
    got = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            got[line.split(":")[0]] = int(line.split()[1]) / 1024
    return {"rss_mb": got["VmRSS"], "hwm_mb": got["VmHWM"]}


def start_processor(
    args: argparse.Namespace, tag: str, topics: dict[str, str], db: str, work: Path, port: int, log: Path
) -> subprocess.Popen[bytes]:
    processor = (
        [str(BIN / "crypto-processor")] if (BIN / "crypto-processor").exists() else [sys.executable, "-m", "processor"]
    )
    argv = [
        *processor,
        *("run", "--ticks-topic", topics["ticks"], "--alerts-topic", topics["alerts"]),
        *("--group", f"{tag}-processor", "--influx-url", common.INFLUX, "--influx-db", db),
        *("--state-dir", str(work / "state"), "--http-port", str(port)),
    ]
    env = {
        **os.environ,
        "CW_KAFKA_BOOTSTRAP": common.KAFKA,
        "CW_LOG_FORMAT": "json",
        "CW_LOG_LEVEL": "WARNING",
        "CW_DLQ_TOPIC": topics["dlq"],
        "CW_STATE_CACHE_MB": str(args.state_cache_mb),
        "CW_STATE_WRITE_BUFFER_MB": str(args.state_write_buffer_mb),
    }
    out = log.open("ab")
    out.write(f"--- processor: {' '.join(argv)}\n".encode())
    out.flush()
    return subprocess.Popen(argv, cwd=common.ROOT, stdout=out, stderr=out, env=env)


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the processor exited with {proc.returncode} during start-up (see {log})")
        try:
            scrape(port)
            return
        except requests.RequestException:
            time.sleep(0.5)
    raise RuntimeError(f"the processor's metrics endpoint did not answer within {timeout_s:.0f}s (see {log})")


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


# ---------------------------------------------------------------------------------------------
# The soak
# ---------------------------------------------------------------------------------------------


def soak(args: argparse.Namespace, proc: subprocess.Popen[bytes], port: int, feed: Feed) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    began = time.monotonic()
    end = began + args.minutes * 60
    next_sample = began
    next_report = began + 60
    while True:
        now = time.monotonic()
        if now >= end:
            break
        time.sleep(max(0.0, min(next_sample, end) - now))
        final = time.monotonic() >= end - 0.5  # one last sample at the end itself
        next_sample += args.sample_every
        if proc.poll() is not None:
            raise RuntimeError(f"the processor exited with {proc.returncode} during the soak")
        if feed.error is not None or not feed.is_alive():
            raise RuntimeError(f"the feed stopped: {feed.error!r}")
        try:
            metrics = scrape(port)
        except requests.RequestException as exc:
            print(f"  note: metrics endpoint did not answer ({exc}); sample without counters", flush=True)
            metrics = {}
        sent, published = feed.sent, feed.published  # read after the processor's count: backlog never under-stated
        sample = {
            "t_s": round(time.monotonic() - began, 1),
            "wall": time.strftime("%H:%M:%S", time.gmtime()),
            **status_mb(proc.pid),
            "cpu_s": round(common.cpu_seconds(proc.pid), 2),
            "sent": sent,
            "published": published,
            **metrics,
            "load_1m": round(os.getloadavg()[0], 2),
        }
        if "processed" in metrics:
            sample["backlog"] = int(sent - metrics["processed"])
        samples.append(sample)
        if time.monotonic() >= next_report - 0.5:
            next_report += 60
            report_minute(samples, args)
        if final:
            break
    return samples


def report_minute(samples: list[dict[str, Any]], args: argparse.Namespace) -> None:
    last = samples[-1]
    minute = [s["rss_mb"] for s in samples if s["t_s"] > last["t_s"] - 60]
    before = [s for s in samples if s["t_s"] <= last["t_s"] - 60]
    cpu = (
        (last["cpu_s"] - before[-1]["cpu_s"]) / (last["t_s"] - before[-1]["t_s"])
        if before
        else last["cpu_s"] / max(last["t_s"], 1)
    )
    print(
        f"  {last['t_s'] / 60:5.1f} min {last['wall']}: RSS {last['rss_mb']:.0f} MB "
        f"(minute mean {statistics.fmean(minute):.0f}, peak {last['hwm_mb']:.0f}); "
        f"sent {last['sent']:,}, processed {int(last.get('processed', 0)):,}, "
        f"backlog {last.get('backlog', '?')}, committed lag {int(last.get('committed_lag', 0)):,}, "
        f"event lag {last.get('event_lag_s', float('nan')):.1f}s; alerts {int(last.get('alerts', 0)):,}; "
        f"processor CPU {cpu:.2f} cores; load {last['load_1m']:.2f}",
        flush=True,
    )


def figures(samples: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    warm = args.warmup * 60
    measured = [s for s in samples if s["t_s"] >= warm]
    if not measured:
        raise RuntimeError("no sample after the warm-up")
    t_end = samples[-1]["t_s"]
    first = [s for s in measured if s["t_s"] < warm + args.span * 60]
    last = [s for s in measured if s["t_s"] > t_end - args.span * 60]
    first_mean = statistics.fmean(s["rss_mb"] for s in first)
    last_mean = statistics.fmean(s["rss_mb"] for s in last)
    growth = (last_mean - first_mean) / first_mean * 100
    backlogs = [s["backlog"] for s in measured if "backlog" in s]
    max_backlog = max(backlogs) if backlogs else None
    kept_up = max_backlog is not None and max_backlog <= args.coins
    processed = [s.get("processed", 0) for s in measured]
    still = sum(1 for a, b in itertools.pairwise(processed) if b <= a)
    if not kept_up:
        verdict = f"INVALID: the processor did not keep up (backlog up to {max_backlog} ticks > {args.coins:,})"
    elif growth <= args.limit_pct:
        verdict = f"FLAT: growth {growth:+.2f} % <= {args.limit_pct:g} %"
    else:
        verdict = f"GROWING: growth {growth:+.2f} % > {args.limit_pct:g} %"
    durations = [s["t_s"] for s in measured]
    return {
        "warmup_min": args.warmup,
        "span_min": args.span,
        "first_span": {
            "from_s": first[0]["t_s"],
            "to_s": first[-1]["t_s"],
            "samples": len(first),
            "rss_mean_mb": first_mean,
        },
        "last_span": {
            "from_s": last[0]["t_s"],
            "to_s": last[-1]["t_s"],
            "samples": len(last),
            "rss_mean_mb": last_mean,
        },
        "growth_pct": growth,
        "rss_min_mb": min(s["rss_mb"] for s in measured),
        "rss_max_mb": max(s["rss_mb"] for s in measured),
        "peak_rss_mb": samples[-1]["hwm_mb"],
        "max_backlog": max_backlog,
        "final_backlog": samples[-1].get("backlog"),
        "samples_without_progress": still,
        "kept_up": kept_up,
        "measured_s": durations[-1] - durations[0],
        "verdict": verdict,
    }


def curve(samples: list[dict[str, Any]], step_s: float) -> list[dict[str, Any]]:
    """The samples in ``step_s`` buckets: mean and max RSS, largest backlog, ticks processed by the end."""
    rows = []
    for k in range(int(samples[-1]["t_s"] // step_s) + 1):
        bucket = [s for s in samples if k * step_s <= s["t_s"] < (k + 1) * step_s]
        if not bucket:
            continue
        rows.append(
            {
                "from_min": k * step_s / 60,
                "to_min": (k + 1) * step_s / 60,
                "rss_mean_mb": statistics.fmean(s["rss_mb"] for s in bucket),
                "rss_max_mb": max(s["rss_mb"] for s in bucket),
                "backlog_max": max((s.get("backlog", 0) for s in bucket), default=0),
                "processed": int(bucket[-1].get("processed", 0)),
                "load_mean": statistics.fmean(s["load_1m"] for s in bucket),
            }
        )
    return rows


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.warmup + 2 * args.span > args.minutes:
        parser.error(
            f"--minutes {args.minutes:g} leaves no room for a {args.warmup:g}-minute warm-up and two "
            f"{args.span:g}-minute spans; lower --warmup/--span or raise --minutes"
        )


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    check_args(parser, args)
    command_line = common.header(
        f"processor memory over a {args.minutes:g}-minute soak at {args.coins:,} coins, "
        f"each quoted every {args.cadence:g} s ({args.coins / args.cadence:,.0f} ticks/s)",
        SCRIPT,
        parser,
        args,
    )
    common.check_services()
    tag = common.unique(f"bench_soak_{args.coins}")
    log = common.log_file(tag, "processor log")
    topics = {"ticks": f"{tag}.ticks", "alerts": f"{tag}.alerts", "dlq": f"{tag}.dlq"}
    db = common.unique("bench_soak")
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))

    def terminated(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # cleaned up below, as on Ctrl-C

    signal.signal(signal.SIGTERM, terminated)
    proc: subprocess.Popen[bytes] | None = None
    feed: Feed | None = None
    result: dict[str, Any] = {}
    load_end = (0.0, 0.0, 0.0)
    samples: list[dict[str, Any]] = []
    try:
        common.create_topic(topics["ticks"], args.partitions)
        port = free_port()
        proc = start_processor(args, tag, topics, db, work, port, log)
        wait_ready(proc, port, log)
        print(f"processor pid {proc.pid} ready (metrics on port {port}); feed starts", flush=True)
        feed = Feed(topics["ticks"], args.coins, args.cadence, args.move_every, args.seed)
        feed.start()
        samples = soak(args, proc, port, feed)
        result = figures(samples, args)
        load_end = os.getloadavg()
    except KeyboardInterrupt:
        print("interrupted: cleaning up, no figures", flush=True)
        return 130
    finally:
        if feed is not None:
            feed.stopping.set()
            feed.join(40)
        if proc is not None:
            code = stop(proc)
            print(f"processor stopped (exit status {code})", flush=True)
        common.influx_drop(db)
        shutil.rmtree(work, ignore_errors=True)
        common.delete_topics(tag)
    print(
        f"feed: {feed.sent:,} ticks sent, {feed.published:,} acknowledged, {feed.failed} failed, most behind schedule "
        f"{feed.late_s:.2f} s"
    )
    warm = sum(1 for s in samples if s["t_s"] < args.warmup * 60)
    print(f"warm-up excluded: first {args.warmup:g} min ({warm} samples)")
    print(
        f"RSS mean, first {args.span:g} min after warm-up: {result['first_span']['rss_mean_mb']:.1f} MB "
        f"({result['first_span']['samples']} samples, {result['first_span']['from_s'] / 60:.1f}-"
        f"{result['first_span']['to_s'] / 60:.1f} min)"
    )
    print(
        f"RSS mean, last {args.span:g} min: {result['last_span']['rss_mean_mb']:.1f} MB "
        f"({result['last_span']['samples']} samples, {result['last_span']['from_s'] / 60:.1f}-"
        f"{result['last_span']['to_s'] / 60:.1f} min)"
    )
    print(f"growth: {result['growth_pct']:+.2f} %")
    print(
        f"RSS after warm-up: min {result['rss_min_mb']:.1f} MB, max {result['rss_max_mb']:.1f} MB; "
        f"peak RSS (VmHWM, whole run) {result['peak_rss_mb']:.1f} MB"
    )
    print(
        f"kept up: backlog after warm-up at most {result['max_backlog']} ticks, at the end "
        f"{result['final_backlog']}; {result['samples_without_progress']} samples without progress; "
        f"alerts {int(samples[-1].get('alerts', 0)):,}; load average at end {load_end[0]:.2f} "
        f"{load_end[1]:.2f} {load_end[2]:.2f}"
    )
    print("RSS curve (mean of each 5 minutes; backlog = most ticks sent but not yet processed):")
    for row in curve(samples, 300):
        print(
            f"  {row['from_min']:3.0f}-{row['to_min']:3.0f} min: RSS {row['rss_mean_mb']:7.1f} MB "
            f"(max {row['rss_max_mb']:.1f}), backlog max {row['backlog_max']}, processed {row['processed']:,}, "
            f"load {row['load_mean']:.2f}"
        )
    print(f"verdict: {result['verdict']}")
    print(f"reproduce: {command_line}")
    defaults = (args.state_cache_mb, args.state_write_buffer_mb) == memory.STATE_DEFAULTS
    suffix = "" if defaults else f"-cache{args.state_cache_mb}-wb{args.state_write_buffer_mb}"
    common.save_results(
        f"soak-{args.coins}{suffix}",
        command_line,
        {
            "args": vars(args),
            "figures": result,
            "feed": {
                "sent": feed.sent,
                "published": feed.published,
                "failed": feed.failed,
                "most_behind_schedule_s": feed.late_s,
            },
            "curve_5min": curve(samples, 300),
            "samples": samples,
        },
    )
    return 0 if result["kept_up"] and result["growth_pct"] <= args.limit_pct else 1


if __name__ == "__main__":
    raise SystemExit(main())
