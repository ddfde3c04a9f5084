"""The call budget is never exceeded, whoever makes the calls, and what it spends is logged."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from producer.backfill import Checkpoint, run_backfill
from producer.coingecko import CoinGeckoClient, CoinGeckoError
from producer.ratelimit import RateLimiter, Stopped, UsageLog
from producer.resolve import CoinsList
from producer.service import Poller
from producer.sources import CoinGeckoSource
from tests.support.coingecko import FakeCoinGecko, Fault, steady
from tests.support.producer import T0, MemoryPublisher, fresh_metrics, gaps, lines, max_in_window


class FakeTime:
    """A clock that only moves when somebody sleeps (or a call 'takes' time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_sliding_window_never_exceeds_120_per_minute_with_fake_clock() -> None:
    t = FakeTime()
    limiter = RateLimiter(120, clock=t.clock, sleep=t.sleep)
    sent = []
    for _ in range(500):
        with limiter.call():
            sent.append(t.now)
            t.now += 0.05  # the call takes 50 ms
    assert max_in_window(sent, 60.0) == 120
    # as fast as the budget allows: 4 full windows of waiting for 500 calls
    assert 4 * 60 <= sent[-1] - sent[0] <= 4 * 60 + 500 * 0.05 + 1


def test_fractional_and_sub_one_budgets() -> None:
    t = FakeTime()
    limiter = RateLimiter(10.9, clock=t.clock, sleep=t.sleep)
    assert limiter.max_calls == 10  # never rounds up
    slow = RateLimiter(0.5, clock=t.clock, sleep=t.sleep)  # one call every two minutes
    sent = []
    for _ in range(3):
        with slow.call():
            sent.append(t.now)
    assert gaps(sent) == [120.0, 120.0]
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_hold_keeps_every_caller_away_until_retry_after() -> None:
    t = FakeTime()
    limiter = RateLimiter(100, clock=t.clock, sleep=t.sleep)
    with limiter.call():
        pass
    limiter.hold(30)
    start = t.now
    with limiter.call():
        assert t.now - start == pytest.approx(30)


def test_stop_ends_a_wait_at_once() -> None:
    stop = threading.Event()
    limiter = RateLimiter(1, stop=stop)
    limiter.acquire()
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(Stopped):
        limiter.acquire()  # would wait 60 s


def test_burst_of_every_kind_of_call_stays_in_budget_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Coin list, top-N pages, quote polls and backfill chunks share one 10-calls-per-second budget.

    (A one-second window stands in for CoinGecko's minute so the test takes seconds, not minutes;
    the limiter is the same code with another period.)
    """
    caplog.set_level(logging.INFO)
    with FakeCoinGecko() as fake:
        for i in range(300):
            fake.script(f"coin-{i:04d}", steady(T0, 1.0 + i, minutes=600, step_seconds=3600), market_cap=1e6 * (i + 1))
        fake.set_clock(T0 + 30 * 86_400 - 1)
        limiter = RateLimiter(10, period_s=1.0)
        usage = UsageLog(limiter, every_s=1.0)
        client = CoinGeckoClient(base_url=fake.url, limiter=limiter, usage=usage, metrics=fresh_metrics())
        CoinsList(client, tmp_path).load()
        top = CoinGeckoSource(client, [], ["usd"], top_n=300)
        Poller(top, MemoryPublisher(), 0.0, metrics=fresh_metrics()).run(max_polls=3)  # 2 pages + 2 calls, x3
        run_backfill(
            client,
            MemoryPublisher(),  # type: ignore[arg-type]
            [f"coin-{i:04d}" for i in range(10)],
            ["usd"],
            T0,
            T0 + 20 * 86_400,
            "hourly",
            Checkpoint(tmp_path / "cp.json"),
            progress=False,
            metrics=fresh_metrics(),
        )
        times = [c.time for c in fake.calls()]
    assert len(times) == 1 + 2 + 3 * 2 + 10
    assert max_in_window(times, 1.0) <= 10
    assert limiter.waited_s > 0  # the budget really was the bottleneck
    spent = lines(caplog, "producer.ratelimit")
    assert spent and all("budget 10/1s" in line and "rate-limited (429)" in line for line in spent)


def test_budget_matches_a_server_enforcing_it_no_429_and_the_next_call_waits() -> None:
    with FakeCoinGecko(rate_limit_per_minute=12) as fake:
        stop = threading.Event()
        client = CoinGeckoClient(base_url=fake.url, limiter=RateLimiter(12, stop=stop), metrics=fresh_metrics())
        for _ in range(12):
            client.get("ping")
        outcome: list[BaseException] = []

        def thirteenth() -> None:
            try:
                client.get("ping")
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=thirteenth)
        worker.start()
        worker.join(0.5)
        assert worker.is_alive()  # waiting for the window, not calling
        stop.set()
        worker.join(2)
        assert outcome and isinstance(outcome[0], Stopped)
        assert [c.status for c in fake.calls()] == [200] * 12


def test_retry_after_holds_the_shared_limiter_for_other_endpoints() -> None:
    with FakeCoinGecko() as fake:
        client = CoinGeckoClient(base_url=fake.url, limiter=RateLimiter(100), metrics=fresh_metrics())
        fake.inject(Fault.RATE_LIMITED_JSON(retry_after=1, path="/simple/price"))
        with pytest.raises(CoinGeckoError) as info:
            client.get("simple/price", {"ids": "bitcoin", "vs_currencies": "usd"})
        assert info.value.kind == "rate_limited" and info.value.retry_after == 1
        client.get("ping")  # another endpoint still waits for the server's Retry-After
        first, second = fake.calls()
    assert second.time - first.time >= 0.95
