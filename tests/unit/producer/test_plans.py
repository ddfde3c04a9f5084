"""The three CoinGecko plans: base URL and key header per plan, checked by the fake's key enforcement."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto_watcher.config import Plan, ProducerSettings, load_settings
from producer.budget import monthly_calls, pro_key_rate
from producer.cli import main
from producer.coingecko import PLANS, CoinGeckoClient, CoinGeckoError
from producer.sources import make_client
from tests.support.coingecko import FakeCoinGecko, steady
from tests.support.producer import (
    T0,
    fresh_metrics,
    restore_root_logging,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.usefixtures("restore_root_logging")


def test_plan_table() -> None:
    assert PLANS[Plan.PUBLIC].base_url == PLANS[Plan.DEMO].base_url == "https://api.coingecko.com/api/v3"
    assert PLANS[Plan.PRO].base_url == "https://pro-api.coingecko.com/api/v3"
    assert (PLANS[Plan.PUBLIC].key_header, PLANS[Plan.DEMO].key_header, PLANS[Plan.PRO].key_header) == (
        None,
        "x-cg-demo-api-key",
        "x-cg-pro-api-key",
    )
    assert [PLANS[p].calls_per_minute for p in Plan] == [10, 30, 500]
    with pytest.raises(ValueError, match="needs an API key"):
        CoinGeckoClient(Plan.DEMO)


@pytest.mark.parametrize("plan", ["public", "demo", "pro"])
def test_each_plan_is_accepted_by_a_server_of_that_plan(plan: str) -> None:
    with FakeCoinGecko(plan=plan) as fake:  # type: ignore[arg-type]
        fake.script("bitcoin", steady(T0, 50_000.0, minutes=5))
        client = CoinGeckoClient(Plan(plan), fake.api_key, base_url=fake.url, metrics=fresh_metrics())
        body = client.get("simple/price", {"ids": "bitcoin", "vs_currencies": "usd"})
        assert body == {"bitcoin": {"usd": 50_000}}
        headers = fake.last_call().headers
    assert headers["user-agent"].startswith("crypto-watcher/")
    assert headers.get("x-cg-demo-api-key") == (fake.api_key if plan == "demo" else None)
    assert headers.get("x-cg-pro-api-key") == (fake.api_key if plan == "pro" else None)


@pytest.mark.parametrize(
    ("client_plan", "server_plan", "status", "code"),
    [
        (Plan.PRO, "demo", 400, "10010"),  # a Pro key sent to api.coingecko.com
        (Plan.DEMO, "pro", 400, "10011"),  # a Demo key sent to pro-api.coingecko.com
        (Plan.PUBLIC, "demo", 401, "API Key Missing"),
    ],
)
def test_wrong_plan_is_refused_and_not_worth_retrying(
    client_plan: Plan, server_plan: str, status: int, code: str
) -> None:
    with FakeCoinGecko(plan=server_plan) as fake:  # type: ignore[arg-type]
        key = None if client_plan is Plan.PUBLIC else "CG-some-key"
        client = CoinGeckoClient(client_plan, key, base_url=fake.url, metrics=fresh_metrics())
        with pytest.raises(CoinGeckoError) as info:
            client.get("ping")
    assert info.value.status == status and not info.value.retryable
    assert info.value.kind == "http_4xx"
    if code.isdigit():
        assert "incorrect API key" in str(info.value)
    else:
        assert code in str(info.value)


def test_cli_exits_2_naming_the_problem_when_the_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeCoinGecko(plan="demo", api_key="CG-right") as fake:
        code = main(
            [
                "--plan",
                "demo",
                "--base-url",
                fake.url,
                "--cache-dir",
                str(tmp_path),
                "--http-port",
                "-1",
                "--bootstrap",
                "127.0.0.1:1",
            ]
        )
    assert code == 2
    err = capsys.readouterr().err
    assert "CW_COINGECKO_API_KEY" in err  # demo without a key at all


def test_cli_exits_2_when_coingecko_refuses_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CW_COINGECKO_API_KEY", "CG-wrong")
    with FakeCoinGecko(plan="demo", api_key="CG-right") as fake:
        code = main(["--plan", "demo", "--base-url", fake.url, "--cache-dir", str(tmp_path), "--http-port", "-1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "refused" in err and "HTTP 400" in err and "CG-wrong" not in err  # the key is never shown


def test_pro_key_endpoint_supplies_the_real_per_minute_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeCoinGecko(plan="pro", rate_limit_per_minute=250, monthly_call_credit=1000) as fake:
        monkeypatch.setenv("CW_COINGECKO_API_KEY", str(fake.api_key))
        settings = load_settings(ProducerSettings, {"coingecko_plan": "pro", "coingecko_base_url": fake.url})
        import threading

        setup = make_client(settings, threading.Event())
        assert (setup.budget, setup.limiter.max_calls, setup.monthly_left) == (250.0, 250, 1000)
        explicit = load_settings(
            ProducerSettings,
            {"coingecko_plan": "pro", "coingecko_base_url": fake.url, "coingecko_calls_per_minute": 100},
        )
        assert make_client(explicit, threading.Event()).budget == 100.0  # the user's setting wins


@pytest.mark.parametrize(("key_limit", "plan_limit"), [(120, 300), (250, None)])
def test_pro_budget_is_the_keys_own_limit_not_the_plans(
    monkeypatch: pytest.MonkeyPatch, key_limit: int, plan_limit: int | None
) -> None:
    """``/key`` reports the plan-wide limit (shared by every key of the account) and the key's own;
    CoinGecko enforces the key's, so budgeting with the plan's would run into 429s."""
    import threading

    with FakeCoinGecko(plan="pro", rate_limit_per_minute=key_limit, plan_rate_limit_per_minute=plan_limit) as fake:
        info = CoinGeckoClient(Plan.PRO, fake.api_key, base_url=fake.url, metrics=fresh_metrics()).get("key")
        assert info["api_key_rate_limit_request_per_minute"] == key_limit
        assert info["rate_limit_request_per_minute"] == (plan_limit or 2 * key_limit) != key_limit
        monkeypatch.setenv("CW_COINGECKO_API_KEY", str(fake.api_key))
        settings = load_settings(ProducerSettings, {"coingecko_plan": "pro", "coingecko_base_url": fake.url})
        setup = make_client(settings, threading.Event())
    assert (setup.budget, setup.limiter.max_calls) == (float(key_limit), key_limit)


def test_pro_key_rate_takes_the_smaller_figure_and_ignores_junk() -> None:
    assert pro_key_rate({"rate_limit_request_per_minute": 1000, "api_key_rate_limit_request_per_minute": 250}) == 250
    assert pro_key_rate({"rate_limit_request_per_minute": 100, "api_key_rate_limit_request_per_minute": 250}) == 100
    assert pro_key_rate({"rate_limit_request_per_minute": 1000}) == 1000  # an older answer without the key's
    assert pro_key_rate({"api_key_rate_limit_request_per_minute": True, "rate_limit_request_per_minute": 0}) is None
    assert pro_key_rate({}) is None


def test_monthly_estimate() -> None:
    # 1 call per minute for 30 days, plus one /coins/list a day
    assert monthly_calls(1, 60.0) == 43_200 + 30
    # top 1,000 every 5 minutes: 4 calls per poll, 4 calls per hourly refresh
    assert monthly_calls(4, 300.0, 4, 3600.0) == 4 * 8_640 + 4 * 720 + 30
