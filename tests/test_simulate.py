"""The offline market: deterministic for a seed and clock, with its scheduled drop and spike."""

from __future__ import annotations

from producer.simulate import SimulatedMarket

START = 1_700_000_000.0


def run(seed: int, polls: int, step_s: float = 10.0) -> list[list[float]]:
    now = [START]
    market = SimulatedMarket(
        ["bitcoin", "ethereum"],
        ["usd"],
        seed=seed,
        event_every_ms=180_000,
        event_size_pct=8.0,
        event_over_ms=60_000,
        clock=lambda: now[0],
    )
    out = []
    for _ in range(polls):
        now[0] += step_s
        out.append([t.price for t in market.poll().ticks])
    return out


def test_same_seed_same_prices_other_seed_other_prices() -> None:
    assert run(7, 30) == run(7, 30)
    assert run(7, 30) != run(8, 30)


def test_scheduled_drop_then_spike() -> None:
    prices = run(1, 60)  # 10 minutes in 10 s steps
    btc = [p[0] for p in prices]
    eth = [p[1] for p in prices]
    before, after = btc[16], btc[25]  # t=170 s vs t=260 s: bitcoin's drop ran from 180 s to 240 s
    assert (after - before) / before < -0.06
    e_before, e_after = eth[34], eth[43]  # ethereum's spike ran from 360 s to 420 s
    assert (e_after - e_before) / e_before > 0.06


def test_event_time_moves_forward_even_if_clock_does_not() -> None:
    market = SimulatedMarket(["bitcoin"], ["usd", "eur"], clock=lambda: START)
    a, b = market.poll().ticks, market.poll().ticks
    assert a[0].event_time < b[0].event_time
    assert {t.vs for t in a} == {"usd", "eur"} and all(t.source == "simulate" for t in a)
