"""Replay: re-run a time range of ``crypto.ticks`` through the same pipeline, and end by itself.

Used after changing a rule ("what would last week have alerted?") or to rebuild a database. It runs
under its own consumer group and state folder, so the live processor is untouched.

Where it writes: never the live database or bucket without ``--into-live``
(``processor.replay_target`` says why and how).

To give the same candles, changes and alerts the live run gave, the replay starts reading a
*warm-up* earlier than ``--from`` and only emits what falls inside ``[from, to]`` (``warmup``).
Windows, candles, volatility's baseline of returns and SMAs remember a bounded history: the warm-up
holds all of it, so they equal the live run's exactly. RSI (Wilder's averages) and EMAs remember
for ever, with a weight that decays by ``1 - alpha`` per candle: the warm-up lasts until at most
``WARMUP_RESIDUAL`` of the state before it remains, so their values agree within ``tolerances``
(RSI 0.01 points). Alert state is decided by those values: cooldowns are covered twice over, and
re-arm flags and the crossover's side are reset by what the warm-up sees; the one case left is
such a flag the live run set before the warm-up and nothing during it reset (README "Replay" lists
them), plus an indicator within its tolerance of a threshold.

Finding the range: a record's Kafka timestamp is when it was **published**; the quote's event time
is in the value (docs/contracts.md). A quote is published after it was current, so no record
published before ``warm-up start - CLOCK_SKEW`` can hold a tick of the range: the replay seeks
there by timestamp, which keeps a recent range cheap however long the topic is. The end cannot be
found by timestamp, because a backfill publishes old event times late, so the replay reads up to
the end of every partition as it was when the replay started and keeps only the ticks whose event
time lies in ``[warm-up start, to + run-out]``. The run-out (one candle interval plus the grace
period) is there because the range's last candle starts at or before ``to`` but ends after it: the
live run filled it with the ticks up to its end and closed it once the grace period had passed, so
the replay needs those ticks too; whatever they produce beyond ``to`` is not written. It stops once
the group has committed every partition up to that end.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from tqdm import tqdm

from crypto_watcher.config import InfluxApi, ProcessorSettings
from crypto_watcher.kafka import client_config
from crypto_watcher.times import format_time
from processor.app import Pipeline, build_pipeline, ruleset_from
from processor.long_windows import history_ms
from processor.metrics import OffsetsWatcher
from processor.replay_target import ensure_bucket
from processor.rules import RuleSet

log = logging.getLogger(__name__)


WARMUP_RESIDUAL = 1e-6
"""The share of an indicator's state from before the warm-up that may survive to ``--from``.

