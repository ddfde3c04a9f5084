"""What every benchmark shares: the command that reproduces it, timing, statistics, ratios, services.

Every figure a benchmark prints is the median of ``--runs`` repetitions with its spread, next to
a baseline measured in the same invocation on the same machine, and the ratio of the two. Subject
and baseline repetitions are interleaved (B S B S B S) so that a burst of background load hits
both sides rather than one. Each script prints the exact command line that reproduces it (every
option spelled out, defaults included) and writes its raw measurements to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/ on the path, not the repo; appended, so
    sys.path.append(str(ROOT))  # PYTHONPATH (e.g. an older processor/ to compare against) still wins

import requests  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from crypto_watcher.kafka import retention_config  # noqa: E402
from crypto_watcher.messages import Tick  # noqa: E402

KAFKA = os.environ.get("CW_BENCH_KAFKA", "127.0.0.1:9092")
INFLUX = os.environ.get("CW_BENCH_INFLUX", "http://127.0.0.1:8086")
RESULTS = ROOT / "bench" / "results"
LOGS = ROOT / ".cache" / "bench"
"""Where benchmarks' worker and service processes write their output (kept: a failed run is read there)."""
PYTHON = ".venv/bin/python"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: event times of generated feeds start here
MINUTE = 60_000
RESULT_PREFIX = "BENCH-RESULT "


# ---------------------------------------------------------------------------------------------
# The command line that reproduces a run
# ---------------------------------------------------------------------------------------------


def reproduce_command(script: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``.venv/bin/python bench/<script> --every --option value``: defaults spelled out, so a later
    change of a default cannot silently change what the command measures."""
    parts = [PYTHON, f"bench/{script}"]
    for action in parser._actions:  # argparse has no public iterator over its options
        if not action.option_strings or action.dest in ("help", "worker") or action.help == argparse.SUPPRESS:
            continue
        value = getattr(args, action.dest, None)
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            if value:
                parts.append(flag)
        elif isinstance(value, list | tuple):  # nargs="+": one word per value, as argparse reads it
            parts += [flag, *(str(v) for v in value)]
        elif value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def machine() -> dict[str, Any]:
    """What the figures were measured on; printed with every result."""
    import confluent_kafka
    import quixstreams  # after crypto_watcher, which silences authlib's warning

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    try:
        influx_version = requests.get(f"{INFLUX}/ping", timeout=3).headers.get("X-Influxdb-Version", "?")
    except requests.RequestException:
        influx_version = "unreachable"
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "quixstreams": quixstreams.__version__,
        "confluent_kafka": _version(confluent_kafka.version()),
        "librdkafka": confluent_kafka.libversion()[0],
        "influxdb": influx_version,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _version(value: Any) -> str:
    return str(value[0] if isinstance(value, tuple) else value)


def header(title: str, script: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    command = reproduce_command(script, parser, args)
    m = machine()
    print(f"== {title}")
    print(
        f"machine: {m['cpus']} cores ({m['cpu']}), {m['memory_gb']} GB RAM; Python {m['python']}, "
        f"quixstreams {m['quixstreams']}, confluent-kafka {m['confluent_kafka']} (librdkafka {m['librdkafka']}), "
        f"InfluxDB {m['influxdb']}; load average at start {m['load_avg_1m']}"
    )
    print(f"reproduce: {command}", flush=True)
    return command


# ---------------------------------------------------------------------------------------------
# Statistics and printing
# ---------------------------------------------------------------------------------------------


@dataclass
class Figure:
    """Repeated measurements of one quantity."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    higher_is_better: bool = True

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    @property
    def spread_pct(self) -> float:
        """(max - min) / median, in percent: how far apart the repetitions were."""
        return (self.high - self.low) / self.median * 100 if self.median else 0.0

    def describe(self) -> str:
        return (
            f"{fmt(self.median)} {self.unit} median of {len(self.values)} "
            f"(min {fmt(self.low)}, max {fmt(self.high)}, spread {self.spread_pct:.1f}%)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "values": self.values,
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "spread_pct": self.spread_pct,
        }


def cpu_note(own_cpu_s: float, used: dict[str, float], seconds: float) -> str:
    """'CPU in cores: itself 0.97, kafka 0.12, influxdb 0.05, everything else 0.30' for one run."""
    parts = [f"itself {own_cpu_s / seconds:.2f}"]
    others = used.get("machine", 0.0) - own_cpu_s
    for name in ("kafka", "influxdb"):
        if name in used:
            parts.append(f"{name} {used[name] / seconds:.2f}")
            others -= used[name]
    if "machine" in used:
        parts.append(f"everything else {max(0.0, others) / seconds:.2f}")
    return "CPU in cores: " + ", ".join(parts)


def fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.3g}"


