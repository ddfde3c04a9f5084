"""Producer throughput: ticks/s into Kafka through the producer's publisher, against a bare loop.

``--ticks`` real ``Tick`` objects of ``--coins`` coins are built before the clock starts.
Alternately, each into a fresh topic (3 partitions, created before the clock starts):

- baseline: a bare confluent-kafka ``Producer`` with the publisher's own settings (idempotent,
  acks=all, lz4, linger 20 ms, 100,000-message queue) producing the same keys and value bytes
  (``tick.to_json()`` made in advance), ``poll(0)`` after every ``--coins`` messages, no
  delivery callback, then ``flush()``;
- subject: ``producer.publisher.TickPublisher.publish(tick)`` for each tick (serialising it,
  with its per-tick delivery report), ``poll(0)`` after every ``--coins`` ticks as the poll loop
  does after each poll, then ``flush()``.

Each side first sends one warm-up message and waits for it, outside the clock: the connection,
the topic's metadata and the idempotent producer id are then in place for both. The clock stops
when ``flush()`` returns: every tick acknowledged by the broker (acks=all).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common
from confluent_kafka import Producer

from crypto_watcher.messages import Tick
from producer.publisher import QUEUE_LIMIT, TickPublisher

SCRIPT = "producer_throughput.py"
CONFIG = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "compression.type": "lz4",
    "message.timeout.ms": 0,
    "queue.buffering.max.messages": QUEUE_LIMIT,
}


WARMUP_KEY = b"warmup"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ticks", type=int, default=1_000_000, help="ticks published per run (default 1,000,000)")
    p.add_argument("--coins", type=int, default=1000, help="distinct coins; also ticks per poll (default 1000)")
    common.add_runs_arg(p)
    return p


def run_bare(topic: str, records: list[tuple[bytes, bytes, int]], per_poll: int) -> float:
    producer = Producer({"bootstrap.servers": common.KAFKA, **CONFIG})
    # Warm-up, outside the clock as for the publisher: connect, fetch metadata, get the idempotent
    # producer id (a fresh broker can make this wait for its coordinator).
    producer.produce(topic, key=WARMUP_KEY, value=b"{}")
    if producer.flush(60):
        raise RuntimeError("bare producer: warm-up message undelivered")
    start = time.perf_counter()
    produce, poll = producer.produce, producer.poll
    for n, (key, value, _event_time) in enumerate(records, 1):
        while True:
            try:
                produce(topic, key=key, value=value)  # publish time, as the publisher
                break
            except BufferError:
                poll(1.0)
        if n % per_poll == 0:
            poll(0)
    if producer.flush(120):
        raise RuntimeError("bare producer: messages left undelivered")
    return time.perf_counter() - start


def run_publisher(topic: str, ticks: list[Tick], per_poll: int) -> float:
    publisher = TickPublisher(common.KAFKA, topic)
    publisher.publish(ticks[0])  # warm-up (see run_bare), outside the clock and the count
    if publisher.flush(60):
        raise RuntimeError("publisher: warm-up tick undelivered")
    publisher.delivered = 0
    start = time.perf_counter()
    for n, tick in enumerate(ticks, 1):
        publisher.publish(tick)
        if n % per_poll == 0:
            publisher.poll(0)
    if publisher.flush(120):
        raise RuntimeError("publisher: ticks left undelivered")
    elapsed = time.perf_counter() - start
    if publisher.delivered != len(ticks) or publisher.failed:
        raise RuntimeError(f"publisher: {publisher.delivered} delivered, {publisher.failed} failed of {len(ticks)}")
    return elapsed


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    command = common.header(
        f"producer throughput: {args.ticks:,} ticks of {args.coins:,} coins into Kafka", SCRIPT, parser, args
    )
    common.check_services()
    began = time.perf_counter()
    ticks = list(common.market_ticks(args.coins, args.ticks))
    records = [(t.key.encode(), t.to_json(), t.event_time) for t in ticks]
    print(f"set-up: {len(ticks):,} Tick objects made in {time.perf_counter() - began:.1f}s (not measured)", flush=True)
    tag = common.unique("bench_prod")
    subject = common.Figure("TickPublisher", "ticks/s")
    baseline = common.Figure("bare confluent-kafka produce loop", "ticks/s")
    runs: list[dict[str, Any]] = []

    def run(kind: str, figure: common.Figure, i: int) -> None:
        topic = f"{tag}.{kind}.{i}"
        common.create_topic(topic, 3)
        services = common.ServiceCpu().start()
        cpu0 = common.cpu_seconds()
        if kind == "baseline":
            seconds = run_bare(topic, records, args.coins)
        else:
            seconds = run_publisher(topic, ticks, args.coins)
        cpu_s = common.cpu_seconds() - cpu0
        service_cpu = services.stop()
        stored = sum(common.topic_end_offsets(topic).values()) - 1  # less the warm-up message
        if stored != len(ticks):
            raise RuntimeError(f"{kind}: the topic holds {stored:,} messages, {len(ticks):,} were produced")
        rate = len(ticks) / seconds
        figure.values.append(rate)
        runs.append(
            {
                "kind": kind,
                "ticks": len(ticks),
                "seconds": seconds,
                "ticks_per_s": rate,
                "cpu_s": cpu_s,
                "service_cpu_s": service_cpu,
            }
        )
        print(
            f"  run {i + 1} {kind}: {len(ticks):,} ticks in {seconds:.2f}s = {rate:,.0f} ticks/s; "
            + common.cpu_note(cpu_s, service_cpu, seconds)
            + " (itself includes librdkafka's threads)",
            flush=True,
        )

    try:
        common.interleaved(args.runs, lambda i: run("baseline", baseline, i), lambda i: run("publisher", subject, i))
    finally:
        common.delete_topics(tag)
    comparison = common.compare(subject, baseline)
    print(f"reproduce: {command}")
    common.save_results(f"producer_throughput-{args.ticks}", command, {"args": vars(args), "runs": runs, **comparison})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
