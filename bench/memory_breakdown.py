"""Where the processor's memory goes: its resident set split into state store, Kafka client, Python, allocator.

Runs the processor exactly as ``bench/memory.py`` does (``crypto-processor run --stop-when-idle 15``
over ``--rounds`` minutes of history of every coin, a 3-partition ticks topic), but inside a probe
that samples, every ``--sample-s`` seconds, from inside the process:

- resident set: ``VmRSS`` / ``VmHWM``, split into ``RssAnon`` (heap, stacks, anonymous mmaps) and
  ``RssFile`` (mapped code: the interpreter, its extensions, librocksdb, librdkafka);
- RocksDB, from its own properties, summed over every open store partition and column family:
  ``rocksdb.size-all-mem-tables`` (active + unflushed immutable memtables),
  ``rocksdb.estimate-table-readers-mem`` (index and bloom filters of open SST files, outside the
  block cache), and the process-wide block cache's ``rocksdb.block-cache-usage`` (counted once);
- librdkafka, from its statistics JSON (``statistics.interval.ms`` + ``stats_cb``, hooked into the
  Quix consumer and producer): the consumer's prefetched fetch queues (``fetchq_size`` summed over
  partitions) and each client's queued outgoing messages (``msg_size``);
- Python: ``tracemalloc``'s traced bytes with ``--tracemalloc`` (every allocation the interpreter
  makes, slows the run), else pymalloc's arenas (``sys._debugmallocstats``, small objects only);
- glibc malloc: ``mallinfo2()``: bytes in use (``uordblks`` + ``hblkhd``), and bytes free but held
  in its arenas (``fordblks``): the allocator's share. At the end, ``malloc_trim(0)`` shows how much
  of that it can give back.

The sample with the highest RSS is printed as a table, with each component's own maximum. Extra
librdkafka consumer settings (e.g. a prefetch cap) can be given with ``--consumer-config KEY=VALUE``;
the environment (e.g. ``MALLOC_ARENA_MAX=2``, ``CW_COMMIT_INTERVAL=1s``) is inherited by the processor.
``--trim-every-s N`` calls ``malloc_trim(0)`` every N seconds from the probe's thread: what giving
freed memory back to the system would save, and what each call costs.

What the figures add up to: ``RssAnon`` ≈ glibc malloc (in use + free but held) + pymalloc's arenas
(Python's own mmaps, not malloc); the RocksDB and librdkafka figures are parts of malloc's "in use";
the rest of "in use" is Python's larger objects (over 512 bytes: ``--tracemalloc`` names them) and
the libraries' smaller buffers.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import common

SCRIPT = "memory_breakdown.py"
MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# The probe: runs inside the processor's process
# ---------------------------------------------------------------------------------------------


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> Any:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def _status() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
            value = int(rest.split()[0])
            out[key] = value if key == "Threads" else value / 1024
    return out


class Probe:
    def __init__(
        self, out: Path, interval: float, traced: bool, consumer_config: dict[str, Any], trim_every_s: float = 0
    ) -> None:
        self.out = out
        self.trim_every_s = trim_every_s
        self._trimmed_at = 0.0
        self.trims: list[float] = []  # seconds each malloc_trim took
        self.interval = interval
        self.traced = traced
        self.consumer_config = consumer_config
        self.libc = _libc()
        self.partitions: list[Any] = []
        self.kafka: dict[str, dict[str, float]] = {}  # client name -> figures from its last statistics
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._last_pymalloc = 0.0
        self._pymalloc_at = 0.0

    # hooks -----------------------------------------------------------------------------------

    def install(self) -> None:
        import quixstreams.app as quix_app
        from quixstreams.state.rocksdb.partition import RocksDBStorePartition

        probe = self
        original_init = RocksDBStorePartition.__init__

        def partition_init(self: Any, *args: Any, **kwargs: Any) -> None:
            original_init(self, *args, **kwargs)
            probe.partitions.append(self)

        RocksDBStorePartition.__init__ = partition_init  # type: ignore[method-assign]

        app_init = quix_app.Application.__init__

        def application_init(self: Any, *args: Any, **kwargs: Any) -> None:
            consumer = dict(kwargs.get("consumer_extra_config") or {})
            consumer.update(probe.consumer_config)
            consumer.update({"statistics.interval.ms": 1000, "stats_cb": probe._stats_cb})
            producer = dict(kwargs.get("producer_extra_config") or {})
            producer.update({"statistics.interval.ms": 1000, "stats_cb": probe._stats_cb})
            kwargs["consumer_extra_config"] = consumer
            kwargs["producer_extra_config"] = producer
            app_init(self, *args, **kwargs)

        quix_app.Application.__init__ = application_init  # type: ignore[method-assign]
        if self.traced:
            import tracemalloc

            tracemalloc.start(1)

    def _stats_cb(self, stats_json: str) -> None:
        stats = json.loads(stats_json)
        fetchq_bytes = fetchq_msgs = 0
        for topic in stats.get("topics", {}).values():
            for part in topic.get("partitions", {}).values():
                if part.get("partition", -1) >= 0:
                    fetchq_bytes += part.get("fetchq_size", 0)
                    fetchq_msgs += part.get("fetchq_cnt", 0)
        self.kafka[f"{stats.get('type')}:{stats.get('name')}"] = {
            "fetchq_mb": fetchq_bytes / MB,
            "fetchq_msgs": fetchq_msgs,
            "msgq_mb": stats.get("msg_size", 0) / MB,
            "msgq_msgs": stats.get("msg_cnt", 0),
        }

    # sampling --------------------------------------------------------------------------------

    def _rocksdb(self) -> dict[str, float]:
        mem = readers = cache = pinned = 0
        open_partitions = 0
        for partition in list(self.partitions):
            db = getattr(partition, "_db", None)
            if db is None:
                continue
            try:
                names = partition.list_column_families()
                open_partitions += 1
                for name in names:
                    cf = db if name == "default" else db.get_column_family(name)
                    mem += cf.property_int_value("rocksdb.size-all-mem-tables") or 0
                    readers += cf.property_int_value("rocksdb.estimate-table-readers-mem") or 0
                cache = db.property_int_value("rocksdb.block-cache-usage") or 0  # one cache, shared
                pinned = db.property_int_value("rocksdb.block-cache-pinned-usage") or 0
            except Exception:  # closed under us (revoke, shutdown)
                continue
        return {
            "rocksdb_partitions": open_partitions,
            "rocksdb_memtables_mb": mem / MB,
            "rocksdb_table_readers_mb": readers / MB,
            "rocksdb_block_cache_mb": cache / MB,
            "rocksdb_block_cache_pinned_mb": pinned / MB,
        }

    def _pymalloc_mb(self) -> float:
        """Bytes in pymalloc's arenas (``sys._debugmallocstats`` 'Total'), every 5 s at most."""
        now = time.monotonic()
        if now - self._pymalloc_at < 5:
            return self._last_pymalloc
        self._pymalloc_at = now
        with tempfile.TemporaryFile() as tmp:
            sys.stderr.flush()
            saved = os.dup(2)
            try:
                os.dup2(tmp.fileno(), 2)
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace")
        for line in text.splitlines():
            if "bytes/arena" in line:  # "N arenas * 1048576 bytes/arena = total": pymalloc's own mmaps
                self._last_pymalloc = int(line.split("=")[1].strip().replace(",", "")) / MB
                break
        return self._last_pymalloc

    def sample(self) -> dict[str, Any]:
        info = self.libc.mallinfo2()
        row: dict[str, Any] = {"t": round(time.monotonic() - self.started, 1), **_status(), **self._rocksdb()}
        row["malloc_in_use_mb"] = (info.uordblks + info.hblkhd) / MB
        row["malloc_mmapped_mb"] = info.hblkhd / MB
        row["malloc_free_held_mb"] = info.fordblks / MB
        row["malloc_arena_mb"] = info.arena / MB
        if self.traced:
            import tracemalloc

            row["python_traced_mb"] = tracemalloc.get_traced_memory()[0] / MB
            row["tracemalloc_overhead_mb"] = tracemalloc.get_tracemalloc_memory() / MB
        else:
            row["python_pymalloc_mb"] = self._pymalloc_mb()
        kafka = dict(self.kafka)
        row["kafka_fetchq_mb"] = sum(k["fetchq_mb"] for k in kafka.values())
        row["kafka_fetchq_msgs"] = sum(k["fetchq_msgs"] for k in kafka.values())
        row["kafka_msgq_mb"] = sum(k["msgq_mb"] for k in kafka.values())
        row["kafka_msgq_msgs"] = sum(k["msgq_msgs"] for k in kafka.values())
        return row

    def _snapshot(self, row: dict[str, Any]) -> None:
        """With tracemalloc: every 20 s, the biggest Python allocation sites, kept when the traced
        total is the largest seen so far."""
        import tracemalloc

        now = time.monotonic()
        if now - getattr(self, "_snapshot_at", 0.0) < 20 or row["python_traced_mb"] <= getattr(
            self, "_snapshot_mb", 0.0
        ):
            return
        self._snapshot_at, self._snapshot_mb = now, row["python_traced_mb"]
        stats = tracemalloc.take_snapshot().statistics("lineno")
        self.top_python = {
            "t": row["t"],
            "traced_mb": row["python_traced_mb"],
            "top": [{"where": str(s.traceback[0]), "mb": round(s.size / MB, 2), "blocks": s.count} for s in stats[:25]],
        }

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                row = self.sample()
                self.samples.append(row)
                if self.trim_every_s and time.monotonic() - self._trimmed_at >= self.trim_every_s:
                    began = time.perf_counter()
                    self.libc.malloc_trim(0)
                    self.trims.append(time.perf_counter() - began)
                    self._trimmed_at = time.monotonic()
                if self.traced:
                    self._snapshot(row)
            except Exception as exc:  # never take the processor down
                print(f"memory probe: sample failed: {exc!r}", file=sys.stderr)

    def start(self) -> None:
        threading.Thread(target=self._loop, name="memory-probe", daemon=True).start()

    def finish(self) -> None:
        self._stop.set()
        end = self.sample()
        self.libc.malloc_trim(0)
        trimmed = self.sample()
        data = {
            "samples": self.samples,
            "end": end,
            "end_after_malloc_trim": trimmed,
            "trim_seconds": self.trims,
            "trim_every_s": self.trim_every_s,
        }
        if getattr(self, "top_python", None):
            data["top_python"] = self.top_python
        self.out.write_text(json.dumps(data))


