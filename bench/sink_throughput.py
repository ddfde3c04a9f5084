"""InfluxDB sink throughput: points/s through the processor's sink, against raw /write requests.

The points are what the processor writes for ``--ticks`` ticks of the benchmark market (per tick
a ``price`` point, three ``change`` points and a ``candle`` point, made by ``processor.points``),
built before the clock starts. Alternately, each into a fresh database (created before and
dropped after each run):

- baseline: ``requests.Session().post(/write?precision=ms)`` of the same lines, in the same order,
  in requests of 5,000 lines (the sink's own request size), nothing else;
- subject: ``processor.influx.InfluxSink`` over ``V1Writer`` driven the way Quix drives it: each
  record is ``add``-ed to the sink's per-partition batch (3 partitions, by key) as the pipeline
  emits it (the price line, the tick's list of change lines, the candle line), and every
  ``--checkpoint-ticks`` ticks Quix's checkpoint calls ``flush()``, which writes each partition's
  batch in requests of at most 5,000 lines.

Both count every point InfluxDB then holds, so a lost point would fail the run.
"""

from __future__ import annotations

import argparse
import time
import zlib
from typing import Any

import common
import requests

from processor.influx import MAX_LINES_PER_REQUEST, InfluxSink, V1Writer
from processor.moves import sliding_changes
from processor.points import candle_line, change_line, price_line
from processor.windows import candle_record
from tests.support.state import DictState

SCRIPT = "sink_throughput.py"
WINDOWS_MS = [5 * common.MINUTE, 15 * common.MINUTE, 60 * common.MINUTE]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ticks", type=int, default=200_000, help="ticks whose points are written (default 200,000)")
    p.add_argument("--coins", type=int, default=1000, help="distinct coins (default 1000)")
    p.add_argument(
        "--checkpoint-ticks",
        type=int,
        default=10_000,
        help="ticks per Quix checkpoint (default 10,000: about 5 s of the processor at full speed)",
    )
    common.add_runs_arg(p)
    return p


Record = tuple[str, int, str | list[str]]  # (key, partition, value given to the sink)


def make_records(ticks: int, coins: int) -> list[Record]:
    """What the processor's pipeline hands its sink for each tick, in the order it does."""
    states: dict[str, DictState] = {}
    out: list[Record] = []
    for tick in common.market_ticks(coins, ticks):
        key = tick.key
        partition = zlib.crc32(key.encode()) % 3
        values = tick.__dict__
        out.append((key, partition, price_line(values)))
        state = states.setdefault(key, DictState())
        changes = sliding_changes(tick.coin, tick.vs, tick.event_time, tick.price, WINDOWS_MS, common.MINUTE, state)
        out.append((key, partition, [change_line(c) for c in changes]))
        start = tick.event_time - tick.event_time % common.MINUTE
        agg = {"start": start, "end": start + common.MINUTE, "open": tick.price, "high": tick.price}
        agg.update({"low": tick.price, "close": tick.price, "ticks": 1})
        out.append((key, partition, candle_line(candle_record(agg, tick.coin, tick.vs, common.MINUTE))))
    return out


def lines_of(records: list[Record]) -> list[str]:
    lines: list[str] = []
    for _key, _partition, value in records:
        if isinstance(value, list):
            lines.extend(value)
        else:
            lines.append(value)
    return lines


def run_raw(lines: list[str], db: str) -> float:
    session = requests.Session()
    url = f"{common.INFLUX}/write"
    start = time.perf_counter()
    for i in range(0, len(lines), MAX_LINES_PER_REQUEST):
        response = session.post(
            url,
            params={"db": db, "precision": "ms"},
            data="\n".join(lines[i : i + MAX_LINES_PER_REQUEST]).encode(),
            timeout=60,
        )
        if response.status_code != 204:
            raise RuntimeError(f"raw write: HTTP {response.status_code}: {response.text[:200]}")
    elapsed = time.perf_counter() - start
    session.close()
    return elapsed


def run_sink(records: list[Record], db: str, checkpoint_every: int) -> float:
    sink = InfluxSink(V1Writer(common.INFLUX, db, timeout_s=60))
    sink.setup()  # creates the database (already there): Quix calls it once at start-up
    per_tick = 3
    start = time.perf_counter()
    for n, (key, partition, value) in enumerate(records, 1):
        sink.add(
            value=value, key=key, timestamp=0, headers=[], topic="ticks", partition=partition, offset=n // per_tick
        )
        if n % (checkpoint_every * per_tick) == 0:
            sink.flush()  # type: ignore[no-untyped-call]
    sink.flush()  # type: ignore[no-untyped-call]
    elapsed = time.perf_counter() - start
    sink.writer.close()
    if sink.rejected_writes or sink.backpressure_events:
        raise RuntimeError(f"sink: {sink.rejected_writes} rejected, {sink.backpressure_events} deferred writes")
    return elapsed


def count_points(db: str) -> int:
    return sum(
        common.influx_count(db, m, f) for m, f in (("price", "price"), ("change", "change_pct"), ("candle", "close"))
    )


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    command = common.header(
        f"InfluxDB sink throughput: the points of {args.ticks:,} ticks of {args.coins:,} coins", SCRIPT, parser, args
    )
    common.check_services()
    began = time.perf_counter()
    records = make_records(args.ticks, args.coins)
    lines = lines_of(records)
    # Distinct points: a change re-emitted by a late tick would overwrite one (not in this feed).
    print(f"set-up: {len(lines):,} points made in {time.perf_counter() - began:.1f}s (not measured)", flush=True)
    subject = common.Figure("InfluxSink + V1Writer", "points/s")
    baseline = common.Figure("raw /write with requests", "points/s")
    runs: list[dict[str, Any]] = []

    def run(kind: str, figure: common.Figure, i: int) -> None:
        db = common.unique("bench_sink")
        common.influx_create(db)
        try:
            services = common.ServiceCpu().start()
            cpu0 = common.cpu_seconds()
            seconds = run_raw(lines, db) if kind == "baseline" else run_sink(records, db, args.checkpoint_ticks)
            cpu_s = common.cpu_seconds() - cpu0
            service_cpu = services.stop()
            stored = count_points(db)
            if stored != len(lines):
                raise RuntimeError(f"{kind}: InfluxDB holds {stored:,} points, {len(lines):,} were written")
        finally:
            common.influx_drop(db)
        rate = len(lines) / seconds
        figure.values.append(rate)
        runs.append(
            {
                "kind": kind,
                "points": len(lines),
                "seconds": seconds,
                "points_per_s": rate,
                "cpu_s": cpu_s,
                "service_cpu_s": service_cpu,
            }
        )
        print(
            f"  run {i + 1} {kind}: {len(lines):,} points in {seconds:.2f}s = {rate:,.0f} points/s; "
            + common.cpu_note(cpu_s, service_cpu, seconds),
            flush=True,
        )

    common.interleaved(args.runs, lambda i: run("baseline", baseline, i), lambda i: run("sink", subject, i))
    comparison = common.compare(subject, baseline)
    print(f"reproduce: {command}")
    common.save_results(f"sink_throughput-{args.ticks}", command, {"args": vars(args), "runs": runs, **comparison})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
