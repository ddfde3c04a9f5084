"""The CoinGecko look-alike answers like CoinGecko: spec-shaped bodies, keys, clock, faults.

Every other producer test trusts this server, so it is held to CoinGecko's official OpenAPI files
and to the error catalogue in the shared README, over a real socket with ``requests``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import urllib3

from tests.support.coingecko import (
    DAY,
    BadValue,
    FakeCoinGecko,
    Fault,
    FaultKind,
    KnownCoin,
    PlanName,
    PricePoint,
    steady,
    steady_then_fall,
    steady_then_move,
)
from tests.support.openapi import SpecPlan, response_example, spec_dir, validate_response
from tests.support.paths import ROOT as REPO_ROOT

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
UA = {"User-Agent": "crypto-watcher-tests/1"}
ALL_FIELDS = {
    "include_market_cap": "true",
    "include_24hr_vol": "true",
    "include_24hr_change": "true",
    "include_last_updated_at": "true",
}
BTC_PATH = steady_then_fall(T0, 50_000.0, fall_pct=7, steady_minutes=15, fall_minutes=10)
ETH_PATH = steady(T0, 3_000.25, minutes=25)


def needs_spec(test: Any) -> Any:
    """The specs ship in docs/coingecko; a missing copy is a broken checkout, so fail, never skip."""
    assert spec_dir() is not None, "CoinGecko OpenAPI files missing from docs/coingecko (or CW_COINGECKO_SPEC_DIR)"
    return test


def _start(plan: PlanName = "public", **kwargs: Any) -> FakeCoinGecko:
    fake = FakeCoinGecko(plan=plan, **kwargs).start()
    fake.script("bitcoin", BTC_PATH)
    fake.script("ethereum", ETH_PATH)
    return fake


@pytest.fixture
def fake() -> Iterator[FakeCoinGecko]:
    f = _start()
    try:
        yield f
    finally:
        f.stop()
    assert not f.internal_errors, f.internal_errors


@pytest.fixture(params=["demo", "pro"])
def keyed(request: pytest.FixtureRequest) -> Iterator[FakeCoinGecko]:
    """A fake on each keyed plan, so spec checks cover both official files."""
    f = _start(request.param)
    try:
        yield f
    finally:
        f.stop()
    assert not f.internal_errors, f.internal_errors


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers.update(UA)
        yield session


def get(http: requests.Session, fake: FakeCoinGecko, path: str, **params: Any) -> requests.Response:
    return http.get(fake.url + path, params=params, headers=fake.auth_headers(), timeout=5)


def price(
    http: requests.Session, fake: FakeCoinGecko, ids: str = "bitcoin,ethereum", **extra: Any
) -> requests.Response:
    return get(http, fake, "/simple/price", ids=ids, vs_currencies="usd", **extra)


def spec_plan(fake: FakeCoinGecko) -> SpecPlan:
    return "pro" if fake.plan == "pro" else "demo"


# ---------------------------------------------------------------------------------------------
# The server itself
# ---------------------------------------------------------------------------------------------


def test_url_is_loopback_with_api_prefix_and_server_really_stops() -> None:
    with FakeCoinGecko() as fake:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v3", fake.url)
        url = fake.url
        assert requests.get(url + "/ping", headers=UA, timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/ping", headers=UA, timeout=2)


def test_stop_does_not_wait_for_a_slow_answer_in_flight() -> None:
    fake = FakeCoinGecko().start()
    fake.inject(Fault.SLOW(30))
    with pytest.raises(requests.Timeout):
        requests.get(fake.url + "/ping", headers=UA, timeout=0.2)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 2.0


def test_unknown_path_and_path_outside_api_v3_are_404(fake: FakeCoinGecko, http: requests.Session) -> None:
    for url in (fake.url + "/nope", fake.root_url + "/simple/price"):
        r = http.get(url, timeout=5)
        assert r.status_code == 404
        assert r.json()["error"].startswith("Incorrect path")


# ---------------------------------------------------------------------------------------------
# Bodies match the official OpenAPI specs
# ---------------------------------------------------------------------------------------------


@needs_spec
@pytest.mark.parametrize(
    ("path", "plan"),
    [
        ("/ping", "demo"),
        ("/simple/price", "demo"),
        ("/coins/markets", "demo"),
        ("/coins/list", "demo"),
        ("/coins/{id}/market_chart/range", "demo"),
        ("/simple/price", "pro"),
        ("/key", "pro"),
    ],
)
def test_spec_examples_pass_the_converted_schemas(path: str, plan: SpecPlan) -> None:
    """Guards the OpenAPI-to-JSON-Schema conversion: CoinGecko's own answers must validate."""
    validate_response(response_example(path, plan=plan), path, plan=plan)