def compare(subject: Figure, baseline: Figure) -> dict[str, Any]:
    """Print subject and baseline and their ratio (subject / baseline, of the medians)."""
    ratio = subject.median / baseline.median if baseline.median else float("nan")
    print(f"  {subject.name}: {subject.describe()}")
    print(f"  baseline {baseline.name}: {baseline.describe()}")
    print(f"  ratio {subject.name} / {baseline.name}: {ratio:.3f}", flush=True)
    return {"subject": subject.as_dict(), "baseline": baseline.as_dict(), "ratio": ratio}


def processor_code(folder: str) -> Path:
    """The folder a ``--code`` flag names, resolved; exits if it holds no processor package."""
    code = (ROOT / folder).resolve()
    if not (code / "processor" / "app.py").is_file():
        raise SystemExit(f"--code {folder}: no processor/app.py there")
    return code


def repo_path(path: str | Path) -> str:
    """``path`` relative to the repository when it lies inside it (``processor``,
    ``.cache/bench/...``), else as given: results are committed, and an absolute path would only
    name the machine that ran them."""
    absolute = Path(path).absolute()
    try:
        return absolute.relative_to(ROOT).as_posix() or "."
    except ValueError:
        return str(path)


def repo_relative(value: Any) -> Any:
    """``value`` with every string that is an absolute path inside the repository made relative."""
    if isinstance(value, dict):
        return {k: repo_relative(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [repo_relative(v) for v in value]
    if isinstance(value, str) and (value == str(ROOT) or value.startswith(str(ROOT) + os.sep)):
        return repo_path(value)
    return value


def save_results(name: str, command: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    m = machine()
    record = {
        "command": command,
        "machine": m,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **payload,
    }
    path.write_text(json.dumps(repo_relative(record), indent=2) + "\n")
    print(f"load average at end {m['load_avg_1m']}; raw results: {repo_path(path)}", flush=True)
    return path


def add_commit_interval_arg(parser: argparse.ArgumentParser) -> None:
    """``--commit-interval``, defaulting to the processor's own (CW_COMMIT_INTERVAL), so a benchmark
    run without it measures the processor as deployed; every run's printed command names it."""
    from crypto_watcher.cli_help import shown_default
    from crypto_watcher.config import ProcessorSettings

    default = shown_default(ProcessorSettings, "commit_interval")
    help_text = f"the processor's checkpoint interval (default {default}, its default)"
    parser.add_argument("--commit-interval", default=default, help=help_text)


def add_backlog_args(parser: argparse.ArgumentParser, ticks: int, partitions: int) -> None:
    """The backlog the processor benchmarks work through (processor_throughput.py, replicas.py):
    ``--ticks`` ticks of ``--coins`` coins in a topic of ``--partitions`` partitions."""
    parser.add_argument("--ticks", type=int, default=ticks, help=f"ticks in the topic (default {ticks:,})")
    parser.add_argument("--coins", type=int, default=1000, help="distinct coins (keys), quoted in usd (default 1000)")
    parser.add_argument(
        "--partitions", type=int, default=partitions, help=f"partitions of the ticks topic (default {partitions})"
    )
    add_commit_interval_arg(parser)


def log_file(tag: str, what: str | None = "worker logs") -> Path:
    """A new log file under LOGS for this invocation's child processes, announced as ``what`` so it can
    be found (None: the caller names it where it matters, e.g. in a failure's message)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    path = LOGS / f"{tag}.log"
    if what is not None:
        print(f"{what}: {path.relative_to(ROOT)}", flush=True)
    return path


def fill_backlog(topic: str, args: argparse.Namespace) -> None:
    """The backlog :func:`add_backlog_args` describes, written to a new ``topic`` (set-up, not measured)."""
    create_topic(topic, args.partitions)
    began = time.perf_counter()
    written = fill_topic(topic, tick_records(market_ticks(args.coins, args.ticks)))
    print(f"set-up: {written:,} ticks written to {topic} in {time.perf_counter() - began:.1f}s (not measured)")


def add_runs_arg(parser: argparse.ArgumentParser, default: int = 3) -> None:
    parser.add_argument("--runs", type=int, default=default, help=f"repetitions of each side (default {default})")


class Disturbed(RuntimeError):
    """Something outside the benchmark interfered with a run (e.g. Kafka was restarted)."""


def interleaved(runs: int, baseline: Callable[[int], Any], subject: Callable[[int], Any], attempts: int = 3) -> None:
    """B S B S ...; a run that fails (this machine is shared: a test suite may restart Kafka under
    it) is repeated, up to ``attempts`` times, and said so."""
    for i in range(runs):
        for side in (baseline, subject):
            for attempt in range(1, attempts + 1):
                try:
                    side(i)
                    break
                except Exception as exc:
                    if attempt == attempts:
                        raise
                    print(
                        f"  run {i + 1} failed ({exc.__class__.__name__}: {str(exc)[:300]}); repeating it", flush=True
                    )
                    time.sleep(10)


# ---------------------------------------------------------------------------------------------
# Child processes: every measured repetition runs in a fresh interpreter
# ---------------------------------------------------------------------------------------------


def run_worker(
    argv: Sequence[str], stderr: IO[str] | None = None, timeout_s: float = 7200.0, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``argv`` (a benchmark in worker mode) in a fresh interpreter and return its result line."""
    proc = subprocess.run(
        list(argv),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **(env or {})},
        check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX) and proc.returncode == 0:
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    where = f" (its log: {stderr.name})" if stderr is not None and hasattr(stderr, "name") else ""
    raise RuntimeError(f"worker exited {proc.returncode} without a result{where}:\n{proc.stdout[-3000:]}")


def emit_result(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# Kafka and InfluxDB
# ---------------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def check_services() -> None:
    try:
        AdminClient({"bootstrap.servers": KAFKA, "log_level": 4}).list_topics(timeout=5)
        requests.get(f"{INFLUX}/ping", timeout=3).raise_for_status()
    except Exception as exc:
        raise SystemExit(
            f"Kafka ({KAFKA}) or InfluxDB ({INFLUX}) not reachable ({exc}); start them: bash scripts/services.sh up"
        ) from exc


def create_topic(name: str, partitions: int) -> None:
    """A fresh topic that keeps its messages for ever: the benchmark market's ticks carry event
    times from the past, and Kafka's time retention (by message timestamp) would otherwise delete
    whole segments mid-run once a segment rolls (seen at 1M ticks: the processor's fetch position
    fell out of range and it was reset to the beginning)."""
    admin = AdminClient({"bootstrap.servers": KAFKA, "log_level": 4})
    topic = NewTopic(
        name, num_partitions=partitions, replication_factor=-1, config={"retention.ms": retention_config(0)}
    )
    futures = admin.create_topics([topic])
    futures[name].result(timeout=30)


def delete_topics(containing: str) -> None:
    """Delete every topic whose name contains ``containing`` (the run's unique tag): disk, not data."""
    admin = AdminClient({"bootstrap.servers": KAFKA, "log_level": 4})
    names = [t for t in admin.list_topics(timeout=15).topics if containing in t]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            try:
                future.result(timeout=60)
            except Exception as exc:
                print(f"note: could not delete a topic: {exc}", file=sys.stderr)


def fill_topic(topic: str, records: Iterable[tuple[bytes, bytes, int]]) -> int:
    """Write (key, value, event time) records as fast as Kafka takes them (set-up, not measured).

    The record timestamp is the publish time, as the producer's (docs/contracts.md); the event
    time is already in the value."""
    producer = Producer(
        {
            "bootstrap.servers": KAFKA,
            "log_level": 4,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
            "acks": "all",
        }
    )
    n = 0
    failed: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    for key, value, _event_time in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120) or failed:
        raise RuntimeError(f"could not fill {topic}: {failed[:3]}")
    return n


def topic_end_offsets(topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": unique("bench-offsets")})
    try:
        meta = consumer.list_topics(topic, timeout=15).topics[topic]
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1] for p in meta.partitions}
    finally:
        consumer.close()


def influx_query(q: str, db: str | None = None) -> dict[str, Any]:
    params = {"q": q, **({"db": db} if db else {})}
    response = requests.post(f"{INFLUX}/query", params=params, timeout=120)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def influx_create(db: str) -> None:
    influx_query(f'CREATE DATABASE "{db}"')


def influx_drop(db: str) -> None:
    try:
        influx_query(f'DROP DATABASE "{db}"')
    except requests.RequestException as exc:
        print(f"WARNING: could not drop InfluxDB database {db}: {exc}", file=sys.stderr)


def influx_count(db: str, measurement: str, field_name: str) -> int:
    body = influx_query(f'SELECT count("{field_name}") FROM "{measurement}"', db)
    series = body["results"][0].get("series") or []
    return int(series[0]["values"][0][1]) if series else 0


# ---------------------------------------------------------------------------------------------
# The synthetic market every benchmark feeds in
# ---------------------------------------------------------------------------------------------


def coin_ids(coins: int) -> list[str]:
    return [f"coin{i:05d}" for i in range(coins)]


def market_ticks(coins: int, ticks: int, seed: int = 7, step_ms: int = MINUTE, move_every: int = 240) -> Iterator[Tick]:
    """``ticks`` quotes of ``coins`` coins in USD, one per coin every ``step_ms`` (CoinGecko's
    cadence), in event-time order. Each coin random-walks (0.1 % per step) and, once every
    ``move_every`` steps (staggered across coins), falls or rises 8 % over five steps: enough to
    exercise the alert path (drop/spike, volatility, crossover, RSI) the way a real market does.
    """
    rng = random.Random(seed)
    ids = coin_ids(coins)
    offsets = sorted((rng.randrange(0, step_ms), i) for i in range(coins))  # fixed phase per coin
    prices = [10 ** rng.uniform(-2, 4) for _ in range(coins)]
    made = 0
    step = 0
    while made < ticks:
        for offset, i in offsets:
            if made >= ticks:
                return
            phase = (step + i * 7) % move_every
            drift = 0.0
            if phase < 5:
                drift = -0.017 if (step // move_every + i) % 2 == 0 else 0.017
            prices[i] *= 1 + drift + rng.gauss(0, 0.001)
            price = round(prices[i], 8)
            event_time = T0 + step * step_ms + offset
            yield Tick(
                coin=ids[i],
                symbol=ids[i][-4:],
                vs="usd",
                price=price,
                market_cap=round(price * 19_000_000, 2),
                volume_24h=round(price * 350_000, 2),
                change_24h_pct=round(rng.gauss(0, 3), 4),
                source="coingecko",
                event_time=event_time,
                fetch_time=event_time + 1_500,
            )
            made += 1
        step += 1


def tick_records(ticks: Iterable[Tick]) -> Iterator[tuple[bytes, bytes, int]]:
    for tick in ticks:
        yield tick.key.encode(), tick.to_json(), tick.event_time


def peak_rss_mb(pid: int | None = None) -> float:
    """VmHWM (peak resident set size) of a live process, from /proc; the process's own if None."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status (not Linux?)")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time a process has used so far (children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds (all cores) the whole machine has spent not idle since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (IPv4 and IPv6), from /proc/net/tcp*."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(fields[9])
    return inodes


def _pid_listening_on(port: int) -> int | None:
    """The process listening on ``port``: the benchmark's own service, whatever else runs here
    (a test run's or another checkout's Kafka and InfluxDB look the same by name)."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        return int(entry.name)
    return None


def service_pids() -> dict[str, int]:
    """The Kafka broker and InfluxDB the benchmark talks to (CW_BENCH_KAFKA, CW_BENCH_INFLUX), to
    account for their CPU time."""
    found: dict[str, int] = {}
    ports = {"kafka": int(KAFKA.rsplit(":", 1)[1]), "influxdb": urlsplit(INFLUX).port or 8086}
    for name, port in ports.items():
        pid = _pid_listening_on(port)
        if pid is not None:
            found[name] = pid
    return found


class ServiceCpu:
    """CPU seconds Kafka and InfluxDB (and the whole machine: ``machine``) used between ``start()``
    and ``stop()``; what the machine used beyond the benchmark and the services is someone else's."""

    def __init__(self) -> None:
        self.pids = service_pids()
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> ServiceCpu:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._start["machine"] = machine_busy_seconds()
        return self

    def stop(self) -> dict[str, float]:
        """CPU seconds used by each; raises Disturbed if one of them was restarted meanwhile."""
        self.used = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                self.used[name] = cpu_seconds(pid) - self._start[name]
        self.used["machine"] = machine_busy_seconds() - self._start["machine"]
        now = service_pids()
        restarted = [name for name, pid in self.pids.items() if now.get(name) != pid]
        if restarted:
            raise Disturbed(f"{' and '.join(restarted)} restarted during the run (by someone else)")
        return self.used


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a latency that happened)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]
