"""Times and profiles every Quix checkpoint of a processor that ``bench/latency.py --probe-checkpoints``
starts (this folder is put first on its PYTHONPATH, so Python imports this file at start-up).

Why: the p99 tick-to-alert latency is ticks waiting while a checkpoint commits (the stream stops
for it), so the question is how long each commit takes and in which of its steps: the sink's
InfluxDB writes, producing the state changelogs, flushing the producer, committing offsets,
writing RocksDB. Each commit's wall time is recorded with when it ended, the commits are profiled
together with cProfile, and garbage collections over 5 ms are recorded too (a full collection
also stops the stream). At exit everything goes to ``$CW_BENCH_PROBE_OUT`` (JSON) and
``$CW_BENCH_PROBE_OUT.pstats``. Nothing is done when that variable is not set.
"""

from __future__ import annotations

import atexit
import cProfile
import gc
import json
import os
import time
from typing import Any

OUT = os.environ.get("CW_BENCH_PROBE_OUT")

if OUT:
    from quixstreams.checkpointing.checkpoint import Checkpoint

    commits: list[tuple[float, float]] = []  # (ended at, unix s; took, ms)
    collections: list[tuple[float, int, float]] = []  # (ended at; generation; took, ms)
    profile = cProfile.Profile()
    original_commit = Checkpoint.commit
    gc_began = [0.0]

    def commit(self: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        profile.enable()
        try:
            return original_commit(self, *args, **kwargs)
        finally:
            profile.disable()
            commits.append((time.time(), (time.perf_counter() - began) * 1000))

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_began[0] = time.perf_counter()
            return
        took = (time.perf_counter() - gc_began[0]) * 1000
        if took > 5:
            collections.append((time.time(), info["generation"], took))

    Checkpoint.commit = commit  # type: ignore[method-assign]
    gc.callbacks.append(on_gc)

    @atexit.register
    def write_out() -> None:
        assert OUT
        profile.dump_stats(OUT + ".pstats")
        with open(OUT, "w") as out:
            json.dump({"commits": commits, "collections": collections}, out)