@needs_spec
def test_converted_schemas_reject_wrong_types_and_unknown_keys() -> None:
    import jsonschema  # type: ignore[import-untyped]

    with pytest.raises(jsonschema.ValidationError):
        validate_response({"bitcoin": {"usd": "abc"}}, "/simple/price")
    with pytest.raises(jsonschema.ValidationError):
        validate_response({"bitcoin": {"usd": 1, "usd_24hr_vol": 2}}, "/simple/price")
    with pytest.raises(jsonschema.ValidationError):
        validate_response({"prices": [[1, 2]]}, "/coins/{id}/market_chart/range")
    row = dict(response_example("/coins/markets")[0], current_price=None)
    validate_response([row], "/coins/markets")  # nullable in the spec, so null passes


@needs_spec
def test_ping_matches_spec(keyed: FakeCoinGecko, http: requests.Session) -> None:
    r = get(http, keyed, "/ping")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    validate_response(r.json(), "/ping", plan=spec_plan(keyed))


@needs_spec
def test_simple_price_with_every_field_matches_spec(keyed: FakeCoinGecko, http: requests.Session) -> None:
    r = price(http, keyed, **ALL_FIELDS)
    assert r.status_code == 200
    body = r.json()
    validate_response(body, "/simple/price", plan=spec_plan(keyed))
    assert list(body["bitcoin"]) == [
        "usd",
        "usd_market_cap",
        "usd_24h_vol",
        "usd_24h_change",
        "last_updated_at",
    ]


@needs_spec
def test_coins_markets_with_every_option_matches_spec(keyed: FakeCoinGecko, http: requests.Session) -> None:
    keyed.set_clock(T0 + 20 * 60)
    r = get(
        http,
        keyed,
        "/coins/markets",
        vs_currency="usd",
        sparkline="true",
        price_change_percentage="1h,24h,7d,14d,30d,200d,1y",
        include_rehypothecated="true",
    )
    assert r.status_code == 200
    validate_response(r.json(), "/coins/markets", plan=spec_plan(keyed))
    assert [row["id"] for row in r.json()] == ["bitcoin", "ethereum"]


@needs_spec
def test_coins_list_with_platforms_matches_spec(keyed: FakeCoinGecko, http: requests.Session) -> None:
    for params in ({}, {"include_platform": "true"}):
        r = get(http, keyed, "/coins/list", **params)
        assert r.status_code == 200
        validate_response(r.json(), "/coins/list", plan=spec_plan(keyed))
    assert all("platforms" in row for row in r.json())


@needs_spec
def test_market_chart_range_matches_spec(keyed: FakeCoinGecko, http: requests.Session) -> None:
    keyed.set_clock(T0 + 30 * 60)
    r = get(http, keyed, "/coins/bitcoin/market_chart/range", vs_currency="usd", **{"from": T0, "to": T0 + 3600})
    assert r.status_code == 200
    validate_response(r.json(), "/coins/{id}/market_chart/range", plan=spec_plan(keyed))


@needs_spec
def test_key_matches_pro_spec_and_counts_calls(http: requests.Session) -> None:
    with _start("pro") as fake:
        get(http, fake, "/ping")
        r = get(http, fake, "/key")
        assert r.status_code == 200
        validate_response(r.json(), "/key", plan="pro")
        assert r.json()["current_total_monthly_calls"] == 1


# ---------------------------------------------------------------------------------------------
# /simple/price semantics
# ---------------------------------------------------------------------------------------------


def test_simple_price_gives_scripted_values_with_seconds_timestamps(
    fake: FakeCoinGecko, http: requests.Session
) -> None:
    r = price(http, fake, **ALL_FIELDS)
    btc = r.json()["bitcoin"]
    quote = fake.quote("bitcoin")
    assert quote is not None
    assert btc == {
        "usd": 50_000,
        "usd_market_cap": quote.market_cap,
        "usd_24h_vol": quote.volume,
        "usd_24h_change": 0,
        "last_updated_at": T0,
    }
    assert isinstance(btc["last_updated_at"], int) and btc["last_updated_at"] < 10**10  # seconds
    assert b'"usd":50000,' in r.content  # whole prices come without ".0", as CoinGecko sends them
    assert r.json()["ethereum"]["usd"] == 3_000.25


