"""History into ``crypto.ticks``: ``/coins/{id}/market_chart/range``, chunk by chunk, resumable.

CoinGecko chooses the granularity of a range by its length: up to 1 day in the most recent day
gives 5-minute points, 2-90 days hourly points, more than 90 days daily points (00:00 UTC). So a
long range is split into chunks that each ask for the granularity wanted:

=========== ============ ====================================================================
granularity chunk length how each request is shaped
=========== ============ ====================================================================
``5m``      1 day        only the last 24 hours exist at this granularity
``hourly``  90 days      a shorter chunk is requested as 2 days (so never 5-minutely)
``daily``   365 days     a shorter chunk is requested as 91 days (so never hourly)
=========== ============ ====================================================================

Chunks sit on a fixed grid (multiples of their length since the epoch), so re-running the same
command, even with a later ``--to``, finds the same chunks. Points outside a chunk's own range
(requests may be wider than the chunk) are dropped, so chunks never overlap.

Each chunk's ticks are published, flushed (Kafka acknowledged all of them), and only then is the
chunk recorded in the checkpoint file; an interrupted backfill resumes with the first chunk not
recorded. A chunk interrupted after delivery but before its checkpoint write is sent again: the
same ticks, which InfluxDB stores as the same points.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from crypto_watcher.config import ConfigError, ProducerSettings
from crypto_watcher.messages import Tick
from crypto_watcher.retry import Backoff
from crypto_watcher.times import ms_to_s
from producer.coingecko import CoinGeckoClient, CoinGeckoError
from producer.metrics import ProducerMetrics, default_metrics
from producer.publisher import TickPublisher
from producer.quotes import ParsedQuotes, parse_market_chart
from producer.ratelimit import Stopped
from producer.sources import make_client, resolve_coins
from producer.topics import ensure_ticks_topic, log_retention

log = logging.getLogger(__name__)

DAY = 86_400
GRANULARITIES: dict[str, tuple[int, int]] = {
    # name: (chunk length, shortest request that still gets this granularity), seconds
    "5m": (DAY, 0),
    "hourly": (90 * DAY, 2 * DAY),
    "daily": (365 * DAY, 91 * DAY),
}


@dataclass(frozen=True)
class Chunk:
    coin: str
    vs: str
    granularity: str
    start: int
    """Unix seconds, inclusive."""
    end: int
    """Unix seconds, exclusive."""
    query_from: int
    query_to: int

    @property
    def key(self) -> str:
        return f"{self.coin}:{self.vs}:{self.granularity}:{self.start}-{self.end}"

    def __str__(self) -> str:
        def day(t: int) -> str:
            return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))

        return f"{self.coin}:{self.vs} {day(self.start)}..{day(self.end)} ({self.granularity})"


def plan_chunks(coin: str, vs: str, start: int, end: int, granularity: str) -> list[Chunk]:
    """The chunks covering [start, end) for one pair, on the granularity's fixed grid."""
    length, shortest = GRANULARITIES[granularity]
    chunks = []
    t = start
    while t < end:
        grid_end = (t // length + 1) * length
        e = min(grid_end, end)
        query_from = min(t, e - shortest) if shortest else t
        chunks.append(Chunk(coin, vs, granularity, t, e, query_from, e))
        t = e
    return chunks


class Checkpoint:
    """The set of completed chunk keys, in a JSON file replaced atomically after every chunk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._done: set[str] = set()
        try:
            self._done = set(json.loads(path.read_text())["done"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"checkpoint file {path} is unreadable ({exc}); delete it or use --restart") from None

    @staticmethod
    def for_run(cache_dir: str | Path, topic: str, base_url: str) -> Path:
        """One checkpoint per (topic, API): a backfill into another topic starts from scratch."""
        tag = hashlib.sha256(f"{topic}|{base_url}".encode()).hexdigest()[:10]
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", topic)
        return Path(cache_dir) / "backfill" / f"{safe}-{tag}.json"

    def done(self, key: str) -> bool:
        return key in self._done

    def __len__(self) -> int:
        return len(self._done)

    def mark(self, key: str) -> None:
        self._done.add(key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".checkpoint.", suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump({"done": sorted(self._done)}, out, indent=0)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self._done.clear()
        self.path.unlink(missing_ok=True)


@dataclass
class BackfillReport:
    """What a backfill did, chunk by chunk; ``complete`` decides the exit status."""

    chunks: int
    """Chunks the range needs, done or not: the progress bar's total."""
    done_before: int
    """Chunks an earlier run recorded in the checkpoint: not asked for again."""
    done: int = 0
    ticks: int = 0
    skipped_points: int = 0
    failed: list[tuple[Chunk, str]] = field(default_factory=list)
    """Chunks CoinGecko refused, with why; the next run asks for them again."""
    stopped: bool = False

    @property
    def complete(self) -> bool:
        return not self.stopped and not self.failed


def run_backfill(
    client: CoinGeckoClient,
    publisher: TickPublisher,
    coins: Sequence[str],
    vs_currencies: Sequence[str],
    start: int,
    end: int,
    granularity: str,
    checkpoint: Checkpoint,
    *,
    stop: threading.Event | None = None,
    symbols: dict[str, str] | None = None,
    backoff: Backoff | None = None,
    wait: Callable[[float], bool] | None = None,
    progress: bool = True,
    metrics: ProducerMetrics | None = None,
    clock: Callable[[], float] = time.time,
) -> BackfillReport:
    """Publish every point of [start, end) for each (coin, vs); returns what was done."""
    stop = stop or threading.Event()
    metrics = metrics or default_metrics()
    chunks = [c for coin in coins for vs in vs_currencies for c in plan_chunks(coin, vs, start, end, granularity)]
    todo = [c for c in chunks if not checkpoint.done(c.key)]
    report = BackfillReport(chunks=len(chunks), done_before=len(chunks) - len(todo))
    log.info(
        "backfill %s: %d chunks (%d coins x %d currencies), %d already done; %d calls within the %s budget",
        granularity,
        len(chunks),
        len(coins),
        len(vs_currencies),
        report.done_before,
        len(todo),
        client.limiter.describe() if client.limiter is not None else "unlimited",
    )
    with (
        logging_redirect_tqdm(),
        tqdm(total=len(chunks), initial=report.done_before, unit="chunk", desc="backfill", disable=not progress) as bar,
    ):
        for chunk in todo:
            if stop.is_set():
                report.stopped = True
                break
            try:
                payload = _fetch(client, chunk, stop, backoff, wait)
            except Stopped:
                report.stopped = True
                break
            except CoinGeckoError as exc:
                log.error("%s: %s; skipped (run again to retry it)", chunk, exc)
                report.failed.append((chunk, str(exc)))
                bar.update(1)
                continue
            parsed = _chunk_ticks(payload, chunk, int(clock() * 1000), (symbols or {}).get(chunk.coin), metrics)
            report.skipped_points += len(parsed.problems)
            if not _deliver(publisher, chunk, parsed.ticks, checkpoint, stop):
                report.stopped = True
                break
            report.done += 1
            report.ticks += len(parsed.ticks)
            bar.update(1)
            bar.set_postfix(ticks=report.ticks)
    return report


def _fetch(
    client: CoinGeckoClient,
    chunk: Chunk,
    stop: threading.Event,
    backoff: Backoff | None,
    wait: Callable[[float], bool] | None,
) -> Any:
    """One chunk's answer, retried through transient failures; CoinGeckoError when it is refused."""
    params = {
        "vs_currency": chunk.vs,
        "from": str(chunk.query_from),
        "to": str(chunk.query_to),
        "precision": "full",
    }
    return client.get_with_retries(
        f"coins/{chunk.coin}/market_chart/range", params, backoff=backoff, stop=stop, wait=wait
    )


def _chunk_ticks(
    payload: Any, chunk: Chunk, fetch_time_ms: int, symbol: str | None, metrics: ProducerMetrics
) -> ParsedQuotes:
    """The chunk's own ticks (points outside it dropped); each bad point logged and counted."""
    parsed = parse_market_chart(
        payload,
        chunk.coin,
        chunk.vs,
        fetch_time_ms,
        start_ms=chunk.start * 1000,
        end_ms=chunk.end * 1000,
        symbol=symbol,
    )
    for problem in parsed.problems:
        log.warning("%s", problem)
        metrics.records_skipped.labels(reason=problem.reason).inc()
    return parsed


def _deliver(
    publisher: TickPublisher, chunk: Chunk, ticks: list[Tick], checkpoint: Checkpoint, stop: threading.Event
) -> bool:
    """Publish a chunk and record it in the checkpoint once Kafka has acknowledged every one of its
    ticks, never before (a resumed run must not skip a chunk that was lost); False when stopped first."""
    for tick in ticks:
        publisher.publish(tick)
    if publisher.drain(str(chunk), stop):
        return False
    checkpoint.mark(chunk.key)
    return True


def backfill(
    settings: ProducerSettings,
    start: int,
    end: int,
    granularity: str,
    stop: threading.Event,
    *,
    restart: bool = False,
    progress: bool = True,
) -> int:
    """The ``backfill`` command from settings on: 0 when every chunk of [start, end) is in Kafka.

    ConfigError (a refused key, unknown coins, an unreadable checkpoint) propagates: the caller
    says why and exits 2. Stopped before the first chunk, or with chunks left: 1."""
    try:
        setup = make_client(settings, stop)
        coins, symbols = resolve_coins(settings, setup.client, stop)
        checkpoint = Checkpoint(
            Checkpoint.for_run(settings.coingecko_cache_dir, settings.ticks_topic, setup.client.base_url)
        )
    except ValueError as exc:  # an unreadable checkpoint file
        raise ConfigError(str(exc)) from None
    except Stopped:
        return 1
    if restart:
        checkpoint.clear()
    ensure_ticks_topic(settings)
    log_retention(settings)
    publisher = TickPublisher(settings.kafka_bootstrap, settings.ticks_topic, stop=stop)
    report = run_backfill(
        setup.client,
        publisher,
        coins,
        settings.vs_currencies,
        start,
        end,
        granularity,
        checkpoint,
        stop=stop,
        symbols=symbols,
        backoff=Backoff(max_s=ms_to_s(settings.max_backoff)),
        progress=progress,
    )
    remaining = publisher.flush(30.0)
    log.info(
        "backfill %s: %d ticks in %d chunks, %d chunks done before, %d failed, %d bad points skipped; checkpoint %s",
        "complete" if report.complete and not remaining else "incomplete",
        report.ticks,
        report.done,
        report.done_before,
        len(report.failed),
        report.skipped_points,
        checkpoint.path,
    )
    if not report.complete or remaining:
        log.warning("run the same command again to continue with the chunks not done")
        return 1
    return 0
