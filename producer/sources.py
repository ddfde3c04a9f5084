"""Where quotes come from: CoinGecko (client, call budget, coin ids) or the simulated market.

``make_source`` turns the settings into a ``QuoteSource`` for the poll loop and says what that
source costs; backfill shares ``make_client`` and ``resolve_coins`` so both commands spend from
one limiter and name coins the same way.

``CoinGeckoSource`` asks for every watched coin in as few calls as the URL allows (all
vs-currencies in each call). If a call fails half-way, the ticks already fetched are returned with
the error, and the next poll continues with the call that failed, so no part of a poll is lost or
asked twice.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from crypto_watcher.config import ConfigError, Plan, ProducerSettings, SourceKind
from crypto_watcher.health import Heartbeat
from crypto_watcher.retry import Backoff
from crypto_watcher.times import ms_to_s
from producer.budget import poll_gap, read_pro_key
from producer.coingecko import PLANS, CoinGeckoClient, CoinGeckoError
from producer.quotes import ParsedQuotes, markets_params, parse_market_ids, parse_simple_price, simple_price_params
from producer.ratelimit import RateLimiter, Stopped, UsageLog
from producer.resolve import CoinsList, ResolveError, market_caps_via, resolve
from producer.simulate import SimulatedMarket

log = logging.getLogger(__name__)

MAX_URL_IDS_CHARS = 5000
"""Encoded length of the ``ids`` parameter per call (commas count as ``%2C``): the whole URL stays
near 5 KB, under the 8 KB request-line limit common to web servers and proxies."""
MAX_IDS_PER_CALL = 250
"""Ids per /simple/price call, as many as a /coins/markets page holds."""
MARKETS_PER_PAGE = 250


class QuoteSource(Protocol):
    def poll(self) -> ParsedQuotes: ...


def chunk_ids(
    ids: Iterable[str], max_chars: int = MAX_URL_IDS_CHARS, max_ids: int = MAX_IDS_PER_CALL
) -> list[list[str]]:
    """Split coin ids into groups of at most ``max_ids`` whose encoded, comma-joined form fits ``max_chars``."""
    chunks: list[list[str]] = [[]]
    size = 0
    for coin in ids:
        cost = len(quote(coin, safe="")) + 3
        if chunks[-1] and (size + cost > max_chars or len(chunks[-1]) >= max_ids):
            chunks.append([])
            size = 0
        chunks[-1].append(coin)
        size += cost
    return [c for c in chunks if c]


class CoinGeckoSource:
    """Quotes from ``/simple/price`` for a fixed list of ids, or for the top N coins by market cap.

    With ``top_n`` the list comes from ``/coins/markets`` (ordered by market cap, 250 per page,
    in the first vs-currency) and is refreshed every ``top_n_refresh_s``; the quotes still come
    from ``/simple/price``, which prices every vs-currency in one call.
    """

    def __init__(
        self,
        client: CoinGeckoClient,
        coins: list[str],
        vs_currencies: list[str],
        *,
        symbols: dict[str, str] | None = None,
        top_n: int = 0,
        top_n_refresh_s: float = 3600.0,
        ids_per_call: int = MAX_IDS_PER_CALL,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.coins = [] if top_n else list(coins)
        self.vs_currencies = list(vs_currencies)
        self.symbols = dict(symbols or {})
        self.top_n = top_n
        self.top_n_refresh_s = top_n_refresh_s
        self.ids_per_call = ids_per_call
        self.clock = clock
        self.monotonic = monotonic
        self._pending: list[list[str]] = []
        self._top_due: float | None = monotonic() if top_n else None

    @property
    def watched(self) -> list[str]:
        return self.coins

    def calls_per_poll(self) -> int:
        """Calls one poll costs (without the top-N refresh)."""
        if self.top_n and not self.coins:
            return math.ceil(self.top_n / self.ids_per_call)
        return len(chunk_ids(self.coins, max_ids=self.ids_per_call))

    def top_n_calls(self) -> int:
        """Calls one refresh of the top-N list costs."""
        return math.ceil(self.top_n / MARKETS_PER_PAGE) if self.top_n else 0

    def _refresh_top(self) -> None:
        per_page = min(MARKETS_PER_PAGE, self.top_n)
        found: list[tuple[str, str | None]] = []
        for page in range(1, self.top_n_calls() + 1):
            rows = parse_market_ids(
                self.client.get("coins/markets", markets_params(self.vs_currencies[0], page, per_page))
            )
            found.extend(rows)
            if len(rows) < per_page:
                break  # fewer coins exist than asked for
        ids = list(dict.fromkeys(coin for coin, _ in found))[: self.top_n]
        if not ids:
            raise CoinGeckoError("malformed", "/coins/markets returned no coins for the top-N list")
        before = set(self.coins)
        self.symbols.update({coin: sym for coin, sym in found if sym})
        self.coins = ids
        added = [c for c in ids if c not in before]
        dropped = [c for c in before if c not in set(ids)]
        if before:
            log.info(
                "top %d by market cap refreshed: %d new (%s), %d dropped (%s)",
                self.top_n,
                len(added),
                ",".join(added[:10]) or "-",
                len(dropped),
                ",".join(dropped[:10]) or "-",
            )
        else:
            log.info("top %d by market cap: %s%s", self.top_n, ",".join(ids[:10]), " ..." if len(ids) > 10 else "")

    def poll(self) -> ParsedQuotes:
        """Every watched quote, or as many as arrived before a call failed (``error`` says which)."""
        result = ParsedQuotes([], [])
        if not self._pending:
            if self._top_due is not None and self.monotonic() >= self._top_due:
                try:
                    self._refresh_top()
                    self._top_due = self.monotonic() + self.top_n_refresh_s
                except Stopped:
                    result.stopped = True
                    return result
                except CoinGeckoError as exc:
                    if not self.coins or exc.retryable:
                        result.error = exc
                        return result
                    log.error("top-%d refresh failed for good (%s); keeping the current list", self.top_n, exc)
                    self._top_due = self.monotonic() + self.top_n_refresh_s
            self._pending = chunk_ids(self.coins, max_ids=self.ids_per_call)
        while self._pending:
            group = self._pending[0]
            try:
                payload = self.client.get("simple/price", simple_price_params(group, self.vs_currencies))
            except Stopped:
                result.stopped = True  # publish what arrived; the rest is not asked for any more
                return result
            except CoinGeckoError as exc:
                if exc.status == 414 and len(group) > 1:
                    # URI too long for this server: halve the groups from now on and ask again at once.
                    half = len(group) // 2
                    self.ids_per_call = max(1, min(self.ids_per_call, half))
                    log.warning("CoinGecko refused a URL with %d ids (414); asking %d ids per call", len(group), half)
                    self._pending[0:1] = chunk_ids(group, max_ids=self.ids_per_call)
                    continue
                result.error = exc
                return result
            fetched = int(self.clock() * 1000)
            parsed = parse_simple_price(payload, group, self.vs_currencies, fetched, symbols=self.symbols)
            result.ticks.extend(parsed.ticks)
            result.problems.extend(parsed.problems)
            self._pending.pop(0)
        return result


@dataclass
class CoinGeckoSetup:
    client: CoinGeckoClient
    limiter: RateLimiter
    budget: float
    """Calls per minute the limiter allows."""
    monthly_left: int | None = None
    """Monthly credits a Pro key has left, when ``/key`` said."""


def make_client(
    settings: ProducerSettings, stop: threading.Event, on_wait: Callable[[float], None] | None = None
) -> CoinGeckoSetup:
    """The client with its shared limiter; on Pro, ``/key`` supplies the real per-minute limit."""
    plan = PLANS[settings.coingecko_plan]
    budget = settings.coingecko_calls_per_minute or plan.calls_per_minute
    limiter = RateLimiter(budget, stop=stop, on_wait=on_wait)
    try:
        client = CoinGeckoClient(
            settings.coingecko_plan,
            settings.coingecko_api_key,
            settings.coingecko_base_url,
            timeout_s=ms_to_s(settings.coingecko_timeout),
            limiter=limiter,
            usage=UsageLog(limiter),
        )
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    setup = CoinGeckoSetup(client, limiter, budget)
    if settings.coingecko_plan is Plan.PRO:
        limits = read_pro_key(client, budget)
        setup.monthly_left = limits.monthly_left
        if limits.per_minute is not None and settings.coingecko_calls_per_minute is None:
            limiter.set_budget(limits.per_minute)  # the user's own setting wins over the key's
            setup.budget = limits.per_minute
    return setup


def resolve_coins(
    settings: ProducerSettings, client: CoinGeckoClient, stop: threading.Event, inputs: Sequence[str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """CW_COINS (ids, symbols, names) as ids; ConfigError (exit 2) for unknown or ambiguous ones."""

    def get(path: str, params: dict[str, str] | None = None, attempts: int | None = None) -> Any:
        try:
            return client.get_with_retries(
                path, params, backoff=Backoff(max_s=ms_to_s(settings.max_backoff)), stop=stop, max_attempts=attempts
            )
        except CoinGeckoError as exc:
            if exc.retryable:
                raise  # only after ``attempts``: the caller has a fallback
            raise ConfigError(f"CoinGecko refused the request: {exc}") from None

    listing = CoinsList(client, settings.coingecko_cache_dir, ms_to_s(settings.coins_list_ttl))
    try:
        # A few tries, then an expired cached copy if there is one; with none, keep trying.
        coins = listing.load(lambda: get("coins/list", attempts=3))
    except CoinGeckoError:
        coins = listing.load(lambda: get("coins/list"))
    try:
        found = resolve(
            inputs if inputs is not None else settings.coins,
            coins,
            market_caps_via(settings.vs_currencies[0], get),
            settings.vs_currencies[0],
        )
    except ResolveError as exc:
        raise ConfigError(f"cannot use CW_COINS / --coins:\n{exc}") from None
    for note in found.notes:
        log.info("coin %s", note)
    return found.ids, found.symbols


def make_source(
    settings: ProducerSettings, stop: threading.Event, liveness: Heartbeat | None = None
) -> tuple[QuoteSource, float]:
    """The configured source and the shortest poll interval its call budget allows."""
    if settings.source is SourceKind.SIMULATE:
        return SimulatedMarket(
            settings.coins,
            settings.vs_currencies,
            seed=settings.simulate_seed,
            event_every_ms=settings.simulate_event_every,
            event_size_pct=settings.simulate_event_size_pct,
            event_over_ms=settings.simulate_event_over,
        ), 0.0
    setup = make_client(settings, stop, liveness.beat if liveness is not None else None)
    client = setup.client
    log.info(
        "CoinGecko %s plan at %s, budget %g calls/min", settings.coingecko_plan.value, client.base_url, setup.budget
    )
    coins: list[str] = []
    symbols: dict[str, str] = {}
    if settings.top_n:
        log.info("following the top %d coins by market cap (CW_COINS is not used)", settings.top_n)
    else:
        coins, symbols = resolve_coins(settings, client, stop)
    source = CoinGeckoSource(
        client,
        coins,
        settings.vs_currencies,
        symbols=symbols,
        top_n=settings.top_n,
        top_n_refresh_s=ms_to_s(settings.top_n_refresh),
        ids_per_call=settings.coingecko_ids_per_call,
    )
    min_gap = poll_gap(
        settings, source.calls_per_poll(), source.top_n_calls(), setup.budget, setup.monthly_left, len(coins)
    )
    return source, min_gap
