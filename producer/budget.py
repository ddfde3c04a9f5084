"""The CoinGecko call budget: calls per minute (the plan's, or a Pro key's own) and calls per month.

Every plan caps calls per minute, and the paid ones also sell a monthly credit. The per-minute cap
sets the shortest poll interval the producer may use; the monthly credit decides whether a set-up
that is fine minute by minute still runs dry before the month ends. Both are worked out once, at
start-up, so the user reads the cost of a set-up before it spends anything.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from crypto_watcher.config import ConfigError, ProducerSettings
from crypto_watcher.durations import format_duration
from crypto_watcher.times import ms_to_s
from producer.coingecko import PLANS, CoinGeckoClient, CoinGeckoError

log = logging.getLogger(__name__)

MONTH_S = 30 * 86_400


@dataclass(frozen=True)
class ProKeyLimits:
    """What ``GET /key`` says about a Pro key; None where it said nothing usable."""

    per_minute: float | None = None
    monthly_left: int | None = None


def pro_key_rate(info: dict[str, Any]) -> float | None:
    """The per-minute budget ``GET /key`` allows this key, or None when it reports none.

    ``rate_limit_request_per_minute`` is the plan's, shared by every key of the account;
    ``api_key_rate_limit_request_per_minute`` is this key's own and the one CoinGecko enforces on
    its calls, so it is the budget. Both count, so the smaller wins when both are there."""
    rates = [
        float(value)
        for value in (info.get("api_key_rate_limit_request_per_minute"), info.get("rate_limit_request_per_minute"))
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    ]
    return min(rates) if rates else None


def read_pro_key(client: CoinGeckoClient, budget: float) -> ProKeyLimits:
    """A Pro key's own limits: the plan's figure can be far from what CoinGecko enforces on this key.

    A refused key is a configuration error (exit 2, never retried); a key whose limits cannot be
    read just now keeps ``budget``, since polling within the plan's figure is still safe."""
    try:
        info = client.get("key")
    except CoinGeckoError as exc:
        if not exc.retryable:
            raise ConfigError(f"CoinGecko refused the Pro key: {exc}") from None
        log.warning("could not read the Pro key's limits (%s); budget stays %g/min", exc, budget)
        return ProKeyLimits()
    info = info if isinstance(info, dict) else {}
    left = info.get("current_remaining_monthly_calls")
    monthly_left = left if isinstance(left, int) and not isinstance(left, bool) else None
    rate = pro_key_rate(info)
    if rate is not None:
        log.info(
            "Pro key: %g calls/min (this key %s, the plan %s), %s monthly credits left",
            rate,
            info.get("api_key_rate_limit_request_per_minute", "-"),
            info.get("rate_limit_request_per_minute", "-"),
            left,
        )
    return ProKeyLimits(rate, monthly_left)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def monthly_calls(calls_per_poll: int, interval_s: float, top_n_calls: int = 0, top_n_refresh_s: float = 3600.0) -> int:
    """Calls a 30-day month of polling costs, with the top-N refreshes and one /coins/list a day."""
    polls = math.ceil(MONTH_S / interval_s) * calls_per_poll
    refreshes = math.ceil(MONTH_S / top_n_refresh_s) * top_n_calls if top_n_calls else 0
    return polls + refreshes + 30


def poll_gap(
    settings: ProducerSettings,
    per_poll: int,
    top_n_calls: int,
    per_minute: float,
    monthly_left: int | None = None,
    coins: int = 0,
) -> float:
    """The shortest gap between polls ``per_minute`` allows; logs what the set-up costs and warns
    when the month's credits would not last. ``coins``: how many are watched without a top N."""
    min_gap = 60.0 * per_poll / per_minute
    interval = max(ms_to_s(settings.poll_interval), min_gap)
    per_month = monthly_calls(per_poll, interval, top_n_calls, ms_to_s(settings.top_n_refresh))
    log.info(
        "one poll costs %s (%s, %s); every %s that is %.1f calls/min of %g, ~%s calls/month",
        _plural(per_poll, "call"),
        _plural(settings.top_n or coins, "coin"),
        _plural(len(settings.vs_currencies), "currency", "currencies"),
        format_duration(int(interval * 1000)),
        per_poll * 60 / interval,
        per_minute,
        f"{per_month:,}",
    )
    _warn_monthly(settings, monthly_left, per_month, per_poll)
    return min_gap


def _warn_monthly(settings: ProducerSettings, monthly_left: int | None, per_month: int, per_poll: int) -> None:
    """Warn when ``per_month`` calls exceed the credits: CW_COINGECKO_MONTHLY_CALLS, else what a Pro
    key has left, else the plan's usual allowance. The warning names the interval that would fit."""
    credits = settings.coingecko_monthly_calls
    what = "CW_COINGECKO_MONTHLY_CALLS"
    if credits is None and monthly_left is not None:
        credits, what = monthly_left, "the Pro key's remaining monthly credits"
    if credits is None:
        plan_monthly = PLANS[settings.coingecko_plan].monthly_calls
        if plan_monthly is not None and per_month > plan_monthly:
            log.warning(
                "%s plan keys have had %s calls/month; this set-up spends ~%s. Set CW_COINGECKO_MONTHLY_CALLS to "
                "your plan's credits to check",
                settings.coingecko_plan.value,
                f"{plan_monthly:,}",
                f"{per_month:,}",
            )
        return
    if per_month <= credits:
        return
    spare = max(credits - (per_month - math.ceil(MONTH_S / ms_to_s(settings.poll_interval)) * per_poll), 1)
    needed = MONTH_S * per_poll / spare
    days = 30 * credits / per_month
    log.warning(
        "polling spends ~%s calls a month, more than %s (%s): the credits run out after ~%.0f days; "
        "poll every %s or more, or watch fewer coins",
        f"{per_month:,}",
        what,
        f"{credits:,}",
        days,
        format_duration(math.ceil(needed) * 1000),
    )
