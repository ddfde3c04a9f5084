"""Few calls for many coins: what one poll costs, counted in the CoinGecko look-alike's request log.

The figures asserted here are the ones the README promises (section "CoinGecko access"):
a poll of 10 or 250 coins is 1 call, 1,000 coins is 4 calls, whatever the number of vs-currencies.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from producer.coingecko import CoinGeckoClient
from producer.service import Poller
from producer.sources import CoinGeckoSource
from tests.support.coingecko import FakeCoinGecko, Fault, KnownCoin, PricePoint
from tests.support.producer import T0, MemoryPublisher, fresh_metrics

VS = ["usd", "eur", "gbp"]


def _id(i: int) -> str:
    # Ids of realistic length: CoinGecko's top coins average ~10 characters; these are 6-17.
    stems = ["sol", "chainlink", "the-open-network", "avalanche-2", "wrapped-steth", "dogecoin"]
    return f"{stems[i % len(stems)]}-{i}"


@pytest.fixture(scope="module")
def market() -> Iterator[FakeCoinGecko]:
    with FakeCoinGecko() as fake:
        for i in range(1000):
            coin = _id(i)
            fake.register_coin(KnownCoin(coin, f"s{i}", f"Coin {i}"))
            for vs in VS:
                points = [PricePoint(T0, 1.0 + i), PricePoint(T0 + 60, 2.0 + i)]
                fake.script(coin, points, vs=vs, market_cap=1e12 / (i + 1))  # coin 0 is the largest
        yield fake


@pytest.mark.parametrize(("coins", "calls"), [(10, 1), (250, 1), (1000, 4)])
def test_calls_per_poll_for_10_250_1000_coins_all_currencies_at_once(
    market: FakeCoinGecko, coins: int, calls: int
) -> None:
    market.clear_calls()
    market.set_clock(T0)
    ids = [_id(i) for i in range(coins)]
    source = CoinGeckoSource(CoinGeckoClient(base_url=market.url, metrics=fresh_metrics()), ids, VS)
    assert source.calls_per_poll() == calls
    out = MemoryPublisher()
    Poller(source, out, 0.0, metrics=fresh_metrics()).run(max_polls=1)
    requests = market.calls("/simple/price")
    assert len(requests) == calls == len(market.calls())
    assert all(r.query["vs_currencies"] == "usd,eur,gbp" for r in requests)
    assert all(len(r.query["ids"].split(",")) <= 250 for r in requests)
    assert len(out.ticks) == coins * len(VS)  # every pair priced, nothing lost between the calls


def test_top_n_comes_from_coins_markets_pages_and_is_refreshed(market: FakeCoinGecko) -> None:
    market.clear_calls()
    market.set_clock(T0)
    now = [0.0]
    source = CoinGeckoSource(
        CoinGeckoClient(base_url=market.url, metrics=fresh_metrics()),
        [],
        ["usd", "eur"],
        top_n=260,
        top_n_refresh_s=3600,
        monotonic=lambda: now[0],
    )
    assert (source.top_n_calls(), source.calls_per_poll()) == (2, 2)
    poller = Poller(source, MemoryPublisher(), 0.0, metrics=fresh_metrics())
    poller.run(max_polls=2)
    paths = [(c.path, c.query.get("page")) for c in market.calls()]
    assert paths == [("/coins/markets", "1"), ("/coins/markets", "2")] + [("/simple/price", None)] * 4
    pages = market.calls("/coins/markets")
    assert all(p.query["order"] == "market_cap_desc" and p.query["per_page"] == "250" for p in pages)
    assert pages[0].query["vs_currency"] == "usd"
    assert source.coins == [_id(i) for i in range(260)]  # largest market cap first
    assert source.symbols[_id(0)] == "s0"
    market.clear_calls()
    now[0] = 3600.0  # an hour later the list is fetched again before the next poll
    poller.run(max_polls=1)
    assert [c.path for c in market.calls()] == ["/coins/markets"] * 2 + ["/simple/price"] * 2


def test_uri_too_long_halves_the_groups_and_loses_nothing(
    market: FakeCoinGecko, caplog: pytest.LogCaptureFixture
) -> None:
    market.clear_calls()
    market.set_clock(T0)
    market.inject(Fault.RESPONSE(414, "<html><h1>414 Request-URI Too Large</h1></html>", path="/simple/price"))
    ids = [_id(i) for i in range(200)]
    source = CoinGeckoSource(CoinGeckoClient(base_url=market.url, metrics=fresh_metrics()), ids, ["usd"])
    out = MemoryPublisher()
    with caplog.at_level(logging.WARNING):
        Poller(source, out, 0.0, metrics=fresh_metrics()).run(max_polls=1)
    sizes = [len(c.query["ids"].split(",")) for c in market.calls("/simple/price")]
    assert sizes == [200, 100, 100]
    assert len(out.ticks) == 200 and source.ids_per_call == 100
    assert any("414" in r.getMessage() for r in caplog.records)
