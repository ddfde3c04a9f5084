"""Parsing /simple/price: good records become ticks, each bad one is skipped with a clear reason."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from crypto_watcher.messages import Tick
from producer.quotes import BAD_VALUE, MISSING_FIELD, UNKNOWN_ID, parse_market_chart, parse_simple_price

NOW = 1_700_000_100_000


def entry(price: Any = 50000.0, updated: Any = 1_700_000_000, **extra: Any) -> dict[str, Any]:
    data = {
        "usd": price,
        "usd_market_cap": 1e12,
        "usd_24h_vol": 3e10,
        "usd_24h_change": -1.5,
        "last_updated_at": updated,
    }
    data.update(extra)
    return data


def test_good_response_becomes_ticks_with_event_time_in_ms() -> None:
    parsed = parse_simple_price({"bitcoin": entry(), "ethereum": entry(3000.0)}, ["bitcoin", "ethereum"], ["usd"], NOW)
    assert parsed.problems == []
    assert [(t.key, t.price, t.event_time, t.fetch_time) for t in parsed.ticks] == [
        ("bitcoin:usd", 50000.0, 1_700_000_000_000, NOW),
        ("ethereum:usd", 3000.0, 1_700_000_000_000, NOW),
    ]
    assert parsed.ticks[0].market_cap == 1e12 and parsed.ticks[0].change_24h_pct == -1.5


def test_bad_values_are_skipped_naming_coin_field_and_value() -> None:
    payload = {
        "bitcoin": entry(None),
        "ethereum": entry(-3.0),
        "solana": entry("abc"),
        "ripple": entry(1e400),
        "cardano": {"last_updated_at": 1_700_000_000},
        "dogecoin": entry(updated=None),
        "tether": entry(1.0),
    }
    coins = [*payload, "nosuchcoin"]
    parsed = parse_simple_price(payload, coins, ["usd"], NOW)
    assert [t.coin for t in parsed.ticks] == ["tether"]
    problems = {p.coin: (p.reason, str(p)) for p in parsed.problems}
    assert problems["bitcoin"] == (BAD_VALUE, "skipped bitcoin:usd: field usd (price) has bad value None")
    assert problems["ethereum"] == (BAD_VALUE, "skipped ethereum:usd: field usd (price) has bad value -3.0")
    assert problems["solana"][0] == BAD_VALUE and "'abc'" in problems["solana"][1]
    assert problems["ripple"][0] == BAD_VALUE and "inf" in problems["ripple"][1]
    assert problems["cardano"] == (MISSING_FIELD, "skipped cardano:usd: field usd (price) is missing")
    assert problems["dogecoin"][0] == BAD_VALUE and "last_updated_at" in problems["dogecoin"][1]
    assert problems["nosuchcoin"][0] == UNKNOWN_ID


def test_bad_optional_figure_keeps_the_price() -> None:
    parsed = parse_simple_price({"bitcoin": entry(usd_market_cap=-1)}, ["bitcoin"], ["usd"], NOW)
    assert len(parsed.ticks) == 1 and parsed.ticks[0].market_cap is None
    assert [p.skipped for p in parsed.problems] == [False]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=5),
    max_leaves=20,
)
coin_entries = st.fixed_dictionaries(
    {},
    optional={
        "usd": json_values | st.floats(),
        "eur": json_values,
        "usd_market_cap": json_values,
        "last_updated_at": json_values | st.integers(min_value=1_230_940_800, max_value=4_102_444_799),
    },
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(json_values, st.dictionaries(st.sampled_from(["bitcoin", "ethereum", "x"]), coin_entries | json_values))
)
def test_any_json_gives_valid_ticks_or_problems(payload: Any) -> None:
    coins, vs = ["bitcoin", "ethereum"], ["usd", "eur"]
    parsed = parse_simple_price(payload, coins, vs, NOW)
    for tick in parsed.ticks:
        assert Tick.from_json(tick.to_json()) == tick  # valid by the schema
        assert math.isfinite(tick.price) and tick.price > 0
        assert tick.coin in coins and tick.vs in vs
    # every requested pair is accounted for: a tick or a problem naming it (or its coin)
    for coin in coins:
        for v in vs:
            assert any(t.coin == coin and t.vs == v for t in parsed.ticks) or any(
                p.skipped and p.coin in (coin, "*") and p.vs in (v, None) for p in parsed.problems
            ), json.dumps(payload, default=str)[:200]


# --- /coins/{id}/market_chart/range (backfill) ---------------------------------------------------

START_MS, END_MS = 1_700_000_000_000, 1_700_086_400_000
timestamps = st.integers(min_value=START_MS - 3_600_000, max_value=END_MS + 3_600_000)
chart_pairs = st.lists(st.one_of(st.tuples(timestamps, json_values | st.floats()).map(list), json_values), max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {}, optional={"prices": chart_pairs | json_values, "market_caps": chart_pairs, "total_volumes": chart_pairs}
        ),
    )
)
def test_any_market_chart_gives_valid_ticks_in_range_with_distinct_times(payload: Any) -> None:
    parsed = parse_market_chart(payload, "bitcoin", "usd", NOW, start_ms=START_MS, end_ms=END_MS)
    times = [t.event_time for t in parsed.ticks]
    assert times == sorted(set(times))  # ordered, one tick per timestamp
    for tick in parsed.ticks:
        assert Tick.from_json(tick.to_json()) == tick
        assert START_MS <= tick.event_time < END_MS and tick.source == "backfill"
        assert math.isfinite(tick.price) and tick.price > 0
    prices = payload.get("prices") if isinstance(payload, dict) else None
    good = {
        int(p[0])
        for p in (prices if isinstance(prices, list) else [])
        if isinstance(p, list)
        and len(p) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in p)
        and p[0] == int(p[0])
        and START_MS <= p[0] < END_MS
        and p[1] > 0
    }
    assert set(times) == good  # every good point in range became a tick, nothing else did


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=START_MS, max_value=END_MS - 1), st.floats(min_value=1e-9, max_value=1e9)),
        max_size=20,
    ),
    st.floats(min_value=0, max_value=1e15),
)
def test_market_caps_and_volumes_are_joined_by_timestamp(points: list[tuple[int, float]], cap: float) -> None:
    payload = {
        "prices": [[t, p] for t, p in points],
        "market_caps": [[t, cap] for t, _ in points[::2]],
        "total_volumes": [[t, cap / 2] for t, _ in points[1::2]],
    }
    parsed = parse_market_chart(payload, "bitcoin", "usd", NOW)
    caps = {t for t, _ in points[::2]}
    volumes = {t for t, _ in points[1::2]}
    last = {t: p for t, p in points}
    for tick in parsed.ticks:
        assert tick.price == last[tick.event_time]
        assert tick.market_cap == (cap if tick.event_time in caps else None)
        assert tick.volume_24h == (cap / 2 if tick.event_time in volumes else None)