def test_simple_price_without_include_flags_gives_only_the_price(fake: FakeCoinGecko, http: requests.Session) -> None:
    assert price(http, fake).json() == {"bitcoin": {"usd": 50_000}, "ethereum": {"usd": 3_000.25}}


def test_unknown_ids_are_absent_and_unpriced_listed_coins_are_empty(
    fake: FakeCoinGecko, http: requests.Session
) -> None:
    body = price(http, fake, ids="bitcoin,not-a-coin,tether").json()
    assert set(body) == {"bitcoin", "tether"}
    assert body["tether"] == {}  # listed, but nothing scripted in usd
    assert price(http, fake, ids="not-a-coin").json() == {}


def test_simple_price_several_currencies(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.script("bitcoin", [(T0, 46_000.0)], vs="eur")
    body = get(
        http, fake, "/simple/price", ids="bitcoin", vs_currencies="usd,eur,jpy", include_last_updated_at="true"
    ).json()
    assert body == {"bitcoin": {"usd": 50_000, "eur": 46_000, "last_updated_at": T0}}


def test_precision_rounds_the_price(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.script("ethereum", [(T0, 3_000.123456789)])
    assert price(http, fake, "ethereum", precision="2").json()["ethereum"]["usd"] == 3_000.12
    assert price(http, fake, "ethereum", precision="0").json()["ethereum"]["usd"] == 3_000
    full = price(http, fake, "ethereum", precision="full").json()["ethereum"]["usd"]
    assert full == 3_000.123456789


@pytest.mark.parametrize(
    ("path", "params", "missing"),
    [
        ("/simple/price", {"ids": "bitcoin"}, "vs_currencies"),
        ("/simple/price", {"vs_currencies": "usd"}, "ids"),
        ("/coins/markets", {}, "vs_currency"),
        ("/coins/bitcoin/market_chart/range", {"vs_currency": "usd", "to": T0}, "from"),
        ("/coins/bitcoin/market_chart/range", {"from": T0, "to": T0}, "vs_currency"),
    ],
)
def test_missing_required_parameter_is_400(
    fake: FakeCoinGecko, http: requests.Session, path: str, params: dict[str, Any], missing: str
) -> None:
    r = get(http, fake, path, **params)
    assert r.status_code == 400
    assert r.json() == {"error": f"Missing parameter {missing}"}


def test_symbol_and_name_lookup_resolve_ambiguity_like_coingecko(fake: FakeCoinGecko, http: requests.Session) -> None:
    def ask(**params: str) -> set[str]:
        return set(get(http, fake, "/simple/price", vs_currencies="usd", **params).json())

    assert ask(symbols="btc") == {"bitcoin"}  # "top" token by market cap
    assert ask(symbols="btc", include_tokens="all") == {"bitcoin", "batcat", "osmosis-allbtc"}
    assert ask(names="Ethereum") == {"ethereum"}
    assert ask(ids="ethereum", symbols="btc") == {"ethereum"}  # ids win over symbols


# ---------------------------------------------------------------------------------------------
# /coins/markets and /coins/list
# ---------------------------------------------------------------------------------------------


def test_markets_rank_order_page_and_iso_time(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.script("solana", [(T0, 150.0)])
    rows = get(http, fake, "/coins/markets", vs_currency="usd").json()
    assert [r["id"] for r in rows] == ["bitcoin", "ethereum", "solana"]
    assert [r["market_cap_rank"] for r in rows] == [1, 2, 3]
    assert datetime.fromisoformat(rows[0]["last_updated"]) == datetime.fromtimestamp(T0, UTC)
    assert rows[0]["last_updated"].endswith("Z")
    page2 = get(http, fake, "/coins/markets", vs_currency="usd", per_page=1, page=2).json()
    assert [r["id"] for r in page2] == ["ethereum"]
    only = get(http, fake, "/coins/markets", vs_currency="usd", ids="solana,nope").json()
    assert [(r["id"], r["market_cap_rank"]) for r in only] == [("solana", 3)]
    by_id = get(http, fake, "/coins/markets", vs_currency="usd", order="id_asc").json()
    assert [r["id"] for r in by_id] == ["bitcoin", "ethereum", "solana"]


def test_markets_caps_per_page_at_250_and_rejects_unknown_currency(fake: FakeCoinGecko, http: requests.Session) -> None:
    for i in range(260):
        fake.script(f"coin-{i:03d}", [(T0, 1.0 + i)])
    assert len(get(http, fake, "/coins/markets", vs_currency="usd", per_page=1000).json()) == 250
    assert get(http, fake, "/coins/markets", vs_currency="eur").json() == []
    r = get(http, fake, "/coins/markets", vs_currency="doubloons")
    assert (r.status_code, r.json()) == (400, {"error": "invalid vs_currency"})


def test_markets_24h_figures_follow_the_script(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.set_clock(BTC_PATH[-1].time)
    (btc,) = get(http, fake, "/coins/markets", vs_currency="usd", ids="bitcoin").json()
    assert btc["current_price"] == pytest.approx(46_500.0)
    assert btc["high_24h"] == 50_000 and btc["low_24h"] == pytest.approx(46_500.0)
    assert btc["price_change_percentage_24h"] == pytest.approx(-7.0)
    assert btc["ath"] == 50_000


def test_coins_list_has_ambiguous_symbols_and_scripted_coins(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.script("fakecoin", [(T0, 2.0)], symbol="btc", name="Fake Bitcoin")
    fake.register_coin(KnownCoin("other-eth", "eth", "Other Ether"))
    rows = get(http, fake, "/coins/list").json()
    by_symbol: dict[str, list[str]] = {}
    for row in rows:
        assert set(row) == {"id", "symbol", "name"}
        by_symbol.setdefault(row["symbol"], []).append(row["id"])
    assert {"bitcoin", "batcat", "osmosis-allbtc", "fakecoin"} <= set(by_symbol["btc"])
    assert {"ethereum", "ethereum-wormhole", "other-eth"} <= set(by_symbol["eth"])
    assert get(http, fake, "/coins/list", status="inactive").json() == []


# ---------------------------------------------------------------------------------------------
# /coins/{id}/market_chart/range
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clock", "start", "end", "step"),
    [
        (T0 + 30 * 60, T0, T0 + 3600, 300),  # within the most recent day: 5-minutely
        (T0 + 3 * DAY, T0, T0 + DAY, 3600),  # one day, but not the latest: hourly
        (T0 + 40 * DAY, T0, T0 + 30 * DAY, 3600),  # 2-90 days: hourly
        (T0 + 300 * DAY, T0, T0 + 200 * DAY, DAY),  # > 90 days: daily
    ],
)
def test_market_chart_range_granularity_and_ms_pairs(
    fake: FakeCoinGecko, http: requests.Session, clock: int, start: int, end: int, step: int
) -> None:
    fake.script("bitcoin", [PricePoint(T0, 100.0), PricePoint(T0 + 1800, 90.0), PricePoint(T0 + 2 * DAY, 80.0)])
    fake.set_clock(clock)
    body = get(http, fake, "/coins/bitcoin/market_chart/range", vs_currency="usd", **{"from": start, "to": end}).json()
    assert set(body) == {"prices", "market_caps", "total_volumes"}
    times = [ms for ms, _ in body["prices"]]
    assert times and times == [ms for ms, _ in body["market_caps"]]
    assert all(isinstance(ms, int) and ms % 1000 == 0 for ms in times)  # milliseconds
    assert {b - a for a, b in itertools.pairwise(times)} == {step * 1000}
    assert start * 1000 <= times[0] and times[-1] <= min(end, clock) * 1000
    for ms, value in body["prices"]:
        expected = fake.quote("bitcoin", at=ms // 1000)
        assert expected is not None and value == expected.price


def test_market_chart_range_errors(fake: FakeCoinGecko, http: requests.Session) -> None:
    r = get(http, fake, "/coins/no-such-coin/market_chart/range", vs_currency="usd", **{"from": T0, "to": T0 + 60})
    assert (r.status_code, r.json()) == (404, {"error": "coin not found"})
    fake.set_clock(T0 + 400 * DAY)
    r = get(http, fake, "/coins/bitcoin/market_chart/range", vs_currency="usd", **{"from": T0, "to": T0 + DAY})
    assert r.status_code == 401  # keyless/Demo history stops at 365 days
    assert r.json()["error"]["status"]["error_code"] == 10012


def test_pro_market_chart_takes_iso_dates_and_interval(http: requests.Session) -> None:
    with _start("pro") as fake:
        fake.set_clock(T0 + 400 * DAY)
        body = get(
            http,
            fake,
            "/coins/bitcoin/market_chart/range",
            vs_currency="usd",
            interval="daily",
            **{"from": "2026-01-01", "to": "2026-01-03"},
        ).json()
        assert [ms for ms, _ in body["prices"]] == [T0 * 1000, (T0 + DAY) * 1000, (T0 + 2 * DAY) * 1000]


# ---------------------------------------------------------------------------------------------
# Plans, keys and Cloudflare
# ---------------------------------------------------------------------------------------------

DEMO_KEY, PRO_KEY = "CG-demo-valid", "CG-pro-valid"


@pytest.mark.parametrize(
    ("plan", "headers", "query", "status", "code"),
    [
        ("public", {}, {}, 200, None),
        ("public", {"x-cg-demo-api-key": "CG-unknown"}, {}, 400, 10010),
        ("public", {"x-cg-pro-api-key": PRO_KEY}, {}, 400, 10010),
        ("demo", {}, {}, 401, 10002),
        ("demo", {"x-cg-demo-api-key": DEMO_KEY}, {}, 200, None),
        ("demo", {}, {"x_cg_demo_api_key": DEMO_KEY}, 200, None),
        ("demo", {"x-cg-demo-api-key": "CG-typo"}, {}, 400, 10010),
        ("demo", {"x-cg-pro-api-key": PRO_KEY}, {}, 400, 10010),
        ("demo", {}, {"x_cg_pro_api_key": PRO_KEY}, 400, 10010),
        ("pro", {}, {}, 401, 10002),
        ("pro", {"x-cg-pro-api-key": PRO_KEY}, {}, 200, None),
        ("pro", {}, {"x_cg_pro_api_key": PRO_KEY}, 200, None),
        ("pro", {"x-cg-demo-api-key": DEMO_KEY}, {}, 400, 10011),
        ("pro", {"x-cg-pro-api-key": "CG-typo"}, {}, 400, 10011),
    ],
)
def test_plans_and_keys(
    http: requests.Session,
    plan: PlanName,
    headers: dict[str, str],
    query: dict[str, str],
    status: int,
    code: int | None,
) -> None:
    key = {"public": None, "demo": DEMO_KEY, "pro": PRO_KEY}[plan]
    with FakeCoinGecko(plan=plan, api_key=key) as fake:
        r = http.get(fake.url + "/ping", headers=headers, params=query, timeout=5)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    if code is None:
        assert r.json() == {"gecko_says": "(V3) To the Moon!"}
    else:
        error = r.json()["status"]
        assert error["error_code"] == code
        assert isinstance(error["error_message"], str) and error["error_message"]
        if code in (10010, 10011):
            assert "root URL" in error["error_message"]


def test_unknown_key_can_answer_401_instead(http: requests.Session) -> None:
    with FakeCoinGecko("demo", DEMO_KEY, unknown_key="unauthorized") as fake:
        r = http.get(fake.url + "/ping", headers={"x-cg-demo-api-key": "CG-typo"}, timeout=5)
    assert (r.status_code, r.json()["status"]["error_code"]) == (401, 10002)


def test_key_endpoint_is_pro_only(fake: FakeCoinGecko, http: requests.Session) -> None:
    r = get(http, fake, "/key")
    assert (r.status_code, r.json()["status"]["error_code"]) == (401, 10005)


def test_missing_user_agent_gets_cloudflare_1020_page(fake: FakeCoinGecko) -> None:
    fake.inject(Fault.SERVER_ERROR(500))
    no_ua = {"User-Agent": urllib3.util.SKIP_HEADER}  # requests/urllib3 would add one otherwise
    r = requests.get(fake.url + "/ping", headers=no_ua, timeout=5)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    assert "Error 1020" in r.text
    assert "Access denied | api.coingecko.com used Cloudflare to restrict access" in r.text
    assert "user-agent" not in fake.last_call().headers
    assert len(fake.pending_faults) == 1  # Cloudflare answered; the origin's fault is still queued


# ---------------------------------------------------------------------------------------------
# Scripted market and clock
# ---------------------------------------------------------------------------------------------


def test_clock_starts_at_the_script_and_picks_latest_point_not_after_it(
    fake: FakeCoinGecko, http: requests.Session
) -> None:
    assert fake.clock == T0
    fake.set_clock(T0 + 17 * 60 + 59)  # between the points at 17 and 18 minutes
    btc = price(http, fake, "bitcoin", include_last_updated_at="true").json()["bitcoin"]
    assert btc["last_updated_at"] == T0 + 17 * 60
    assert btc["usd"] == pytest.approx(BTC_PATH[17].price)
    fake.script("solana", [(T0 + DAY, 150.0)])  # starts in the future
    assert price(http, fake, "solana").json() == {"solana": {}}


def test_advance_on_poll_shows_every_scripted_quote_once_in_order(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.advance_on_poll = True
    seen = []
    for _ in range(len(BTC_PATH) + 2):
        btc = price(http, fake, "bitcoin", include_last_updated_at="true").json()["bitcoin"]
        seen.append((btc["last_updated_at"], btc["usd"]))
    assert seen[: len(BTC_PATH)] == [(p.time, pytest.approx(p.price)) for p in BTC_PATH]
    assert seen[-2:] == [seen[len(BTC_PATH) - 1]] * 2  # script over: the last quote repeats
    assert seen[-1][1] == pytest.approx(50_000.0 * 0.93)


def test_advance_on_poll_counts_markets_but_not_other_endpoints_or_failures(
    fake: FakeCoinGecko, http: requests.Session
) -> None:
    fake.advance_on_poll = True
    get(http, fake, "/ping")
    get(http, fake, "/coins/list")
    assert fake.clock == T0
    get(http, fake, "/coins/markets", vs_currency="usd")
    assert fake.clock == T0 + 60
    fake.inject(Fault.RATE_LIMITED_JSON(), Fault.TRUNCATED_JSON(), Fault.SLOW(0.05))
    assert price(http, fake).status_code == 429
    assert price(http, fake).status_code == 200  # truncated: delivered nothing usable
    price(http, fake)  # slow: the client may well have given up on it
    assert fake.clock == T0 + 60
    fake.inject(Fault.BAD_VALUE("bitcoin", BadValue.NULL))
    price(http, fake)  # ethereum's quote still arrived, so the market moves on
    assert fake.clock == T0 + 120


def test_steady_then_fall_is_exactly_the_scenario() -> None:
    path = steady_then_fall(T0, 50_000.0, fall_pct=7, steady_minutes=15, fall_minutes=10, hold_minutes=5)
    times = [p.time for p in path]
    assert times == list(range(T0, T0 + 30 * 60 + 1, 60))
    assert {p.price for p in path[:16]} == {50_000.0}
    fall_end = path[25]
    assert fall_end.time - path[15].time == 10 * 60
    assert fall_end.price == pytest.approx(46_500.0, abs=1e-9)
    assert all(a.price > b.price for a, b in itertools.pairwise(path[15:26]))
    assert {p.price for p in path[25:]} == {fall_end.price}
    spike = steady_then_move(T0, 100.0, change_pct=12, steady_minutes=1, move_minutes=2)
    assert [p.price for p in spike] == pytest.approx([100.0, 100.0, 106.0, 112.0])


def test_script_rejects_prices_real_market_data_cannot_have() -> None:
    fake = FakeCoinGecko()
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            fake.script("bitcoin", [(T0, bad)])


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


def _json_status(code: int) -> Callable[[requests.Response], bool]:
    def check(r: requests.Response) -> bool:
        is_json = r.headers["content-type"].startswith("application/json")
        return is_json and r.json()["status"]["error_code"] == code

    return check


def _html(marker: str) -> Callable[[requests.Response], bool]:
    def check(r: requests.Response) -> bool:
        return r.headers["content-type"].startswith("text/html") and marker in r.text

    return check


@pytest.mark.parametrize(
    ("fault", "status", "retry_after", "check"),
    [
        (Fault.RATE_LIMITED_JSON(retry_after=2), 429, "2", _json_status(429)),
        (Fault.RATE_LIMITED_JSON(retry_after=None), 429, None, _json_status(429)),
        (Fault.RATE_LIMITED_HTML(), 429, None, _html("rate limited")),
        (Fault.ACCESS_DENIED(), 403, None, _html("Error 1020")),
        (Fault.SERVER_ERROR(500), 500, None, _json_status(500)),
        (Fault.SERVER_ERROR(500, html=True), 500, None, _html("Error code 500")),
        (Fault.SERVER_ERROR(502, html=True), 502, None, _html("Bad gateway")),
        (Fault.SERVER_ERROR(503), 503, None, _json_status(503)),
        (Fault.SERVER_ERROR(503, html=True, retry_after=30), 503, "30", _html("Error code 503")),
        (
            Fault.RESPONSE(401, {"error": {"status": {"error_code": 10002, "error_message": "x"}}}),
            401,
            None,
            lambda r: r.json()["error"]["status"]["error_code"] == 10002,
        ),
        (Fault.RESPONSE(408, "<html>timeout</html>"), 408, None, _html("timeout")),
    ],
    ids=lambda v: v.kind.value if isinstance(v, Fault) else None,
)
def test_error_faults_answer_once_then_normal_service_resumes(
    fake: FakeCoinGecko,
    http: requests.Session,
    fault: Fault,
    status: int,
    retry_after: str | None,
    check: Callable[[requests.Response], bool],
) -> None:
    fake.inject(fault)
    r = price(http, fake)
    assert r.status_code == status
    assert r.headers.get("retry-after") == retry_after
    assert check(r), r.text[:300]
    if fault.kind is FaultKind.RATE_LIMITED_JSON:
        assert r.json()["status"]["error_message"].startswith("You've exceeded the Rate Limit.")
    assert fake.last_call().fault is fault.kind
    assert price(http, fake).status_code == 200


def test_faults_are_used_in_order_one_per_request(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.inject(Fault.SERVER_ERROR(500), Fault.RATE_LIMITED_JSON(), Fault.SERVER_ERROR(503))
    assert [price(http, fake).status_code for _ in range(4)] == [500, 429, 503, 200]
    assert fake.pending_faults == []


def test_faults_can_target_a_path_prefix(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.inject(Fault.SERVER_ERROR(502), path="/simple/price", times=2)
    fake.inject(Fault.SERVER_ERROR(500, path="/coins"))
    assert get(http, fake, "/ping").status_code == 200
    assert get(http, fake, "/coins/list").status_code == 500
    assert get(http, fake, "/coins/list").status_code == 200
    assert [price(http, fake).status_code for _ in range(3)] == [502, 502, 200]


def test_slow_answer_trips_client_timeout_then_still_arrives_for_patient_clients(
    fake: FakeCoinGecko, http: requests.Session
) -> None:
    fake.inject(Fault.SLOW(1.0))
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        http.get(fake.url + "/ping", timeout=0.2)
    assert time.monotonic() - started < 0.9
    fake.inject(Fault.SLOW(0.3))
    started = time.monotonic()
    assert price(http, fake).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_connection_reset_without_answer(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.inject(Fault.CONNECTION_RESET())
    with pytest.raises(requests.ConnectionError) as caught:
        price(http, fake)
    assert "reset" in str(caught.value).lower() or "aborted" in str(caught.value).lower()
    call = fake.last_call()
    assert (call.status, call.fault) == (None, FaultKind.CONNECTION_RESET)
    assert price(http, fake).status_code == 200


def test_truncated_json_is_a_prefix_of_the_real_body(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.inject(Fault.TRUNCATED_JSON(cut=0.6))
    cut = price(http, fake, **ALL_FIELDS)
    whole = price(http, fake, **ALL_FIELDS)
    assert cut.status_code == 200 and cut.headers["content-type"].startswith("application/json")
    assert whole.content.startswith(cut.content) and len(cut.content) < len(whole.content)
    with pytest.raises(ValueError):
        cut.json()


def test_truncated_json_closing_early_is_an_incomplete_read(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.inject(Fault.TRUNCATED_JSON(close_early=True))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        price(http, fake)
    assert price(http, fake).status_code == 200


def test_malformed_json(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.inject(Fault.MALFORMED_JSON(), Fault.MALFORMED_JSON(b"{'bitcoin': NaN"))
    for _ in range(2):
        r = price(http, fake)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        with pytest.raises(ValueError):
            json.loads(r.text)


@pytest.mark.parametrize(
    ("bad", "check"),
    [
        (BadValue.NULL, lambda e, raw: e["usd"] is None),
        (BadValue.NEGATIVE, lambda e, raw: e["usd"] == -50_000),
        (BadValue.ZERO, lambda e, raw: e["usd"] == 0),
        (BadValue.NAN_STRING, lambda e, raw: e["usd"] == "NaN"),
        (BadValue.STRING, lambda e, raw: e["usd"] == "abc"),
        (BadValue.INFINITY, lambda e, raw: '"usd":1e400' in raw and math.isinf(e["usd"])),
        (BadValue.MISSING_PRICE, lambda e, raw: "usd" not in e and "usd_market_cap" in e),
        (BadValue.MISSING_LAST_UPDATED, lambda e, raw: "last_updated_at" not in e and "usd" in e),
    ],
    ids=lambda v: v.value if isinstance(v, BadValue) else None,
)
def test_bad_value_spoils_one_coin_in_a_good_answer(
    fake: FakeCoinGecko,
    http: requests.Session,
    bad: BadValue,
    check: Callable[[dict[str, Any], str], bool],
) -> None:
    fake.inject(Fault.BAD_VALUE("bitcoin", bad))
    r = price(http, fake, **ALL_FIELDS)
    assert r.status_code == 200
    body = r.json()
    assert check(body["bitcoin"], r.text)
    assert body["ethereum"]["usd"] == 3_000.25 and body["ethereum"]["last_updated_at"] == T0
    assert price(http, fake).json()["bitcoin"]["usd"] == 50_000


def test_bad_value_waits_for_an_answer_that_has_its_coin(fake: FakeCoinGecko, http: requests.Session) -> None:
    fake.inject(Fault.BAD_VALUE("bitcoin", BadValue.STRING))
    assert price(http, fake, "ethereum").json() == {"ethereum": {"usd": 3_000.25}}
    assert get(http, fake, "/ping").status_code == 200
    rows = get(http, fake, "/coins/markets", vs_currency="usd").json()
    assert [r["current_price"] for r in rows] == ["abc", 3_000.25]


# ---------------------------------------------------------------------------------------------
# Request log and budget
# ---------------------------------------------------------------------------------------------


def test_request_log_records_what_each_request_carried() -> None:
    with _start("demo", api_key=DEMO_KEY) as fake, requests.Session() as http:
        before = time.time()
        r = http.get(
            fake.url + "/simple/price",
            timeout=5,
            params={"ids": "bitcoin", "vs_currencies": "usd"},
            headers={"User-Agent": "crypto-watcher/0.1", "X-CG-Demo-API-Key": DEMO_KEY},
        )
        assert r.status_code == 200
        get(http, fake, "/coins/list")
        get(http, fake, "/coins/markets", vs_currency="usd")
        call = fake.calls("/simple/price")[0]
        assert call.method == "GET" and call.path == "/simple/price"
        assert call.query == {"ids": "bitcoin", "vs_currencies": "usd"}
        assert call.headers["user-agent"] == "crypto-watcher/0.1"
        assert call.headers["x-cg-demo-api-key"] == DEMO_KEY
        assert before <= call.time <= time.time()
        assert (call.clock, call.status, call.fault) == (T0, 200, None)
        assert fake.counts() == {"/simple/price": 1, "/coins/list": 1, "/coins/markets": 1}
        assert fake.call_count("/coins") == 2 and fake.call_count() == 3
        assert fake.last_call().path == "/coins/markets"
        fake.clear_calls()
        assert fake.call_count() == 0


def test_wait_for_calls_sees_requests_from_another_thread(fake: FakeCoinGecko) -> None:
    def poll() -> None:
        with requests.Session() as s:
            for _ in range(3):
                s.get(fake.url + "/ping", headers=UA, timeout=5)

    worker = threading.Thread(target=poll)
    worker.start()
    assert fake.wait_for_calls(3, "/ping", timeout=5)
    worker.join()
    assert not fake.wait_for_calls(4, "/ping", timeout=0.05)


def test_rate_limit_budget_answers_429_with_retry_after(http: requests.Session) -> None:
    with _start(rate_limit_per_minute=3) as fake:
        statuses = [price(http, fake).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        last = price(http, fake)
        assert 1 <= int(last.headers["retry-after"]) <= 60
        assert last.json()["status"]["error_code"] == 429


# ---------------------------------------------------------------------------------------------
# Demo CLI
# ---------------------------------------------------------------------------------------------


def test_cli_serves_a_live_market_on_wall_time() -> None:
    root = REPO_ROOT
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.coingecko",
            "--port",
            "0",
            "--coins",
            "bitcoin,ethereum",
            "--refresh",
            "1",
            "--seed",
            "7",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/api/v3", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        r = requests.get(
            match.group(0) + "/simple/price",
            headers=UA,
            timeout=5,
            params={
                "ids": "bitcoin,ethereum",
                "vs_currencies": "usd",
                "include_last_updated_at": "true",
            },
        )
        body = r.json()
        assert set(body) == {"bitcoin", "ethereum"}
        assert abs(body["bitcoin"]["last_updated_at"] - time.time()) < 600
        assert body["bitcoin"]["usd"] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=5)
