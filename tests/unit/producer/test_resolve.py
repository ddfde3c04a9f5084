"""What users type becomes CoinGecko ids, or a clear refusal naming the input and its candidates."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto_watcher.config import ProducerSettings, load_settings
from producer.cli import main
from producer.coingecko import CoinGeckoClient, CoinGeckoError
from producer.quotes import markets_params, parse_market_caps
from producer.resolve import CoinsList, ResolveError, market_caps_via, resolve
from producer.sources import resolve_coins
from tests.support.coingecko import FakeCoinGecko, Fault, steady
from tests.support.producer import (
    T0,
    fresh_metrics,
    restore_root_logging,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def fake() -> Iterator[FakeCoinGecko]:
    with FakeCoinGecko() as f:
        f.script("bitcoin", steady(T0, 60_000.0, minutes=5))  # batcat, osmosis-allbtc also say "btc"
        f.script("ethereum", steady(T0, 3_000.0, minutes=5))
        f.script("ethereum-wormhole", steady(T0, 3_000.0, minutes=5), market_cap=100e9)  # a close second "eth"
        f.script("ripple", steady(T0, 0.6, minutes=5))
        yield f


def _resolve(fake: FakeCoinGecko, tmp_path: Path, *inputs: str) -> tuple[list[str], dict[str, str], list[str]]:
    client = CoinGeckoClient(base_url=fake.url, metrics=fresh_metrics())
    coins = CoinsList(client, tmp_path).load()
    found = resolve(inputs, coins, market_caps_via("usd", client.get))
    return found.ids, found.symbols, found.notes


def test_ids_pass_through_names_and_unique_symbols_resolve(fake: FakeCoinGecko, tmp_path: Path) -> None:
    ids, symbols, notes = _resolve(fake, tmp_path, "ethereum", "Bitcoin", "xrp", "ADA", "Wrapped Bitcoin", "bitcoin")
    assert ids == ["ethereum", "bitcoin", "ripple", "cardano", "wrapped-bitcoin"]  # order kept, duplicate dropped
    assert symbols["ripple"] == "xrp" and symbols["bitcoin"] == "btc"
    assert "'xrp' -> ripple (XRP)" in notes
    assert not any(n.startswith("'ethereum'") for n in notes)  # an id is not "resolved", it is used
    assert fake.counts() == {"/coins/list": 1}  # no market data needed: nothing was ambiguous


def test_shared_symbol_goes_to_the_coin_ten_times_larger(fake: FakeCoinGecko, tmp_path: Path) -> None:
    ids, _symbols, notes = _resolve(fake, tmp_path, "btc")
    assert ids == ["bitcoin"]
    assert notes == ["'btc' -> bitcoin (largest by market cap; also matches batcat, osmosis-allbtc)"]
    markets = fake.calls("/coins/markets")
    assert len(markets) == 1 and set(markets[0].query["ids"].split(",")) == {"bitcoin", "batcat", "osmosis-allbtc"}


def test_ambiguous_and_unknown_inputs_are_refused_with_candidates(fake: FakeCoinGecko, tmp_path: Path) -> None:
    with pytest.raises(ResolveError) as info:
        _resolve(fake, tmp_path, "eth", "sol", "bitcoinn", "bitcoin")
    text = str(info.value)
    lines = text.splitlines()
    assert len(lines) == 3
    eth = next(line for line in lines if "'eth'" in line)
    assert "ambiguous coin 'eth' matches 3 coins" in eth
    assert "ethereum (ETH, Ethereum, market cap" in eth and "ethereum-wormhole (ETH, Ethereum (Wormhole)" in eth
    assert "bridged-ether-starkgate" in eth and "write the CoinGecko id instead" in eth
    sol = next(line for line in lines if "'sol'" in line)
    assert "solana (SOL, Solana, no market cap)" in sol and "wrapped-solana" in sol
    unknown = next(line for line in lines if "'bitcoinn'" in line)
    assert "unknown coin 'bitcoinn': not a CoinGecko id, symbol or name; did you mean bitcoin" in unknown
    assert len(fake.calls("/coins/markets")) == 1  # one call for every ambiguous input together


def test_cli_exits_2_naming_the_input_and_candidates(
    fake: FakeCoinGecko, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--coins", "bitcoin,eth", "--base-url", fake.url, "--cache-dir", str(tmp_path), "--http-port", "-1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "\ncrypto-producer: cannot use CW_COINS / --coins:\n" in "\n" + err
    assert "ambiguous coin 'eth'" in err and "ethereum-wormhole" in err


def test_coin_list_is_cached_on_disk_with_a_ttl(
    fake: FakeCoinGecko, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1_000_000.0]
    client = CoinGeckoClient(base_url=fake.url, metrics=fresh_metrics())
    cached = CoinsList(client, tmp_path / "cache", ttl_s=3600, clock=lambda: now[0])
    first = cached.load()
    assert cached.fetched and (tmp_path / "cache" / "coins-list.json").is_file()
    now[0] += 3599
    assert cached.load() == first and not cached.fetched
    again = CoinsList(client, tmp_path / "cache", ttl_s=3600, clock=lambda: now[0])  # a restart
    assert again.load() == first and not again.fetched
    assert fake.call_count("/coins/list") == 1
    now[0] += 2
    fake.inject(Fault.SERVER_ERROR(503, path="/coins/list"))
    with caplog.at_level(logging.WARNING):
        assert cached.load() == first  # expired, CoinGecko failing: the stale copy, with a warning
    assert "using the cached one" in caplog.text
    assert cached.load() and cached.fetched
    assert fake.call_count("/coins/list") == 3


def test_cache_of_another_api_or_broken_cache_is_not_used(fake: FakeCoinGecko, tmp_path: Path) -> None:
    path = tmp_path / "coins-list.json"
    path.write_text(json.dumps({"base_url": "https://elsewhere", "fetched_at": 1e12, "coins": []}))
    client = CoinGeckoClient(base_url=fake.url, metrics=fresh_metrics())
    assert CoinsList(client, tmp_path).load() and fake.call_count("/coins/list") == 1
    path.write_text("{not json")
    assert CoinsList(client, tmp_path).load() and fake.call_count("/coins/list") == 2


def test_no_list_and_coingecko_down_is_an_error_not_a_guess(fake: FakeCoinGecko, tmp_path: Path) -> None:
    fake.inject(Fault.MALFORMED_JSON(path="/coins/list"))
    with pytest.raises(CoinGeckoError):
        CoinsList(CoinGeckoClient(base_url=fake.url, metrics=fresh_metrics()), tmp_path).load()


def test_market_caps_parsing_skips_rows_without_caps() -> None:
    assert parse_market_caps([{"id": "a", "market_cap": 5}, {"id": "b", "market_cap": None}, "x"]) == {"a": 5.0}
    assert markets_params("usd", 2, 100, ["a", "b"]) == {
        "vs_currency": "usd",
        "order": "market_cap_desc",
        "per_page": "100",
        "page": "2",
        "ids": "a,b",
    }


def test_startup_tries_three_times_then_uses_an_expired_cache(fake: FakeCoinGecko, tmp_path: Path) -> None:
    client = CoinGeckoClient(base_url=fake.url, metrics=fresh_metrics())
    CoinsList(client, tmp_path, clock=lambda: 0.0).load()  # a copy cached long ago
    settings = load_settings(
        ProducerSettings,
        {"coingecko_base_url": fake.url, "coingecko_cache_dir": str(tmp_path), "coins": "xrp", "max_backoff": "100ms"},
    )
    fake.inject(Fault.SERVER_ERROR(503), path="/coins/list", times=3)
    ids, symbols = resolve_coins(settings, client, threading.Event())
    assert (ids, symbols) == (["ripple"], {"ripple": "xrp"})
    assert [c.status for c in fake.calls("/coins/list")] == [200, 503, 503, 503]
