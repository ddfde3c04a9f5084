"""Every way CoinGecko fails, against the look-alike: one log line, counted, spaced retries, no tick lost.

Each scenario polls two coins whose quotes move at every answer (``advance_on_poll``). A failed
answer does not move the fake's market, so the retry must get exactly the quote the failed call
would have got: the published ticks prove that nothing was lost or published twice, and the
request log's arrival times prove the retry waited as promised (Retry-After, else backoff).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import pytest

from crypto_watcher.config import Plan
from crypto_watcher.retry import Backoff
from producer.coingecko import CoinGeckoClient
from producer.metrics import ERROR_KINDS
from producer.service import Poller
from producer.sources import CoinGeckoSource
from tests.support.coingecko import BadValue, FakeCoinGecko, Fault, steady
from tests.support.producer import T0, MemoryPublisher, fresh_metrics, gaps, lines, sample

BASE_S = 0.2  # backoff base: the first retry comes after 0.1-0.2 s
MINUTES = 5


@pytest.fixture
def fake() -> Iterator[FakeCoinGecko]:
    with FakeCoinGecko(plan="demo") as f:
        f.script("bitcoin", steady(T0, 50_000.0, minutes=MINUTES))
        f.script("ethereum", steady(T0, 3_000.0, minutes=MINUTES))
        f.advance_on_poll = True
        yield f
    assert not f.internal_errors


def poll(fake: FakeCoinGecko, attempts: int, timeout_s: float = 2.0) -> tuple[MemoryPublisher, Poller]:
    client = CoinGeckoClient(Plan.DEMO, fake.api_key, base_url=fake.url, timeout_s=timeout_s, metrics=fresh_metrics())
    source = CoinGeckoSource(client, ["bitcoin", "ethereum"], ["usd"])
    out = MemoryPublisher()
    poller = Poller(
        source,
        out,  # type: ignore[arg-type]
        interval_s=0.0,
        backoff=Backoff(base_s=BASE_S, max_s=1.0, rng=random.Random(3)),
        metrics=client.metrics,
    )
    poller.run(max_polls=attempts)
    return out, poller


def every_quote(fake: FakeCoinGecko) -> list[tuple[str, int]]:
    return sorted((coin, t * 1000) for coin in ("bitcoin", "ethereum") for t in range(T0, T0 + MINUTES * 60 + 1, 60))


CASES = [
    # fault, error kind, status label, the least the retry must wait (s)
    pytest.param(Fault.RATE_LIMITED_JSON(retry_after=1), "rate_limited", "429", 1.0, id="429-json-retry-after"),
    pytest.param(Fault.RATE_LIMITED_JSON(retry_after=None), "rate_limited", "429", BASE_S / 2, id="429-json-no-header"),
    pytest.param(Fault.RATE_LIMITED_HTML(), "rate_limited", "429", BASE_S / 2, id="429-cloudflare-html"),
    pytest.param(Fault.SERVER_ERROR(500), "http_5xx", "500", BASE_S / 2, id="500-json"),
    pytest.param(Fault.SERVER_ERROR(502, html=True), "http_5xx", "502", BASE_S / 2, id="502-cloudflare-html"),
    pytest.param(Fault.SERVER_ERROR(503, retry_after=1), "http_5xx", "503", 1.0, id="503-retry-after"),
    pytest.param(Fault.ACCESS_DENIED(), "http_4xx", "403", 1.0, id="403-error-1020"),
    pytest.param(Fault.RESPONSE(200, "<!DOCTYPE html><html>maintenance</html>"), "html", "200", BASE_S / 2, id="html"),
    pytest.param(Fault.SLOW(3), "timeout", "error", BASE_S / 2, id="timeout"),
    pytest.param(Fault.CONNECTION_RESET(), "connection", "error", BASE_S / 2, id="connection-reset"),
    pytest.param(Fault.TRUNCATED_JSON(), "malformed", "200", BASE_S / 2, id="truncated-json"),
    pytest.param(Fault.TRUNCATED_JSON(close_early=True), "connection", "error", BASE_S / 2, id="truncated-body"),
    pytest.param(Fault.MALFORMED_JSON(), "malformed", "200", BASE_S / 2, id="malformed-json"),
    pytest.param(Fault.RESPONSE(408, {"error": "Request Timeout"}), "http_4xx", "408", BASE_S / 2, id="408"),
]


@pytest.mark.parametrize(("fault", "kind", "status", "min_wait"), CASES)
def test_fault_is_logged_once_counted_retried_after_the_promised_wait_and_loses_nothing(
    fake: FakeCoinGecko,
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
    kind: str,
    status: str,
    min_wait: float,
) -> None:
    fake.inject(fault.on("/simple/price"))
    polls = MINUTES + 1
    with caplog.at_level(logging.INFO):
        out, poller = poll(fake, polls + 1, timeout_s=0.3)
    calls = fake.calls("/simple/price")
    assert len(calls) == polls + 1
    failed_at = next(i for i, c in enumerate(calls) if c.fault is not None)
    assert calls[failed_at + 1].time - calls[failed_at].time >= min_wait
    # one line per failure, saying what happened and when the next try is
    failures = [m for m in lines(caplog, "producer.service", logging.WARNING) if "CoinGecko call failed" in m]
    assert len(failures) == 1 and f"[{kind}]" in failures[0] and "next try in" in failures[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    m = poller.metrics
    assert sample(m, "cw_producer_api_errors_total", kind=kind) == 1
    assert sum(sample(m, "cw_producer_api_errors_total", kind=k) for k in ERROR_KINDS) == 1
    good = sample(m, "cw_producer_api_calls_total", endpoint="/simple/price", status="200")
    if status == "200":
        assert good == polls + 1  # the damaged answer was an HTTP 200 too
    else:
        assert sample(m, "cw_producer_api_calls_total", endpoint="/simple/price", status=status) == 1
        assert good == polls
    # every scripted quote published exactly once, in order
    assert sorted((t.coin, t.event_time) for t in out.ticks) == every_quote(fake)
    assert (poller.stats.polls, poller.stats.failures) == (polls, 1)


def test_repeated_failures_back_off_exponentially_and_never_spin(
    fake: FakeCoinGecko, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject(Fault.SERVER_ERROR(503), path="/simple/price", times=4)
    with caplog.at_level(logging.WARNING):
        out, poller = poll(fake, 6)
    times = [c.time for c in fake.calls("/simple/price")][:6]
    waits = gaps(times)
    for n, wait in enumerate(waits[:4], start=1):  # after the n-th failure: between c/2 and c, c = 0.2 * 2^(n-1)
        ceiling = min(1.0, BASE_S * 2 ** (n - 1))
        assert ceiling / 2 - 0.01 <= wait <= ceiling + 0.3, waits
    assert sum(waits[:4]) >= (0.1 + 0.2 + 0.4 + 0.5)
    assert len([m for m in lines(caplog, "producer.service") if "CoinGecko call failed" in m]) == 4
    assert poller.stats.failures == 4 and out.ticks  # and then it recovered


def test_failure_in_the_second_call_of_a_poll_keeps_the_first_and_retries_only_the_second(
    fake: FakeCoinGecko,
) -> None:
    client = CoinGeckoClient(Plan.DEMO, fake.api_key, base_url=fake.url, metrics=fresh_metrics())
    source = CoinGeckoSource(client, ["bitcoin", "ethereum"], ["usd"], ids_per_call=1)  # two calls a poll
    fake.advance_on_poll = False
    fake.inject(Fault.SERVER_ERROR(500, path="/simple/price"))
    fake.inject(Fault.SERVER_ERROR(500, path="/simple/price"))  # queued: the first two calls fail
    out = MemoryPublisher()
    poller = Poller(source, out, 0.0, backoff=Backoff(base_s=0.05, max_s=0.1), metrics=client.metrics)  # type: ignore[arg-type]
    poller.run(max_polls=3)
    asked = [c.query["ids"] for c in fake.calls("/simple/price")]
    assert asked == ["bitcoin", "bitcoin", "bitcoin", "ethereum"]
    assert [t.coin for t in out.ticks] == ["bitcoin", "ethereum"]
    assert (poller.stats.polls, poller.stats.failures) == (1, 2)


@pytest.mark.parametrize(
    ("bad", "reason", "shown"),
    [
        (BadValue.NEGATIVE, "bad_value", "-50000"),
        (BadValue.NULL, "bad_value", "None"),
        (BadValue.NAN_STRING, "bad_value", "'NaN'"),
        (BadValue.STRING, "bad_value", "'abc'"),
        (BadValue.INFINITY, "bad_value", "inf"),
        (BadValue.ZERO, "bad_value", "field usd (price) has bad value 0"),
        (BadValue.MISSING_PRICE, "missing_field", "field usd (price) is missing"),
        (BadValue.MISSING_LAST_UPDATED, "missing_field", "field last_updated_at is missing"),
    ],
)
def test_bad_value_inside_a_good_answer_is_skipped_named_and_counted(
    fake: FakeCoinGecko, caplog: pytest.LogCaptureFixture, bad: BadValue, reason: str, shown: str
) -> None:
    fake.inject(Fault.BAD_VALUE("bitcoin", bad))
    with caplog.at_level(logging.WARNING):
        out, poller = poll(fake, 2)
    warnings = lines(caplog, "producer.service", logging.WARNING)
    assert len(warnings) == 1 and warnings[0].startswith("skipped bitcoin") and shown in warnings[0], warnings
    assert sample(poller.metrics, "cw_producer_records_skipped_total", reason=reason) == 1
    assert [(t.coin, t.event_time) for t in out.ticks][:1] == [("ethereum", T0 * 1000)]  # the rest was published
    assert poller.stats.failures == 0 and poller.stats.skipped == 1


def test_unchanged_quotes_are_counted_not_published(fake: FakeCoinGecko) -> None:
    fake.advance_on_poll = False
    out, poller = poll(fake, 3)
    assert len(out.ticks) == 2
    assert sample(poller.metrics, "cw_producer_records_skipped_total", reason="unchanged") == 4


@pytest.mark.parametrize("ids_per_call", [250, 1], ids=["one-call-poll", "two-call-poll"])
def test_after_a_wait_longer_than_the_interval_the_next_poll_waits_a_whole_interval(
    fake: FakeCoinGecko, ids_per_call: int
) -> None:
    """A Retry-After (or a 403's long backoff) longer than the poll interval must not be followed by
    two calls back to back: CoinGecko answers the second from the same cache, so it is budget spent
    for nothing. Every quote is asked again only a whole interval after it was last answered."""
    interval = 0.6
    client = CoinGeckoClient(Plan.DEMO, fake.api_key, base_url=fake.url, metrics=fresh_metrics())
    source = CoinGeckoSource(client, ["bitcoin", "ethereum"], ["usd"], ids_per_call=ids_per_call)
    # The first call is answered (SLOW(0) only takes the first place in the queue), the second
    # fails with a Retry-After longer than the interval: the second poll (one-call polls) or the
    # second half of the first poll (two-call polls).
    fake.inject(Fault.SLOW(0), Fault.RATE_LIMITED_JSON(retry_after=1), path="/simple/price")
    out = MemoryPublisher()
    poller = Poller(source, out, interval, metrics=client.metrics)  # type: ignore[arg-type]
    poller.run(max_polls=4)
    calls = fake.calls("/simple/price")
    assert [c.fault is None for c in calls[:2]] == [True, False]
    answered: dict[str, list[float]] = {}
    for call in calls:
        if call.fault is None:
            answered.setdefault(call.query["ids"], []).append(call.time)
    assert sum(len(times) for times in answered.values()) >= 3
    for ids, times in answered.items():
        assert min(gaps(times)) >= interval - 0.05, (ids, gaps(times))


def test_a_coin_answered_with_null_every_poll_is_logged_once_then_counted_and_summarised(
    fake: FakeCoinGecko, caplog: pytest.LogCaptureFixture
) -> None:
    """CoinGecko can answer one coin with null for days: one WARNING naming it and the reason, then
    only counters, the gauge of skipped pairs, a summary line now and then, and one line when the
    coin is good again (an unknown id was already said once; a null must not log every poll)."""
    polls = 5
    fake.inject(Fault.BAD_VALUE("bitcoin", BadValue.NULL), path="/simple/price", times=polls)
    client = CoinGeckoClient(Plan.DEMO, fake.api_key, base_url=fake.url, metrics=fresh_metrics())
    source = CoinGeckoSource(client, ["bitcoin", "ethereum"], ["usd"])
    out = MemoryPublisher()
    poller = Poller(source, out, 0.1, metrics=client.metrics, skip_summary_every_s=0.2)  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG):
        poller.run(max_polls=polls)
    warnings = lines(caplog, "producer.service", logging.WARNING)
    assert len(warnings) == 1 and warnings[0].startswith("skipped bitcoin:usd") and "None" in warnings[0], warnings
    assert sample(poller.metrics, "cw_producer_records_skipped_total", reason="bad_value") == polls
    assert sample(poller.metrics, "cw_producer_skipped_pairs") == 1
    summaries = [m for m in lines(caplog, "producer.service", logging.INFO) if m.startswith("still skipping")]
    assert 1 <= len(summaries) <= 3 and all("bitcoin:usd (bad_value)" in s for s in summaries), summaries
    assert [t.coin for t in out.ticks] == ["ethereum"] * polls
    caplog.clear()
    with caplog.at_level(logging.INFO):
        poller.run(max_polls=1)  # the fault is spent: bitcoin is quoted again
    assert [m for m in lines(caplog, "producer.service", logging.INFO) if "usable again" in m] == [
        "bitcoin:usd is usable again (skipped as bad_value since the first warning)"
    ]
    assert sample(poller.metrics, "cw_producer_skipped_pairs") == 0
    assert out.ticks[-1].coin in ("bitcoin", "ethereum") and "bitcoin" in {t.coin for t in out.ticks[-2:]}
