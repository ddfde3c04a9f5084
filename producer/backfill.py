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

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from producer.coingecko import Backoff, CoinGeckoClient, CoinGeckoError
from producer.metrics import ProducerMetrics, default_metrics
from producer.publisher import TickPublisher
from producer.quotes import parse_market_chart
from producer.ratelimit import Stopped

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
    chunks: int = 0
    done_before: int = 0
    done: int = 0
    ticks: int = 0
    skipped_points: int = 0
    failed: list[tuple[Chunk, str]] = field(default_factory=list)
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
    budget = client.limiter.describe() if client.limiter is not None else "unlimited"
    log.info(
        "backfill %s: %d chunks (%d coins x %d currencies), %d already done; %d calls within the %s budget",
        granularity,
        len(chunks),
        len(coins),
        len(vs_currencies),
        report.done_before,
        len(todo),
        budget,
    )
    with (
        logging_redirect_tqdm(),
        tqdm(total=len(chunks), initial=report.done_before, unit="chunk", desc="backfill", disable=not progress) as bar,
    ):
        for chunk in todo:
            if stop.is_set():
                report.stopped = True
                break
            params = {
                "vs_currency": chunk.vs,
                "from": str(chunk.query_from),
                "to": str(chunk.query_to),
                "precision": "full",
            }
            try:
                payload = client.get_with_retries(
                    f"coins/{chunk.coin}/market_chart/range", params, backoff=backoff, stop=stop, wait=wait
                )
            except Stopped:
                report.stopped = True
                break
            except CoinGeckoError as exc:
                log.error("%s: %s; skipped (run again to retry it)", chunk, exc)
                report.failed.append((chunk, str(exc)))
                bar.update(1)
                continue
            parsed = parse_market_chart(
                payload,
                chunk.coin,
                chunk.vs,
                int(clock() * 1000),
                start_ms=chunk.start * 1000,
                end_ms=chunk.end * 1000,
                symbol=(symbols or {}).get(chunk.coin),
            )
            for problem in parsed.problems:
                log.warning("%s", problem)
                metrics.records_skipped.labels(reason=problem.reason).inc()
            report.skipped_points += len(parsed.problems)
            for tick in parsed.ticks:
                publisher.publish(tick)
            # The chunk is done only once Kafka has acknowledged every one of its ticks.
            if publisher.drain(str(chunk), stop):
                report.stopped = True
                break
            checkpoint.mark(chunk.key)
            report.done += 1
            report.ticks += len(parsed.ticks)
            bar.update(1)
            bar.set_postfix(ticks=report.ticks)
    return report
