"""The offline market: deterministic for a seed and clock, with its scheduled drop and spike."""

from __future__ import annotations

from producer.simulate import MarketEvent, SimulatedMarket

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


def test_every_quote_carries_what_the_dashboards_show() -> None:
    """The 24h panels read volume_24h and change_24h_pct: the offline market must fill them."""
    market = SimulatedMarket(["bitcoin", "tether", "some-new-coin"], ["usd", "eur"], clock=lambda: START)
    for tick in market.poll().ticks:
        assert tick.market_cap and tick.market_cap > 0
        assert tick.volume_24h and tick.volume_24h > 0
        assert tick.change_24h_pct is not None
    symbols = {t.coin: t.symbol for t in market.poll().ticks}
    assert symbols["bitcoin"] == "btc" and symbols["tether"] == "usdt"


def test_change_24h_is_the_move_since_the_same_minute_yesterday() -> None:
    now = [START]
    market = SimulatedMarket(["bitcoin", "ethereum"], ["usd"], seed=3, event_every_ms=3_600_000, clock=lambda: now[0])
    prices: dict[tuple[str, int], float] = {}
    changes: dict[tuple[str, int], float] = {}
    for _ in range(26 * 60):  # 26 hours, one poll a minute
        now[0] += 60.0
        for tick in market.poll().ticks:
            prices[(tick.coin, tick.event_time)] = tick.price
            assert tick.change_24h_pct is not None
            changes[(tick.coin, tick.event_time)] = tick.change_24h_pct
    opening = {"bitcoin": 60_000.0, "ethereum": 3_000.0}
    checked = 0
    for (coin, t), price in prices.items():
        before = prices.get((coin, t - 86_400_000))
        reference = before if before is not None else opening[coin]
        if before is None:
            assert t - 86_400_000 < int(START * 1000) + 60_000, "a day-old price was remembered"
        assert abs(changes[(coin, t)] - (price / reference - 1) * 100) < 1e-4, (coin, t)
        checked += before is not None
    assert checked == 2 * 2 * 60, checked  # polls of the last two hours have one 24 h earlier


def test_a_big_move_lifts_volume() -> None:
    now = [START]
    market = SimulatedMarket(
        ["bitcoin"],
        ["usd"],
        events=[MarketEvent("bitcoin", int(START * 1000) + 60_000, -20.0, 60_000)],
        clock=lambda: now[0],
    )
    now[0] += 30
    (calm,) = market.poll().ticks
    now[0] += 120
    (after,) = market.poll().ticks
    assert after.change_24h_pct is not None and after.change_24h_pct < -19
    assert calm.volume_24h and after.volume_24h
    turnover = (calm.volume_24h / calm.market_cap, after.volume_24h / after.market_cap)  # type: ignore[operator]
    assert turnover[1] > 2.5 * turnover[0], turnover


def test_scripted_events_replace_the_schedule_and_stablecoins_hold_their_peg() -> None:
    now = [START]
    start_ms = int(START * 1000)
    market = SimulatedMarket(
        ["bitcoin", "tether"],
        ["usd"],
        events=[MarketEvent("bitcoin", start_ms + 600_000, 6.0, 300_000)],
        clock=lambda: now[0],
    )
    series: dict[str, list[float]] = {"bitcoin": [], "tether": []}
    for _ in range(70 * 3):  # 70 minutes every 20 s
        now[0] += 20
        for tick in market.poll().ticks:
            series[tick.coin].append(tick.price)
    tether = series["tether"]
    assert max(tether) / min(tether) - 1 < 0.001, "a stablecoin must not move 0.1 % in an hour"
    btc = series["bitcoin"]
    # Before the event only the calm walk (0.1 %/sqrt(min)); 5 minutes after its start, +6 %.
    assert abs(btc[26] / btc[0] - 1) < 0.05  # no round-robin drop at 3 minutes
    assert btc[46] / btc[28] - 1 > 0.05