RSI (Wilder) and exponential moving averages never forget: each closed candle keeps a fixed share
``1 - alpha`` of the previous state (``alpha = 1/period`` for Wilder's averages, ``2/(n + 1)`` for an
n-candle EMA). A replay cannot start from the live run's state, so it seeds its own from the first
candles it reads; the difference between the two then shrinks to ``(1 - alpha)**k`` of what it was
after ``k`` further candles. The warm-up is long enough for that factor to fall to this residual.
What that means in indicator units (:func:`tolerances`, README "Replay"): RSI within 0.01 points,
EMAs within 2e-6 relative, the crossover gap within 0.001 percentage points. 1e-6 rather than, say,
1e-3 because an RSI near its threshold decides an alert: the closer the values, the rarer a flip;
the cost is reading 3h24m of ticks before ``--from`` with the default rules instead of 62m (the
replay's ``--warmup-residual`` trades one for the other).
"""

PRICE_RANGE = 2.0
"""Assumed for :func:`tolerances`: prices stay within this factor of each other, from those the live
averages hold at the warm-up start to the candle compared."""
CALM_RATIO = 100.0
"""Assumed for :func:`tolerances`: the average one-candle move does not fall more than this many
times between the warm-up start and a candle of the range (a feed that stops moving breaks it)."""


def smoothing_steps(alpha: float, residual: float) -> int:
    """Candles after which an exponential filter keeps at most ``residual`` of its earlier state.

    Two runs of ``x_k = (1 - alpha) * x_(k-1) + alpha * input_k`` over the same inputs differ by
    ``(1 - alpha)**k`` times their initial difference, so ``k = ceil(ln residual / ln(1 - alpha))``."""
    if not 0 < residual < 1:
        raise ValueError(f"the warm-up residual must be between 0 and 1 (exclusive), got {residual}")
    return max(0, math.ceil(math.log(residual) / math.log(1.0 - alpha) - 1e-9))


@dataclass(frozen=True)
class Tolerances:
    """How far a replay's indicator values may be from the live run's within ``[from, to]``."""

    rsi_points: float
    ema_relative: float
    gap_pct_points: float


def tolerances(residual: float = WARMUP_RESIDUAL) -> Tolerances:
    """The differences :data:`WARMUP_RESIDUAL` (or ``residual``) allows, given the stated assumptions.

    - EMA: the replay seeds an average with the first close ``c``; the live one then held some
      average ``E`` of earlier prices. With prices within ``PRICE_RANGE`` (2x) of each other,
      ``|E - c| <= c`` and the average at the compared candle is at least ``c / 2``: what is left,
      ``residual * |E - c|``, is at most ``residual * 2`` of it.
    - Crossover gap ``100 * (fast / slow - 1)``: with both averages off by at most ``e`` relative
      and ``fast / slow <= 2``, it moves by at most ``100 * 2 * 2e / (1 - e)`` percentage points.
    - RSI ``= 100 * G / (G + L)`` (Wilder averages of gains and losses): averages off by ``dG``
      and ``dL`` move it by ``100 * |dG * L - G * dL| / ((G + L) * (G' + L'))``, at most
      ``100 * max(|dG|, |dL|) / (G + L)`` points. Where the replay seeds its averages, ``|dG|``
      and ``|dL|`` are at most the larger of the two runs' average one-candle move ``G + L``;
      ``k`` candles later ``residual`` of that is left, and ``G + L`` there is at least that seed
      move / ``CALM_RATIO``: at most ``100 * residual * CALM_RATIO`` points.
    """
    ema = residual * PRICE_RANGE
    return Tolerances(
        rsi_points=100.0 * residual * CALM_RATIO,
        ema_relative=ema,
        gap_pct_points=100.0 * PRICE_RANGE * 2 * ema / (1 - ema),
    )


@dataclass(frozen=True)
class Warmup:
    """How long before ``--from`` a replay starts reading, and which rule asks for that much."""

    ms: int
    reason: str


def _needs(rules: RuleSet, coin: str | None, residual: float) -> list[tuple[int, str]]:
    """(milliseconds, why) for every rule of one coin (``None``: the defaults) that needs history.

    A count of ``n`` candles gets one more: ``from - warm-up`` may fall inside a candle, which the
    replay then sees only in part (its close, all the indicators use, is still the live one)."""
    config = rules.for_coin(coin) if coin is not None else rules.spec.defaults.rules
    name = coin or ""  # no coin is named "": RuleSet.cooldown then gives the defaults' cooldowns
    interval = rules.candle_interval
    needs: list[tuple[int, str]] = []

    def candles(n: int, why: str, extra_ms: int = 0) -> None:
        needs.append(((n + 1) * interval + extra_ms, why))

    if config.rsi is not None:
        p = config.rsi.period
        # p + 1 closes seed Wilder's averages (p moves), then k smoothing steps of factor 1 - 1/p.
        n = p + 1 + smoothing_steps(1.0 / p, residual)
        candles(n, f"RSI({p}) needs {n} candles to keep under {residual:g} of its state before them")
    if config.crossover is not None:
        slow = config.crossover.slow
        if config.crossover.average == "ema":
            # The first close seeds the EMA, then k steps of factor 1 - 2/(slow + 1).
            n = max(1 + smoothing_steps(2.0 / (slow + 1), residual), slow)
            candles(n, f"EMA({slow}) needs {n} candles to keep under {residual:g} of its state before them")
        else:
            candles(slow, f"SMA({slow}) needs {slow} candles")
    # Cooldowns, twice: an alert the live run gave up to one cooldown before `from` silences the
    # range's start, so the replay must give it too, on complete history (windows, returns); and an
    # alert only the replay gives (on the partial history at its start, where the live run was still
    # cooling down from an alert before the warm-up) must have cooled down by `from`.
    if config.volatility is not None:
        vol = config.volatility
        cool = vol.cooldown or rules.cooldown(name, None)
        # baseline returns before the candle (baseline + 1 closes), and the candle's own close
        candles(vol.baseline + 2, f"volatility needs {vol.baseline} returns and 2x its cooldown", 2 * cool)
    cooldowns = [rules.cooldown(name, move.cooldown) for move in (config.drop, config.spike) if move is not None]
    if cooldowns:
        longest = max(history_ms(ms, interval) for ms in rules.window_ms)
        needs.append((longest + 2 * max(cooldowns), "the longest window and 2x the drop/spike cooldown"))
    return needs


def warmup(rules: RuleSet, residual: float = WARMUP_RESIDUAL) -> Warmup:
    """The warm-up: the longest any coin's rules need (:func:`_needs`), plus the grace period.

    Even without any rule the windows need their whole length before ``from``: the range's
    ``change`` points are the live run's only if every window holds all its ticks."""
    needs = [(max(history_ms(ms, rules.candle_interval) for ms in rules.window_ms), "the longest window")]
    needs += _needs(rules, None, residual)
    for coin in rules.spec.coins:
        needs += [(ms, f"{why} ({coin})") for ms, why in _needs(rules, coin, residual)]
    ms, reason = max(needs, key=lambda need: need[0])
    return Warmup(ms + rules.grace, reason)


def warmup_ms(rules: RuleSet, residual: float = WARMUP_RESIDUAL) -> int:
    """How much earlier than ``from`` to start so every window and indicator has its history.

    The replay's values within ``[from, to]`` then match the live run's within :func:`tolerances`
    (see :data:`WARMUP_RESIDUAL`); ``warmup`` also says which rule sets the length."""
    return warmup(rules, residual).ms


@dataclass
class Range:
    start: dict[int, int]
    end: dict[int, int]

    @property
    def total(self) -> int:
        return sum(max(0, self.end[p] - self.start[p]) for p in self.start)


CLOCK_SKEW_MS = 10 * 60 * 1000
"""How far a source's event time may run ahead of the publishing machine's clock and still be found."""


def plan_range(bootstrap: str, topic: str, read_from_ms: int) -> Range:
    """Offsets to read: from the first record published at ``read_from_ms - CLOCK_SKEW_MS`` to the end."""
    consumer = Consumer(client_config(bootstrap, {"group.id": "crypto-replay-planner", "enable.auto.commit": False}))
    try:
        meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise ValueError(f"topic {topic!r} does not exist on {bootstrap}")
        partitions = sorted(meta.partitions)
        seek = max(0, read_from_ms - CLOCK_SKEW_MS)
        starts = consumer.offsets_for_times([TopicPartition(topic, p, seek) for p in partitions], timeout=15)
        start: dict[int, int] = {}
        end: dict[int, int] = {}
        for s in starts:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, s.partition), timeout=15)
            start[s.partition] = s.offset if s.offset >= 0 else high
            end[s.partition] = high
        return Range(start, end)
    finally:
        consumer.close()