def probe_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--probe", type=Path, required=True)
    p.add_argument("--sample-s", type=float, default=1.0)
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--consumer-config", default="{}")
    p.add_argument("--trim-every-s", type=float, default=0)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    probe = Probe(args.probe, args.sample_s, args.tracemalloc, json.loads(args.consumer_config), args.trim_every_s)
    probe.install()
    probe.start()
    from processor.cli import main

    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    try:
        return main(rest)
    finally:
        probe.finish()


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    import memory

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coins", type=int, default=10000, help="coins (default 10000)")
    p.add_argument("--rounds", type=int, default=65, help="minutes of history fed to the processor (default 65)")
    memory.add_state_args(p)
    p.add_argument(
        "--consumer-config",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka consumer settings, e.g. queued.max.messages.kbytes=4096",
    )
    p.add_argument("--sample-s", type=float, default=1.0, help="seconds between samples (default 1)")
    p.add_argument("--tracemalloc", action="store_true", help="trace every Python allocation (slower run)")
    p.add_argument(
        "--trim-every-s",
        type=float,
        default=0,
        help="call glibc malloc_trim(0) from the probe every this many seconds (0: never): what returning "
        "freed memory to the system would save",
    )
    p.add_argument("--name", default="", help="suffix of the result file")
    return p