def commit_start(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Point a fresh consumer group at the range's first offsets (a group with no members may be set)."""
    consumer = Consumer(client_config(bootstrap, {"group.id": group, "enable.auto.commit": False}))
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


class Progress(OffsetsWatcher):
    """Follows the replay group's committed offsets; stops the app when every partition is done."""

    def __init__(self, bootstrap: str, group: str, topic: str, span: Range, on_done: Any, show: bool = True) -> None:
        super().__init__(bootstrap, group, topic, "replay-progress")
        self.span, self.on_done = span, on_done
        self.done = False
        self._bar = tqdm(total=span.total, unit="tick", desc="replay", disable=not show, smoothing=0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._bar.close()
        self._offsets.close()

    def committed(self) -> dict[int, int]:
        return self._offsets.read(self.topic, list(self.span.start))

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                committed = self.committed()
            except Exception as exc:
                log.debug("progress poll failed: %s", exc)
                continue
            done = sum(
                min(max(0, committed.get(p, 0) - s), self.span.end[p] - s)
                for p, s in self.span.start.items()
                if self.span.end[p] > s
            )
            self._bar.update(done - self._bar.n)
            if all(committed.get(p, -1) >= e for p, e in self.span.end.items()):
                self.done = True
                self.on_done()
                return


def replay(
    settings: ProcessorSettings,
    from_ms: int,
    to_ms: int,
    show_progress: bool = True,
    idle_timeout_s: float = 60.0,
    residual: float = WARMUP_RESIDUAL,
    **build: Any,
) -> tuple[Pipeline, Range]:
    """Run the range to its end; returns the pipeline (for its counters) and the offsets covered.

    ``build`` goes on to ``build_pipeline`` (the scorecard passes its sink and ``on_alert``).

    ``residual`` sets the warm-up (:data:`WARMUP_RESIDUAL`): smaller is closer to the live run's
    indicator values and reads more ticks before ``from_ms``."""
    if to_ms <= from_ms:
        raise ValueError(f"--to ({to_ms}) must be after --from ({from_ms})")
    rules = ruleset_from(settings)
    warm = warmup(rules, residual)
    read_from = from_ms - warm.ms
    span = plan_range(settings.kafka_bootstrap, settings.ticks_topic, read_from)
    tolerance = tolerances(residual)
    # The warm-up is read on top of the range: say how long it is, why, and what it buys.
    log.info(
        "replaying %s from %s to %s with a warm-up from %s (%s before --from, %.2fx the range's %s: %s; "
        "values within RSI %.2g points, EMA %.2g relative): reading %d records in %d partitions, group %s",
        settings.ticks_topic,
        format_time(from_ms),
        format_time(to_ms),
        format_time(read_from),
        _duration(warm.ms),
        warm.ms / (to_ms - from_ms),
        _duration(to_ms - from_ms),
        warm.reason,
        tolerance.rsi_points,
        tolerance.ema_relative,
        span.total,
        len(span.start),
        settings.consumer_group,
    )
    if settings.influx_api is InfluxApi.V2:
        ensure_bucket(settings)
    commit_start(settings.kafka_bootstrap, settings.consumer_group, settings.ticks_topic, span.start)

    def inside(value: dict[str, Any]) -> bool:
        return from_ms <= int(value["event_time"]) <= to_ms

    read_to = to_ms + rules.candle_interval + rules.grace  # the run-out: see the module docstring

    def wanted(value: dict[str, Any]) -> bool:
        return read_from <= int(value["event_time"]) <= read_to

    pipeline = build_pipeline(settings, ruleset=rules, alert_filter=inside, tick_filter=wanted, **build)
    if span.total == 0:
        log.warning("no ticks in that range")
        return pipeline, span
    progress = Progress(
        settings.kafka_bootstrap, settings.consumer_group, settings.ticks_topic, span, pipeline.app.stop, show_progress
    ).start()
    began = time.monotonic()
    try:
        pipeline.app.run(timeout=idle_timeout_s, collect=False)
    finally:
        progress.stop()
    if not progress.done:
        committed = progress.committed()
        if not all(committed.get(p, -1) >= e for p, e in span.end.items()):
            raise RuntimeError(f"replay stopped before the end of the range: committed {committed}, end {span.end}")
    log.info("replay done in %.1fs: %d points written", time.monotonic() - began, pipeline.sink.points_written)
    return pipeline, span


def _duration(ms: int) -> str:
    """``3h24m``: hours and minutes (seconds only below a minute), for the log line."""
    if ms < 60_000:
        return f"{ms / 1000:g}s"
    hours, minutes = divmod(round(ms / 60_000), 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"