def _consumer_config(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


COMPONENTS = [
    ("VmRSS", "resident set (VmRSS)"),
    ("RssFile", "  mapped files (code: python, extensions, librocksdb, librdkafka)"),
    ("RssAnon", "  anonymous (heap, arenas, stacks)"),
    ("rocksdb_memtables_mb", "    RocksDB memtables (size-all-mem-tables, all partitions/CFs)"),
    ("rocksdb_block_cache_mb", "    RocksDB block cache (block-cache-usage)"),
    ("rocksdb_table_readers_mb", "    RocksDB table readers (estimate-table-readers-mem)"),
    ("kafka_fetchq_mb", "    librdkafka consumer fetch queues (fetchq_size)"),
    ("kafka_msgq_mb", "    librdkafka producer queues (msg_size)"),
    ("python_traced_mb", "    Python objects (tracemalloc traced)"),
    ("tracemalloc_overhead_mb", "    tracemalloc's own bookkeeping"),
    ("python_pymalloc_mb", "    Python small objects (pymalloc arenas)"),
    ("malloc_in_use_mb", "  glibc malloc in use (mallinfo2 uordblks+hblkhd)"),
    ("malloc_free_held_mb", "  glibc malloc free but held (mallinfo2 fordblks)"),
    ("Threads", "threads"),
]


def report(data: dict[str, Any]) -> str:
    samples = data["samples"]
    if not samples:
        return "no samples"
    peak = max(samples, key=lambda s: s.get("VmRSS", 0))
    lines = [f"{'component':<72} {'at peak RSS':>12} {'own max':>10}"]
    for key, label in COMPONENTS:
        if key not in peak:
            continue
        top = max(s.get(key, 0) for s in samples)
        unit = "" if key == "Threads" else " MB"
        lines.append(f"{label:<72} {peak[key]:>9.1f}{unit:3} {top:>7.1f}{unit}")
    lines.append(
        f"peak sample at t={peak['t']}s of {samples[-1]['t']}s; VmHWM {max(s['VmHWM'] for s in samples):.1f} MB"
    )
    end, trimmed = data["end"], data["end_after_malloc_trim"]
    lines.append(
        f"at exit (stores closed): RSS {end['VmRSS']:.1f} MB, malloc free-held {end['malloc_free_held_mb']:.1f} MB; "
        f"after malloc_trim(0): RSS {trimmed['VmRSS']:.1f} MB, free-held {trimmed['malloc_free_held_mb']:.1f} MB"
    )
    if data.get("trim_seconds"):
        trims = sorted(data["trim_seconds"])
        lines.append(
            f"malloc_trim(0) every {data.get('trim_every_s', '?')}: {len(trims)} calls, "
            f"median {trims[len(trims) // 2] * 1000:.1f} ms, max {trims[-1] * 1000:.1f} ms"
        )
    if "top_python" in data:
        top = data["top_python"]
        lines.append(f"largest Python allocation sites at t={top['t']}s ({top['traced_mb']:.1f} MB traced):")
        lines += [f"  {row['mb']:>8.2f} MB {row['blocks']:>9,} blocks  {row['where']}" for row in top["top"][:15]]
    return "\n".join(lines)


def main() -> int:
    if sys.argv[1:2] == ["--probe"]:
        return probe_main(sys.argv[1:])
    import memory

    parser = build_parser()
    args = parser.parse_args()
    command_line = common.header(f"processor memory by component at {args.coins:,} coins", SCRIPT, parser, args)
    common.check_services()
    log = common.log_file(common.unique("bench_memory_breakdown"), None)
    tag = common.unique(f"bench_membd_{args.coins}")
    db = common.unique("bench_membd")
    work = Path(tempfile.mkdtemp(prefix="bench-memory-breakdown-"))
    probe_out = work / "probe.json"
    topics = {"ticks": f"{tag}.ticks", "alerts": f"{tag}.alerts", "dlq": f"{tag}.dlq"}
    try:
        common.create_topic(topics["ticks"], 3)
        common.fill_topic(
            topics["ticks"], common.tick_records(common.market_ticks(args.coins, args.coins * args.rounds))
        )
        argv = [
            *(sys.executable, str(Path(__file__).resolve()), "--probe", str(probe_out)),
            *(
                "--sample-s",
                str(args.sample_s),
                "--consumer-config",
                json.dumps(_consumer_config(args.consumer_config)),
            ),
            *(["--tracemalloc"] if args.tracemalloc else []),
            *("--trim-every-s", str(args.trim_every_s)),
            *("--", "run", "--ticks-topic", topics["ticks"], "--alerts-topic", topics["alerts"]),
            *("--group", f"{tag}-processor", "--influx-url", common.INFLUX, "--influx-db", db),
            *("--state-dir", str(work / "state"), "--http-port", "-1", "--stop-when-idle", "15"),
        ]
        env = {
            "CW_KAFKA_BOOTSTRAP": common.KAFKA,
            "CW_LOG_FORMAT": "json",
            "CW_TICKS_PARTITIONS": "3",
            "CW_DLQ_TOPIC": topics["dlq"],
            "CW_LOG_LEVEL": "ERROR",
            "CW_STATE_CACHE_MB": str(args.state_cache_mb),
            "CW_STATE_WRITE_BUFFER_MB": str(args.state_write_buffer_mb),
        }
        result = memory.measure("processor", argv, log, env=env)
        alerts = sum(common.topic_end_offsets(topics["alerts"]).values())
        data = json.loads(probe_out.read_text())
    finally:
        common.influx_drop(db)
        shutil.rmtree(work, ignore_errors=True)
        common.delete_topics(tag)
    ticks = args.coins * args.rounds
    print(
        f"processor: peak RSS {result['peak_rss_mb']:.1f} MB, {result['seconds']:.0f}s "
        f"({ticks / result['seconds']:,.0f} ticks/s incl. start-up), {alerts:,} alerts; "
        f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', 'unset')}; load average {os.getloadavg()[0]:.2f}"
    )
    print(report(data))
    print(f"reproduce: {command_line}")
    suffix = f"-{args.name}" if args.name else ""
    common.save_results(
        f"memory-breakdown-{args.coins}{suffix}",
        command_line,
        {
            "args": vars(args),
            "env_malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
            "result": result,
            "alerts": alerts,
            "probe": data,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
