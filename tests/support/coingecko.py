"""A local CoinGecko look-alike: a real HTTP server that tests script, clock and sabotage.

CoinGecko is unreachable from tests and its behaviour under stress (rate limits, Cloudflare pages,
half-written bodies, odd values) is exactly what the producer must survive, so the tests need a
server that answers like CoinGecko on a real socket and can be told *what* the market does and *how*
the next request fails. Everything here follows the official OpenAPI 3.0 files and the error
catalogue in ``docs/coingecko/README.md``; where the real service's behaviour is not pinned
down, the choice made is said next to the code.

Usage::

    with FakeCoinGecko(plan="demo", api_key="CG-test") as fake:
        fake.script("bitcoin", steady_then_fall(T0, 50_000.0, fall_pct=7, fall_minutes=10))
        fake.script("ethereum", steady(T0, 3_000.0, minutes=30))
        fake.advance_on_poll = True          # each quote answer moves the clock to the next event
        fake.inject(Fault.RATE_LIMITED_JSON(retry_after=2), path="/simple/price")
        client = CoinGeckoClient(Plan.DEMO, "CG-test", base_url=fake.url)
        ...
        assert fake.call_count("/simple/price") == 5

Run ``python -m tests.support.coingecko --port 8765 --coins bitcoin,ethereum`` for a live demo
market whose clock follows wall time.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import random
import re
import secrets
import socket
import struct
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self, cast
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "API_PREFIX",
    "DAY",
    "DEFAULT_COINS",
    "BadValue",
    "FakeCoinGecko",
    "Fault",
    "FaultKind",
    "KnownCoin",
    "PlanName",
    "PricePoint",
    "Quote",
    "RecordedRequest",
    "random_walk",
    "steady",
    "steady_then_fall",
    "steady_then_move",
]

API_PREFIX = "/api/v3"
PlanName = Literal["public", "demo", "pro"]
UnknownKeyAnswer = Literal["wrong_host", "unauthorized"]

DAY = 86_400
JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=UTF-8"

# Header and query names per plan: (own header, own query, other plan's header, other query).
_DEMO_HEADER, _DEMO_QUERY = "x-cg-demo-api-key", "x_cg_demo_api_key"
_PRO_HEADER, _PRO_QUERY = "x-cg-pro-api-key", "x_cg_pro_api_key"

# Currencies /coins/markets accepts even when nothing is scripted in them, so a test can tell
# "no data" ([]) from "not a currency" (400) the way CoinGecko does.
SUPPORTED_VS = frozenset({"usd", "eur", "gbp", "jpy", "chf", "cad", "aud", "cny", "krw", "inr", "btc", "eth"})

RATE_LIMIT_MESSAGE = (
    "You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/pricing "
    "to subscribe to our API plans for higher rate limits."
)
MISSING_KEY_MESSAGE = (
    "API Key Missing. Please make sure you're using the right authentication method. "
    "For Pro API, ensure you pass in x_cg_pro_api_key parameter with a Pro Key. "
    "For Demo API, ensure you pass in x_cg_demo_api_key parameter with a Demo Key."
)
WRONG_HOST_MESSAGES = {
    10010: (
        "You have provided incorrect API key credentials. If you are using Pro API key, "
        "please change your root URL from api.coingecko.com to pro-api.coingecko.com"
    ),
    10011: (
        "You have provided incorrect API key credentials. If you are using Demo API key, "
        "please change your root URL from pro-api.coingecko.com to api.coingecko.com"
    ),
}
PLAN_RESTRICTED_MESSAGE = (
    "You may not have access to this endpoint. E.g. 'This request is limited Pro API "
    "subscribers'. You may wanna subscribe to a paid plan here: "
    "https://www.coingecko.com/en/api/pricing"
)
HISTORY_LIMIT_MESSAGE = (
    "Your request exceeds the allowed time range. Public API users are limited to querying "
    "historical data within the past 365 days. Upgrade to a paid plan to enjoy full historical "
    "data access: https://www.coingecko.com/en/api/pricing."
)
INCORRECT_PATH = {"error": "Incorrect path. Please check https://www.coingecko.com/api/documentation"}


# --------------------------------------------------------------------------------------------
# Coins and scripted prices
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownCoin:
    """A /coins/list entry; ``rank`` breaks symbol ties when no coin has a market cap yet."""

    id: str
    symbol: str
    name: str
    rank: int | None = None
    circulating_supply: float = 1_000_000.0
    """Turns a scripted price into a market cap (price x supply) when the script gives none."""
    max_supply: float | None = None
    platforms: Mapping[str, str] = field(default_factory=dict)


# Real coin ids for the well-known coins. The look-alike ids that share a symbol ("btc", "eth",
# "sol") are illustrative: CoinGecko lists thousands of such tokens, and a watcher that resolves
# "btc" to the wrong one publishes nonsense, so resolution must be testable.
DEFAULT_COINS: tuple[KnownCoin, ...] = (
    KnownCoin("bitcoin", "btc", "Bitcoin", 1, 19_950_000.0, 21_000_000.0),
    KnownCoin("ethereum", "eth", "Ethereum", 2, 120_700_000.0),
    KnownCoin(
        "tether",
        "usdt",
        "Tether",
        3,
        160_000_000_000.0,
        platforms={"ethereum": "0xdac17f958d2ee523a2206206994597c13d831ec7"},
    ),
    KnownCoin("ripple", "xrp", "XRP", 4, 59_000_000_000.0, 100_000_000_000.0),
    KnownCoin("solana", "sol", "Solana", 5, 520_000_000.0),
    KnownCoin(
        "usd-coin",
        "usdc",
        "USDC",
        6,
        75_000_000_000.0,
        platforms={"ethereum": "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"},
    ),
    KnownCoin("dogecoin", "doge", "Dogecoin", 8, 150_000_000_000.0),
    KnownCoin("cardano", "ada", "Cardano", 9, 36_000_000_000.0, 45_000_000_000.0),
    KnownCoin("wrapped-bitcoin", "wbtc", "Wrapped Bitcoin", 16, 130_000.0),
    KnownCoin("batcat", "btc", "batcat", None, 1_000_000_000.0),
    KnownCoin("osmosis-allbtc", "btc", "Osmosis allBTC", None, 90.0),
    KnownCoin("ethereum-wormhole", "eth", "Ethereum (Wormhole)", None, 1_200.0),
    KnownCoin("bridged-ether-starkgate", "eth", "Bridged Ether (StarkGate)", None, 30_000.0),
    KnownCoin("wrapped-solana", "sol", "Wrapped SOL", None, 2_000_000.0),
)


@dataclass(frozen=True)
class PricePoint:
    """One scripted market event; unset figures are derived so scripts can stay ``(t, price)``."""

    time: int
    """Unix seconds: becomes ``last_updated_at`` while this point is current."""
    price: float
    market_cap: float | None = None
    volume: float | None = None
    change_24h_pct: float | None = None
    """Forces ``usd_24h_change``; otherwise it is computed against the price 24 h earlier."""


PointLike = PricePoint | tuple[float, float]


@dataclass(frozen=True)
class Quote:
    """What the fake considers current for a coin, so tests can assert without re-deriving it."""

    coin: str
    vs: str
    time: int
    price: float
    market_cap: float
    volume: float
    change_24h_pct: float


def _point(p: PointLike) -> PricePoint:
    if isinstance(p, PricePoint):
        point = p
    else:
        t, price = p
        point = PricePoint(int(t), float(price))
    if not (math.isfinite(point.price) and point.price > 0):
        # Bad prices are a *fault* (Fault.BAD_VALUE), not market data: keep the two apart so a
        # scripted market is always one the real CoinGecko could have shown.
        raise ValueError(f"scripted price must be finite and > 0, got {point.price!r}")
    return point


@dataclass
class _Series:
    """One coin's scripted path in one currency; a step function over time."""

    coin: str
    vs: str
    points: list[PricePoint]
    supply: float
    volume: float
    times: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.points.sort(key=lambda p: p.time)
        self.times = [p.time for p in self.points]

    def merge(self, points: Iterable[PricePoint]) -> None:
        by_time = {p.time: p for p in self.points}
        by_time.update((p.time, p) for p in points)
        self.points = sorted(by_time.values(), key=lambda p: p.time)
        self.times = [p.time for p in self.points]

    def at(self, t: int) -> PricePoint | None:
        i = bisect.bisect_right(self.times, t) - 1
        return self.points[i] if i >= 0 else None

    def next_time_after(self, t: int) -> int | None:
        i = bisect.bisect_right(self.times, t)
        return self.times[i] if i < len(self.times) else None

    def between(self, start: int, end: int) -> list[PricePoint]:
        """Points with ``start < time <= end``."""
        lo = bisect.bisect_right(self.times, start)
        hi = bisect.bisect_right(self.times, end)
        return self.points[lo:hi]

    def market_cap(self, p: PricePoint) -> float:
        return p.market_cap if p.market_cap is not None else p.price * self.supply

    def change_pct(self, t: int, seconds: int) -> float | None:
        now = self.at(t)
        if now is None:
            return None
        # Before a full window of history exists, compare with the first scripted point: the
        # script's start is the best "price back then" the test has told us about.
        ref = self.at(t - seconds) or self.points[0]
        return (now.price / ref.price - 1.0) * 100.0

    def quote(self, t: int) -> Quote | None:
        p = self.at(t)
        if p is None:
            return None
        change = p.change_24h_pct
        if change is None:
            change = self.change_pct(t, DAY) or 0.0
        return Quote(
            coin=self.coin,
            vs=self.vs,
            time=p.time,
            price=p.price,
            market_cap=self.market_cap(p),
            volume=p.volume if p.volume is not None else self.volume,
            change_24h_pct=change,
        )


def _grid(start: int, end: int, step: int) -> list[int]:
    times = list(range(start, end + 1, step))
    if times[-1] != end:
        times.append(end)
    return times


def steady(start: int, price: float, minutes: float, *, step_seconds: int = 60) -> list[PricePoint]:
    """A flat price, one point per step, so "nothing happens" is an explicit, pollable script."""
    return [PricePoint(t, price) for t in _grid(start, start + int(minutes * 60), step_seconds)]


def steady_then_move(
    start: int,
    price: float,
    *,
    change_pct: float,
    steady_minutes: float = 15,
    move_minutes: float = 10,
    hold_minutes: float = 0,
    step_seconds: int = 60,
) -> list[PricePoint]:
    """Flat, then a linear move of ``change_pct`` over ``move_minutes``, then flat again.

    The last point of the move is exactly ``price * (1 + change_pct / 100)`` so an alert threshold
    test can reason about the exact size of the move, with no rounding drift.
    """
    points = steady(start, price, steady_minutes, step_seconds=step_seconds)
    move_start = points[-1].time
    move_end = move_start + int(move_minutes * 60)
    target = price * (1.0 + change_pct / 100.0)
    span = move_end - move_start
    for t in _grid(move_start, move_end, step_seconds)[1:]:
        value = target if t == move_end else price + (target - price) * (t - move_start) / span
        points.append(PricePoint(t, value))
    if hold_minutes > 0:
        hold = steady(move_end, target, hold_minutes, step_seconds=step_seconds)
        points.extend(hold[1:])
    return points


def steady_then_fall(
    start: int,
    price: float,
    *,
    fall_pct: float,
    steady_minutes: float = 15,
    fall_minutes: float = 10,
    hold_minutes: float = 0,
    step_seconds: int = 60,
) -> list[PricePoint]:
    """The end-to-end alert scenario ("falls 7% within 10 minutes") in one call."""
    return steady_then_move(
        start,
        price,
        change_pct=-abs(fall_pct),
        steady_minutes=steady_minutes,
        move_minutes=fall_minutes,
        hold_minutes=hold_minutes,
        step_seconds=step_seconds,
    )


def random_walk(
    start: int,
    price: float,
    minutes: float,
    *,
    step_seconds: int = 60,
    volatility_pct: float = 0.2,
    seed: int | None = None,
) -> list[PricePoint]:
    """Plausible noise for demos and soak tests; seeded so a failing run can be replayed."""
    rng = random.Random(seed)
    points = []
    value = price
    for t in _grid(start, start + int(minutes * 60), step_seconds):
        points.append(PricePoint(t, value))
        value = max(value * (1.0 + rng.gauss(0.0, volatility_pct / 100.0)), price * 1e-6)
    return points


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


class FaultKind(StrEnum):
    RATE_LIMITED_JSON = "rate_limited_json"
    RATE_LIMITED_HTML = "rate_limited_html"
    ACCESS_DENIED = "access_denied_1020"
    SERVER_ERROR = "server_error"
    SLOW = "slow"
    CONNECTION_RESET = "connection_reset"
    TRUNCATED_JSON = "truncated_json"
    MALFORMED_JSON = "malformed_json"
    BAD_VALUE = "bad_value"
    RESPONSE = "response"


# Faults that need the real 200 answer first (they damage it) rather than replacing it.
_BODY_FAULTS = frozenset({FaultKind.TRUNCATED_JSON, FaultKind.MALFORMED_JSON, FaultKind.BAD_VALUE})
_QUOTE_ENDPOINTS = ("/simple/price", "/coins/markets")


class BadValue(StrEnum):
    """Ways one coin's quote can be wrong inside an otherwise good 200 answer."""

    NULL = "null"
    NEGATIVE = "negative"
    ZERO = "zero"
    NAN_STRING = "nan_string"
    STRING = "string"
    INFINITY = "infinity"
    """The literal ``1e400``: valid JSON grammar, but Python's parser turns it into inf."""
    MISSING_PRICE = "missing_price"
    MISSING_LAST_UPDATED = "missing_last_updated"


def _norm_path(path: str | None) -> str | None:
    if path is None:
        return None
    path = "/" + path.strip("/")
    if path.startswith(API_PREFIX + "/"):
        path = path[len(API_PREFIX) :]
    return path


@dataclass(frozen=True)
class Fault:
    """One way the next matching request goes wrong; build them with the UPPER-CASE factories.

    Faults queue up in ``inject`` order and each is used by exactly one request whose path (below
    ``/api/v3``) starts with ``path``; ``path=None`` matches any request. Faults that damage a
    good answer (truncated, malformed, bad value) wait for a request that would have been a 200.
    """

    kind: FaultKind
    path: str | None = None
    status: int = 200
    retry_after: int | None = None
    html: bool = False
    delay: float = 0.0
    cut: float = 0.5
    close_early: bool = False
    body: bytes | None = None
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    coin: str | None = None
    bad: BadValue | None = None
    vs: str = "usd"

    def matches(self, path: str) -> bool:
        return self.path is None or path == self.path or path.startswith(self.path.rstrip("/") + "/")

    def on(self, path: str | None) -> Fault:
        """The same fault aimed at another path prefix."""
        return replace(self, path=_norm_path(path))

    @classmethod
    def RATE_LIMITED_JSON(cls, retry_after: int | None = 60, *, path: str | None = None) -> Fault:
        """Cloudflare's JSON 429 with the real body; ``retry_after=None`` omits the header."""
        return cls(FaultKind.RATE_LIMITED_JSON, _norm_path(path), 429, retry_after=retry_after)

    @classmethod
    def RATE_LIMITED_HTML(cls, *, path: str | None = None) -> Fault:
        """The 429 that comes as an HTML page and without Retry-After: the client must back off alone."""
        return cls(FaultKind.RATE_LIMITED_HTML, _norm_path(path), 429, html=True)

    @classmethod
    def ACCESS_DENIED(cls, *, path: str | None = None) -> Fault:
        """Cloudflare's 403 error 1020 page, as if a firewall rule fired for this request."""
        return cls(FaultKind.ACCESS_DENIED, _norm_path(path), 403, html=True)

    @classmethod
    def SERVER_ERROR(
        cls,
        status: int = 500,
        *,
        html: bool = False,
        retry_after: int | None = None,
        path: str | None = None,
    ) -> Fault:
        """5xx from the origin (JSON) or from Cloudflare in front of it (``html=True``)."""
        if not 500 <= status <= 599:
            raise ValueError(f"SERVER_ERROR needs a 5xx status, got {status}")
        return cls(FaultKind.SERVER_ERROR, _norm_path(path), status, retry_after, html=html)

    @classmethod
    def SLOW(cls, seconds: float, *, path: str | None = None) -> Fault:
        """Answer normally but only after ``seconds``: drives client timeouts on a live socket."""
        return cls(FaultKind.SLOW, _norm_path(path), delay=seconds)

    @classmethod
    def CONNECTION_RESET(cls, *, path: str | None = None) -> Fault:
        """Read the request, then reset the TCP connection (RST) without a byte of answer."""
        return cls(FaultKind.CONNECTION_RESET, _norm_path(path), 0)

    @classmethod
    def TRUNCATED_JSON(cls, *, cut: float = 0.5, close_early: bool = False, path: str | None = None) -> Fault:
        """The real 200 body cut to its first ``cut`` fraction.

        By default Content-Length matches the cut body, so HTTP succeeds and JSON parsing fails
        (a proxy that lost the tail). ``close_early=True`` declares the full length and closes the
        connection mid-body, which HTTP clients report as an incomplete read instead.
        """
        if not 0.0 < cut < 1.0:
            raise ValueError("cut must be between 0 and 1")
        return cls(FaultKind.TRUNCATED_JSON, _norm_path(path), cut=cut, close_early=close_early)

    @classmethod
    def MALFORMED_JSON(cls, body: bytes | None = None, *, path: str | None = None) -> Fault:
        """A 200 JSON answer that is not JSON; by default the real body with a broken separator."""
        return cls(FaultKind.MALFORMED_JSON, _norm_path(path), body=body)

    @classmethod
    def BAD_VALUE(cls, coin: str, bad: BadValue, *, vs: str = "usd", path: str | None = None) -> Fault:
        """One coin's figure spoiled inside a good /simple/price (or /coins/markets) answer.

        It waits for an answer that contains ``coin``, so the spoiled value is never lost on a
        request that did not ask for that coin.
        """
        return cls(FaultKind.BAD_VALUE, _norm_path(path), coin=coin, bad=bad, vs=vs)

    @classmethod
    def RESPONSE(
        cls,
        status: int,
        body: bytes | str | Mapping[str, Any] | list[Any],
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        path: str | None = None,
    ) -> Fault:
        """Any other answer seen in the wild, e.g. ``{"error":{"status":{...}}}`` with 401 or a 408."""
        if isinstance(body, bytes | str):
            raw = body.encode() if isinstance(body, str) else body
            ctype = content_type or (HTML_TYPE if raw.lstrip().startswith(b"<") else JSON_TYPE)
        else:
            raw = _dumps(body)
            ctype = content_type or JSON_TYPE
        return cls(
            FaultKind.RESPONSE,
            _norm_path(path),
            status,
            body=raw,
            content_type=ctype,
            headers=tuple((headers or {}).items()),
        )


# --------------------------------------------------------------------------------------------
# Request log
# --------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the server saw it; ``status`` and ``fault`` are filled once it is answered."""

    method: str
    path: str
    """Below ``/api/v3`` (``/simple/price``); the raw path when the request was outside it."""
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-case names, so assertions need not guess the client's capitalisation."""
    time: float
    """Wall time of arrival (``time.time()``)."""
    clock: int
    """The fake market clock at arrival, i.e. the instant the answer describes."""
    status: int | None = None
    """None while in flight and when the connection was reset instead of answered."""
    fault: FaultKind | None = None
    finished: bool = False
    """True once the answer was written (or the connection reset)."""


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------

_RAW_MARKER = "\x00raw\x00"
_RAW_TOKEN = re.compile(r'"\\u0000raw\\u0000([^"]*)"')


@dataclass(frozen=True)
class _Raw:
    """A JSON token written verbatim, for values ``json.dumps`` refuses to produce (``1e400``)."""

    token: str


def _jsonable(value: Any) -> Any:
    """CoinGecko writes integral numbers without ``.0`` (``"usd": 76975``): so must the fake,
    or clients that only ever saw floats in tests break on the first whole-dollar price."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, _Raw):
        return _RAW_MARKER + value.token
    return value


def _dumps(value: Any) -> bytes:
    text = json.dumps(_jsonable(value), separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    if "\\u0000raw\\u0000" in text:
        text = _RAW_TOKEN.sub(lambda m: m.group(1), text)
    return text.encode()


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "true"


def _csv(value: str | None) -> list[str]:
    if not value:
        return []
    seen: dict[str, None] = {}
    for item in value.split(","):
        item = item.strip()
        if item:
            seen.setdefault(item, None)
    return list(seen)


def _precision(value: float, precision: str | None) -> float:
    if precision is None or precision == "full" or not precision.isdigit():
        return value
    return round(value, min(int(precision), 18))


def _status_error(code: int, message: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"
    return {"status": {"timestamp": now, "error_code": code, "error_message": message}}


# --------------------------------------------------------------------------------------------
# Cloudflare-style HTML pages (hand-written look-alikes carrying the markers clients key on)
# --------------------------------------------------------------------------------------------


def _cloudflare_page(title: str, code: str, headline: str, detail: str, ray: str) -> bytes:
    return f"""<!DOCTYPE html>
<!--[if lt IE 7]> <html class="no-js ie6 oldie" lang="en-US"> <![endif]-->
<html class="no-js" lang="en-US">
<head>
<title>{title}</title>
<meta charset="UTF-8" />
<meta name="robots" content="noindex, nofollow" />
</head>
<body>
  <div id="cf-wrapper">
    <div id="cf-error-details" class="cf-error-details-wrapper">
      <h1 data-translate="block_headline">{headline}</h1>
      <span class="cf-error-code">{code}</span>
      <h2 class="cf-subheadline">{detail}</h2>
      <p>Cloudflare Ray ID: <strong class="font-semibold">{ray}</strong></p>
    </div>
  </div>
</body>
</html>
""".encode()


def _html_access_denied(ray: str) -> bytes:
    return _cloudflare_page(
        "Access denied | api.coingecko.com used Cloudflare to restrict access",
        "Error 1020",
        "Access denied",
        "The site owner may have set restrictions that prevent you from accessing the site.",
        ray,
    )


def _html_rate_limited(ray: str) -> bytes:
    return _cloudflare_page(
        "Access denied | api.coingecko.com used Cloudflare to restrict access",
        "Error 1015",
        "You are being rate limited",
        "The owner of this website (api.coingecko.com) has banned you temporarily from accessing this website.",
        ray,
    )


def _html_server_error(status: int, ray: str) -> bytes:
    names = {500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable", 504: "Gateway time-out"}
    name = names.get(status, "Server error")
    return _cloudflare_page(
        f"api.coingecko.com | {status}: {name}",
        f"Error code {status}",
        name,
        "The web server reported an error. Please try again in a few minutes.",
        ray,
    )


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    payload: Any = None
    """Parsed form of a 200 JSON body, kept so body faults can damage it before encoding."""
    delivers_quotes: bool = False
    delay: float = 0.0
    reset: bool = False
    declared_length: int | None = None
    fault: FaultKind | None = None


def _json_answer(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> _Answer:
    return _Answer(status, _dumps(payload), JSON_TYPE, list(headers or []), payload=payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a SLOW handler must not hold up stop()
    allow_reuse_address = True

    def __init__(self, fake: FakeCoinGecko, port: int) -> None:
        self.fake = fake
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # clients that hang up are part of the game here
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API behind Cloudflare
    timeout = 30.0  # idle keep-alive connections give their thread back eventually

    def _srv(self) -> _Server:
        return cast(_Server, self.server)

    def setup(self) -> None:
        super().setup()
        with self._srv().sockets_lock:
            self._srv().open_sockets.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self._srv().sockets_lock:
                self._srv().open_sockets.discard(self.connection)

    def version_string(self) -> str:
        return "cloudflare"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr lines; the request log is the record tests use."""

    def do_GET(self) -> None:
        self._srv().fake._serve(self)


class FakeCoinGecko:
    """A CoinGecko API on ``127.0.0.1:<ephemeral port>`` that answers from a scripted market.

    ``plan`` decides which host it pretends to be and which key it wants: ``public`` and ``demo``
    are api.coingecko.com (keyless allowed only on ``public``), ``pro`` is pro-api.coingecko.com.
    ``api_key`` defaults to a fixed test key for demo/pro (see ``auth_headers``).

    ``unknown_key`` picks the answer to a key of the right kind but unknown value: CoinGecko
    cannot tell a typo from a key of the other host, so by default it answers like a wrong host
    (400, 10010 on api / 10011 on pro, as seen in the wild); ``"unauthorized"`` gives 401 10002.

    ``rate_limit_per_minute`` (off by default) enforces a sliding one-minute budget in wall time,
    answering 429 JSON with Retry-After once it is spent, for tests of the client's own limiter.
    On Pro, ``GET /key`` reports it as the key's own limit (``api_key_rate_limit_request_per_minute``,
    500 when off) and ``plan_rate_limit_per_minute`` as the plan-wide one
    (``rate_limit_request_per_minute``, shared by every key of the account). The plan-wide figure
    defaults to twice the key's, so the two always differ and a client budgeting with the wrong one
    is caught.
    """

    def __init__(
        self,
        plan: PlanName = "public",
        api_key: str | None = None,
        *,
        coins: Iterable[KnownCoin] = DEFAULT_COINS,
        port: int = 0,
        unknown_key: UnknownKeyAnswer = "wrong_host",
        rate_limit_per_minute: int | None = None,
        monthly_call_credit: int = 500_000,
        plan_rate_limit_per_minute: int | None = None,
    ) -> None:
        if plan not in ("public", "demo", "pro"):
            raise ValueError(f"plan must be public, demo or pro, got {plan!r}")
        self.plan: PlanName = plan
        if api_key is None and plan != "public":
            api_key = f"CG-fake-{plan}-key"
        self.api_key = api_key
        self.unknown_key: UnknownKeyAnswer = unknown_key
        self.rate_limit_per_minute = rate_limit_per_minute
        self.plan_rate_limit_per_minute = plan_rate_limit_per_minute
        self.monthly_call_credit = monthly_call_credit
        self.advance_on_poll = False
        """When True, every answer that delivers quotes moves the clock to the next scripted
        event, so N polls see N consecutive quotes with no sleeping and no clock juggling."""

        self._lock = threading.RLock()
        self._calls_changed = threading.Condition(self._lock)
        self._coins: dict[str, KnownCoin] = {c.id: c for c in coins}
        self._series: dict[tuple[str, str], _Series] = {}
        self._faults: list[Fault] = []
        self._calls: list[RecordedRequest] = []
        self._budget: list[float] = []
        self._clock: int | None = None
        self._wall_offset: int | None = None
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.internal_errors: list[str] = []
        """Tracebacks of bugs in the fake itself (answered as plain 500); tests assert it stays empty."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stop.clear()
        self._server = _Server(self, self._port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-coingecko-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stop.set()  # wakes SLOW handlers
        server.shutdown()
        with server.sockets_lock:
            sockets = list(server.open_sockets)
        for sock in sockets:  # unblock keep-alive handlers waiting for a next request
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeCoinGecko is not running; use it as a context manager")
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The base URL a client is configured with, ``/api/v3`` included."""
        return self.root_url + API_PREFIX

    @property
    def host_name(self) -> str:
        """The real host this instance stands in for; error messages name it."""
        return "pro-api.coingecko.com" if self.plan == "pro" else "api.coingecko.com"

    def auth_headers(self) -> dict[str, str]:
        """Headers a correctly configured client sends (key, if any, plus a User-Agent)."""
        headers = {"User-Agent": "fake-coingecko-tests/1"}
        if self.plan == "demo" or (self.plan == "public" and self.api_key):
            headers[_DEMO_HEADER] = cast(str, self.api_key)
        elif self.plan == "pro":
            headers[_PRO_HEADER] = cast(str, self.api_key)
        return headers

    # -- market registry and scripts ---------------------------------------------------------

    def register_coin(self, coin: KnownCoin) -> None:
        """Add or replace a /coins/list entry (e.g. another coin sharing a symbol)."""
        with self._lock:
            self._coins[coin.id] = coin

    @property
    def coins(self) -> list[KnownCoin]:
        with self._lock:
            return sorted(self._coins.values(), key=lambda c: c.id)

    def script(
        self,
        coin: str,
        points: Iterable[PointLike],
        *,
        vs: str = "usd",
        symbol: str | None = None,
        name: str | None = None,
        market_cap: float | None = None,
        volume: float | None = None,
        replace_existing: bool = True,
    ) -> None:
        """Say what ``coin`` costs in ``vs`` over event time.

        Points are ``(unix_seconds, price)`` pairs or ``PricePoint``s. ``market_cap`` is the cap at
        the first point (later caps follow the price); ``volume`` is the constant 24 h volume.
        Unknown coins are registered with ``symbol``/``name`` so /coins/list knows them.
        """
        parsed = [_point(p) for p in points]
        if not parsed:
            raise ValueError("a script needs at least one point")
        vs = vs.lower()
        with self._lock:
            known = self._coins.get(coin)
            if known is None or symbol is not None or name is not None:
                base = known or KnownCoin(coin, coin[:3], coin.replace("-", " ").title())
                known = replace(base, symbol=symbol or base.symbol, name=name or base.name)
                self._coins[coin] = known
            first = min(parsed, key=lambda p: p.time)
            supply = market_cap / first.price if market_cap else known.circulating_supply
            key = (coin, vs)
            existing = self._series.get(key)
            if existing is not None and not replace_existing:
                existing.merge(parsed)
                return
            vol = volume if volume is not None else first.price * supply * 0.03
            self._series[key] = _Series(coin, vs, parsed, supply, vol)

    def append_point(self, coin: str, t: int, price: float, *, vs: str = "usd") -> None:
        """Extend a running script (the live demo's random walk does this)."""
        with self._lock:
            series = self._series.get((coin, vs.lower()))
            if series is None:
                self.script(coin, [(t, price)], vs=vs)
            else:
                series.merge([_point((t, price))])

    def quote(self, coin: str, vs: str = "usd", at: int | None = None) -> Quote | None:
        """The quote /simple/price would give now (or at ``at``); None if none exists yet."""
        with self._lock:
            series = self._series.get((coin, vs.lower()))
            return None if series is None else series.quote(self.clock if at is None else at)

    # -- clock ------------------------------------------------------------------------------

    @property
    def clock(self) -> int:
        """Market time in Unix seconds.

        Until set, it sits on the earliest scripted point, so "script, then poll" starts at the
        start of the script rather than at some wall time the script never mentions.
        """
        with self._lock:
            if self._wall_offset is not None:
                return int(time.time()) + self._wall_offset
            if self._clock is not None:
                return self._clock
            firsts = [s.times[0] for s in self._series.values()]
            return min(firsts) if firsts else int(time.time())

    def set_clock(self, t: int) -> None:
        with self._lock:
            self._wall_offset = None
            self._clock = int(t)

    def advance(self, seconds: int) -> int:
        with self._lock:
            self.set_clock(self.clock + int(seconds))
            return self.clock

    def use_wall_clock(self, offset: int = 0) -> None:
        """Let the clock follow ``time.time() + offset`` (live demo mode)."""
        with self._lock:
            self._wall_offset = int(offset)

    def next_event_time(self) -> int | None:
        """The earliest scripted time after the clock, across all coins and currencies."""
        with self._lock:
            now = self.clock
            nexts = [t for s in self._series.values() if (t := s.next_time_after(now)) is not None]
            return min(nexts) if nexts else None

    def advance_to_next_event(self) -> int | None:
        """Move to the next scripted event; None (clock unchanged) once the script is over."""
        with self._lock:
            if self._wall_offset is not None:
                return None
            nxt = self.next_event_time()
            if nxt is not None:
                self._clock = nxt
            return nxt

    # -- faults -----------------------------------------------------------------------------

    def inject(self, *faults: Fault, path: str | None = None, times: int = 1) -> None:
        """Queue faults for the next matching requests; ``path`` re-aims them all."""
        with self._lock:
            for _ in range(times):
                for fault in faults:
                    self._faults.append(fault.on(path) if path is not None else fault)

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- request log ------------------------------------------------------------------------

    def calls(self, path: str | None = None) -> list[RecordedRequest]:
        """Requests so far, oldest first; ``path`` filters by prefix below ``/api/v3``."""
        prefix = _norm_path(path)
        with self._lock:
            return [
                c
                for c in self._calls
                if prefix is None or c.path == prefix or c.path.startswith(prefix.rstrip("/") + "/")
            ]

    def call_count(self, path: str | None = None) -> int:
        return len(self.calls(path))

    def counts(self) -> Counter[str]:
        """Requests per path, e.g. ``{"/simple/price": 3, "/ping": 1}``."""
        with self._lock:
            return Counter(c.path for c in self._calls)

    def last_call(self, path: str | None = None) -> RecordedRequest:
        found = self.calls(path)
        if not found:
            raise AssertionError(f"no request to {path or 'any path'} was made")
        return found[-1]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def wait_for_calls(self, n: int, path: str | None = None, timeout: float = 5.0) -> bool:
        """Block until ``n`` matching requests were *answered*; for clients running in threads."""
        deadline = time.monotonic() + timeout
        with self._calls_changed:
            while True:
                done = [c for c in self.calls(path) if c.finished]
                if len(done) >= n:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._calls_changed.wait(left)

    # -- request handling -------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        raw_path = parts.path.rstrip("/") or "/"
        inside = raw_path.startswith(API_PREFIX + "/")
        path = raw_path[len(API_PREFIX) :] if inside else raw_path
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            record = RecordedRequest(handler.command, path, query, headers, time.time(), self.clock)
            self._calls.append(record)
            try:
                answer = self._answer(inside, path, query, headers)
            except Exception:
                self.internal_errors.append(traceback.format_exc())
                answer = _Answer(500, b"fake CoinGecko bug, see internal_errors", "text/plain")
            record.fault = answer.fault
        try:
            if answer.delay:
                self._stop.wait(answer.delay)
            # The log says what is being answered before the bytes leave, so a client that has
            # just read its answer never finds the log behind it.
            with self._lock:
                record.status = None if answer.reset else answer.status
            if answer.reset:
                self._reset(handler)
            else:
                self._write(handler, answer)
        finally:
            with self._calls_changed:
                record.finished = True
                self._calls_changed.notify_all()

    @staticmethod
    def _reset(handler: _Handler) -> None:
        conn = handler.connection
        handler.close_connection = True
        try:
            # Linger 0 turns close() into a TCP RST: the client sees "connection reset by peer",
            # not a polite EOF. The rfile holds a reference that would otherwise delay the close.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.rfile.close()
            conn.close()
        except OSError:
            pass

    @staticmethod
    def _write(handler: _Handler, answer: _Answer) -> None:
        try:
            handler.send_response(answer.status)
            handler.send_header("Content-Type", answer.content_type)
            length = answer.declared_length if answer.declared_length is not None else len(answer.body)
            handler.send_header("Content-Length", str(length))
            handler.send_header("CF-RAY", f"{secrets.token_hex(8)}-AMS")
            for name, value in answer.headers:
                handler.send_header(name, value)
            if answer.declared_length is not None:
                handler.send_header("Connection", "close")
                handler.close_connection = True
            handler.end_headers()
            handler.wfile.write(answer.body)
        except OSError:
            handler.close_connection = True  # the client gave up (typically after a SLOW fault)

    def _take_fault(self, path: str, *, body_stage: bool, payload: Any = None) -> Fault | None:
        for i, fault in enumerate(self._faults):
            if not fault.matches(path):
                continue
            is_body = fault.kind in _BODY_FAULTS
            if not body_stage:
                if is_body:
                    return None  # it is this request's fault, but only once there is a body
                return self._faults.pop(i)
            if not is_body:
                continue
            if fault.kind is FaultKind.BAD_VALUE and not _bad_value_applies(fault, path, payload):
                continue
            return self._faults.pop(i)
        return None

    def _answer(self, inside: bool, path: str, query: dict[str, str], headers: dict[str, str]) -> _Answer:
        ray = f"{secrets.token_hex(8)}-AMS"
        if not headers.get("user-agent", "").strip():
            # Cloudflare stops these before CoinGecko sees them; no fault or budget is spent.
            return _Answer(403, _html_access_denied(ray), HTML_TYPE)
        limited = self._spend_budget()
        if limited is not None:
            return limited
        fault = self._take_fault(path, body_stage=False)
        delay = 0.0
        if fault is not None:
            if fault.kind is FaultKind.SLOW:
                delay = fault.delay
            else:
                answer = self._fault_answer(fault, ray)
                answer.fault = fault.kind
                return answer
        answer = self._route(inside, path, query, headers)
        if answer.status == 200 and answer.payload is not None:
            damage = self._take_fault(path, body_stage=True, payload=answer.payload)
            if damage is not None:
                answer = _damage(answer, damage)
        if delay:
            answer.delay, answer.fault = delay, FaultKind.SLOW
        if answer.delivers_quotes and self.advance_on_poll and answer.fault in (None, FaultKind.BAD_VALUE):
            # Advance while still holding the lock and before writing, so a client that polls
            # again the instant it has read this answer already sees the next event.
            self.advance_to_next_event()
        return answer

    def _spend_budget(self) -> _Answer | None:
        limit = self.rate_limit_per_minute
        if limit is None:
            return None
        now = time.monotonic()
        self._budget = [t for t in self._budget if now - t < 60.0]
        if len(self._budget) >= limit:
            retry = max(1, math.ceil(60.0 - (now - self._budget[0])))
            body = _status_error(429, RATE_LIMIT_MESSAGE)
            return _json_answer(429, body, [("Retry-After", str(retry))])
        self._budget.append(now)
        return None

    @staticmethod
    def _fault_answer(fault: Fault, ray: str) -> _Answer:
        kind = fault.kind
        extra = [("Retry-After", str(fault.retry_after))] if fault.retry_after is not None else []
        if kind is FaultKind.RATE_LIMITED_JSON:
            return _Answer(429, _dumps(_status_error(429, RATE_LIMIT_MESSAGE)), JSON_TYPE, extra)
        if kind is FaultKind.RATE_LIMITED_HTML:
            return _Answer(429, _html_rate_limited(ray), HTML_TYPE)
        if kind is FaultKind.ACCESS_DENIED:
            return _Answer(403, _html_access_denied(ray), HTML_TYPE)
        if kind is FaultKind.SERVER_ERROR:
            if fault.html:
                return _Answer(fault.status, _html_server_error(fault.status, ray), HTML_TYPE, extra)
            messages = {
                500: "Internal Server Error",
                502: "Bad Gateway",
                503: "Service Unavailable",
                504: "Gateway Timeout",
            }
            body = _status_error(fault.status, messages.get(fault.status, "Server Error"))
            return _Answer(fault.status, _dumps(body), JSON_TYPE, extra)
        if kind is FaultKind.CONNECTION_RESET:
            return _Answer(0, reset=True)
        if kind is FaultKind.RESPONSE:
            return _Answer(fault.status, fault.body or b"", fault.content_type, list(fault.headers))
        raise AssertionError(f"unhandled fault kind {kind}")

    # -- auth -------------------------------------------------------------------------------

    def _auth_error(self, query: dict[str, str], headers: dict[str, str]) -> _Answer | None:
        demo_key = headers.get(_DEMO_HEADER) or query.get(_DEMO_QUERY)
        pro_key = headers.get(_PRO_HEADER) or query.get(_PRO_QUERY)
        if self.plan == "pro":
            own, foreign, wrong_host = pro_key, demo_key, 10011
        else:
            own, foreign, wrong_host = demo_key, pro_key, 10010
        if own:
            if own == self.api_key:
                return None
            if self.unknown_key == "unauthorized":
                return _json_answer(401, _status_error(10002, "Invalid API Key"))
            return _json_answer(400, _status_error(wrong_host, WRONG_HOST_MESSAGES[wrong_host]))
        if foreign:
            return _json_answer(400, _status_error(wrong_host, WRONG_HOST_MESSAGES[wrong_host]))
        if self.plan == "public":
            return None
        return _json_answer(401, _status_error(10002, MISSING_KEY_MESSAGE))

    # -- endpoints --------------------------------------------------------------------------

    def _route(self, inside: bool, path: str, query: dict[str, str], headers: dict[str, str]) -> _Answer:
        if not inside:
            return _json_answer(404, INCORRECT_PATH)
        denied = self._auth_error(query, headers)
        if denied is not None:
            return denied
        if path == "/ping":
            return _json_answer(200, {"gecko_says": "(V3) To the Moon!"})
        if path == "/simple/price":
            return self._simple_price(query)
        if path == "/coins/markets":
            return self._coins_markets(query)
        if path == "/coins/list":
            return self._coins_list(query)
        if path == "/key":
            return self._key()
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[0] == "coins" and parts[2:] == ["market_chart", "range"]:
            return self._market_chart_range(parts[1], query)
        return _json_answer(404, INCORRECT_PATH)

    def _resolve(self, query: dict[str, str]) -> list[str] | None:
        """Coin ids asked for; CoinGecko gives ``ids`` priority over ``names`` over ``symbols``.

        Answers stay keyed by coin id. For ``names``/``symbols`` lookups the real service's
        keying is not pinned down by the spec, so clients should resolve symbols through
        /coins/list and query by id (which this fake fully supports).
        """
        ids = _csv(query.get("ids"))
        if ids:
            return ids
        names = [n.lower() for n in _csv(query.get("names"))]
        if names:
            return [c.id for n in names for c in self._coins.values() if c.name.lower() == n]
        symbols = [s.lower() for s in _csv(query.get("symbols"))]
        if not symbols:
            return None
        everything = query.get("include_tokens") == "all"
        found: list[str] = []
        for sym in symbols:
            matches = [c for c in self._coins.values() if c.symbol.lower() == sym]
            if not everything and matches:
                matches = [max(matches, key=self._prominence)]
            found.extend(c.id for c in matches)
        return found

    def _prominence(self, coin: KnownCoin) -> tuple[float, float]:
        caps = [
            q.market_cap for s in self._series.values() if s.coin == coin.id and (q := s.quote(self.clock)) is not None
        ]
        rank = coin.rank if coin.rank is not None else 10**9
        return (max(caps, default=0.0), -rank)

    def _simple_price(self, query: dict[str, str]) -> _Answer:
        vs_list = [v.lower() for v in _csv(query.get("vs_currencies"))]
        if not vs_list:
            return _json_answer(400, {"error": "Missing parameter vs_currencies"})
        ids = self._resolve(query)
        if ids is None:
            return _json_answer(400, {"error": "Missing parameter ids"})
        precision = query.get("precision")
        now = self.clock
        body: dict[str, Any] = {}
        for coin in ids:
            if coin not in self._coins:
                continue  # unknown ids are silently absent, exactly like CoinGecko
            entry: dict[str, Any] = {}
            updated: list[int] = []
            for vs in vs_list:
                series = self._series.get((coin, vs))
                q = series.quote(now) if series is not None else None
                if q is None:
                    continue  # a listed coin with no price in vs answers {} for it
                entry[vs] = _precision(q.price, precision)
                if _truthy(query.get("include_market_cap")):
                    entry[f"{vs}_market_cap"] = q.market_cap
                if _truthy(query.get("include_24hr_vol")):
                    entry[f"{vs}_24h_vol"] = q.volume
                if _truthy(query.get("include_24hr_change")):
                    entry[f"{vs}_24h_change"] = q.change_24h_pct
                updated.append(q.time)
            if updated and _truthy(query.get("include_last_updated_at")):
                entry["last_updated_at"] = max(updated)
            body[coin] = entry
        answer = _json_answer(200, body)
        answer.delivers_quotes = True
        return answer

    def _coins_markets(self, query: dict[str, str]) -> _Answer:
        vs = (query.get("vs_currency") or "").strip().lower()
        if not vs:
            return _json_answer(400, {"error": "Missing parameter vs_currency"})
        if vs not in SUPPORTED_VS and not any(s.vs == vs for s in self._series.values()):
            return _json_answer(400, {"error": "invalid vs_currency"})
        now = self.clock
        quoted = [(s, q) for s in self._series.values() if s.vs == vs and (q := s.quote(now))]
        by_cap = sorted(quoted, key=lambda sq: -sq[1].market_cap)
        ranks = {s.coin: i + 1 for i, (s, _) in enumerate(by_cap)}
        wanted = self._resolve(query)
        if wanted is not None:
            order_of = {coin: i for i, coin in enumerate(wanted)}
            quoted = [(s, q) for s, q in quoted if s.coin in order_of]
        order = query.get("order") or "market_cap_desc"
        sorters: dict[str, tuple[Any, bool]] = {
            "market_cap_desc": (lambda sq: sq[1].market_cap, True),
            "market_cap_asc": (lambda sq: sq[1].market_cap, False),
            "volume_desc": (lambda sq: sq[1].volume, True),
            "volume_asc": (lambda sq: sq[1].volume, False),
            "id_desc": (lambda sq: sq[0].coin, True),
            "id_asc": (lambda sq: sq[0].coin, False),
        }
        key, reverse = sorters.get(order, sorters["market_cap_desc"])
        quoted.sort(key=key, reverse=reverse)
        per_page = min(max(_int(query.get("per_page"), 100), 1), 250)  # CoinGecko caps at 250
        page = max(_int(query.get("page"), 1), 1)
        rows = quoted[(page - 1) * per_page : page * per_page]
        windows = [w.strip() for w in _csv(query.get("price_change_percentage"))]
        precision = query.get("precision")
        body = [self._market_row(s, q, ranks[s.coin], now, windows, query, precision) for s, q in rows]
        answer = _json_answer(200, body)
        answer.delivers_quotes = True
        return answer

    def _market_row(
        self,
        s: _Series,
        q: Quote,
        rank: int,
        now: int,
        windows: Sequence[str],
        query: dict[str, str],
        precision: str | None,
    ) -> dict[str, Any]:
        coin = self._coins[s.coin]
        day = s.between(now - DAY, now) or [cast(PricePoint, s.at(now))]
        history = s.between(-(2**62), now)
        ath = max(history, key=lambda p: p.price)
        atl = min(history, key=lambda p: p.price)
        ref = s.at(now - DAY) or s.points[0]
        ref_cap = s.market_cap(ref)
        supply = q.market_cap / q.price
        max_supply = coin.max_supply
        row: dict[str, Any] = {
            "id": coin.id,
            "symbol": coin.symbol,
            "name": coin.name,
            "image": f"https://coin-images.coingecko.com/coins/images/1/large/{coin.id}.png",
            "current_price": _precision(q.price, precision),
            "market_cap": q.market_cap,
            "market_cap_rank": rank,
            "fully_diluted_valuation": q.price * (max_supply or supply),
            "total_volume": q.volume,
            "high_24h": _precision(max(p.price for p in day), precision),
            "low_24h": _precision(min(p.price for p in day), precision),
            "price_change_24h": q.price - ref.price,
            "price_change_percentage_24h": q.change_24h_pct,
            "market_cap_change_24h": q.market_cap - ref_cap,
            "market_cap_change_percentage_24h": (q.market_cap / ref_cap - 1.0) * 100.0,
            "circulating_supply": supply,
            "total_supply": max_supply or supply,
            "max_supply": max_supply,
            "ath": _precision(ath.price, precision),
            "ath_change_percentage": (q.price / ath.price - 1.0) * 100.0,
            "ath_date": _iso(ath.time),
            "atl": _precision(atl.price, precision),
            "atl_change_percentage": (q.price / atl.price - 1.0) * 100.0,
            "atl_date": _iso(atl.time),
            "roi": None,
            "last_updated": _iso(q.time),
        }
        if _truthy(query.get("include_rehypothecated")):
            row["market_cap_rank_with_rehypothecated"] = rank
        if _truthy(query.get("sparkline")):
            hours = range(now - 7 * DAY, now + 1, 3600)
            row["sparkline_in_7d"] = {"price": [p.price for t in hours if (p := s.at(t))]}
        spans = {
            "1h": 3600,
            "24h": DAY,
            "7d": 7 * DAY,
            "14d": 14 * DAY,
            "30d": 30 * DAY,
            "200d": 200 * DAY,
            "1y": 365 * DAY,
        }
        for w in windows:
            if w in spans:
                row[f"price_change_percentage_{w}_in_currency"] = s.change_pct(now, spans[w])
        return row

    def _coins_list(self, query: dict[str, str]) -> _Answer:
        if query.get("status") == "inactive":
            return _json_answer(200, [])
        platforms = _truthy(query.get("include_platform"))
        body = []
        for coin in self.coins:
            row: dict[str, Any] = {"id": coin.id, "symbol": coin.symbol, "name": coin.name}
            if platforms:
                row["platforms"] = dict(coin.platforms)
            body.append(row)
        return _json_answer(200, body)

    def _market_chart_range(self, coin: str, query: dict[str, str]) -> _Answer:
        if coin not in self._coins:
            return _json_answer(404, {"error": "coin not found"})
        vs = (query.get("vs_currency") or "").strip().lower()
        for name in ("vs_currency", "from", "to"):
            if not (query.get(name) or "").strip():
                return _json_answer(400, {"error": f"Missing parameter {name}"})
        start = _parse_time(query["from"], self.plan == "pro")
        end = _parse_time(query["to"], self.plan == "pro")
        if start is None or end is None:
            bad = "from" if start is None else "to"
            return _json_answer(400, {"error": f"Invalid value for parameter {bad}"})
        now = self.clock
        if self.plan != "pro" and start < now - 365 * DAY:
            return _json_answer(401, {"error": _status_error(10012, HISTORY_LIMIT_MESSAGE)})
        interval = query.get("interval") if self.plan == "pro" else None
        steps = {"5m": 300, "hourly": 3600, "daily": DAY}
        if interval in steps:
            step = steps[interval]
        elif end - start <= DAY and start >= now - DAY:
            step = 300  # 5-minutely data exists only for the most recent day
        elif end - start <= 90 * DAY:
            step = 3600
        else:
            step = DAY
        precision = query.get("precision")
        series = self._series.get((coin, vs))
        prices: list[list[float]] = []
        caps: list[list[float]] = []
        volumes: list[list[float]] = []
        if series is not None and start <= end:
            first = -(-start // step) * step  # samples sit on whole steps (midnight UTC for daily)
            for t in range(first, min(end, now) + 1, step):
                q = series.quote(t)
                if q is None:
                    continue
                ms = t * 1000
                prices.append([ms, _precision(q.price, precision)])
                caps.append([ms, q.market_cap])
                volumes.append([ms, q.volume])
        return _json_answer(200, {"prices": prices, "market_caps": caps, "total_volumes": volumes})

    def _key(self) -> _Answer:
        if self.plan != "pro":
            return _json_answer(401, _status_error(10005, PLAN_RESTRICTED_MESSAGE))
        used = sum(1 for c in self._calls if c.path != "/key")
        key_per_minute = self.rate_limit_per_minute or 500
        plan_per_minute = self.plan_rate_limit_per_minute or 2 * key_per_minute
        return _json_answer(
            200,
            {
                "plan": "Other",
                "rate_limit_request_per_minute": plan_per_minute,
                "monthly_call_credit": self.monthly_call_credit,
                "current_total_monthly_calls": used,
                "current_remaining_monthly_calls": max(self.monthly_call_credit - used, 0),
                "api_key_rate_limit_request_per_minute": key_per_minute,
                "api_key_monthly_call_credit": self.monthly_call_credit,
                "api_key_current_total_monthly_calls": used,
            },
        )


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None and value.strip() else default
    except ValueError:
        return default


def _parse_time(value: str, allow_iso: bool) -> int | None:
    """Unix seconds everywhere; Pro also takes ``YYYY-MM-DD`` / ``YYYY-MM-DDTHH:MM`` (UTC)."""
    value = value.strip()
    try:
        return int(float(value))
    except ValueError:
        pass
    if not allow_iso:
        return None
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M"):
        try:
            return int(datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp())
        except ValueError:
            continue
    return None


def _bad_value_applies(fault: Fault, path: str, payload: Any) -> bool:
    if path == "/simple/price":
        return isinstance(payload, dict) and fault.coin in payload
    if path == "/coins/markets":
        return isinstance(payload, list) and any(r.get("id") == fault.coin for r in payload)
    return False


def _spoil(entry: dict[str, Any], price_key: str, time_key: str, bad: BadValue) -> None:
    price = entry.get(price_key)
    number = float(price) if isinstance(price, int | float) else 1.0
    if bad is BadValue.NULL:
        entry[price_key] = None
    elif bad is BadValue.NEGATIVE:
        entry[price_key] = -abs(number)
    elif bad is BadValue.ZERO:
        entry[price_key] = 0
    elif bad is BadValue.NAN_STRING:
        entry[price_key] = "NaN"
    elif bad is BadValue.STRING:
        entry[price_key] = "abc"
    elif bad is BadValue.INFINITY:
        entry[price_key] = _Raw("1e400")
    elif bad is BadValue.MISSING_PRICE:
        entry.pop(price_key, None)
    elif bad is BadValue.MISSING_LAST_UPDATED:
        entry.pop(time_key, None)


def _damage(answer: _Answer, fault: Fault) -> _Answer:
    """Spoil a good 200 answer as ``fault`` says; the status and headers stay those of success."""
    damaged = replace(answer, fault=fault.kind)
    if fault.kind is FaultKind.BAD_VALUE:
        payload = json.loads(answer.body)  # a private copy to spoil
        bad = cast(BadValue, fault.bad)
        if isinstance(payload, dict):
            _spoil(payload[cast(str, fault.coin)], fault.vs, "last_updated_at", bad)
        else:
            for row in payload:
                if row.get("id") == fault.coin:
                    _spoil(row, "current_price", "last_updated", bad)
        damaged.body = _dumps(payload)
        damaged.payload = payload
        return damaged
    damaged.delivers_quotes = False  # nothing parseable reached the client
    if fault.kind is FaultKind.TRUNCATED_JSON:
        keep = max(1, min(len(answer.body) - 1, int(len(answer.body) * fault.cut)))
        damaged.body = answer.body[:keep]
        if fault.close_early:
            damaged.declared_length = len(answer.body)
        return damaged
    # MALFORMED_JSON
    if fault.body is not None:
        damaged.body = fault.body
    else:
        text = answer.body.decode()
        damaged.body = (text.replace(":", " = ", 1) if ":" in text else text + "}").encode()
    return damaged


# --------------------------------------------------------------------------------------------
# CLI: a live demo market
# --------------------------------------------------------------------------------------------

_DEMO_PRICES = {
    "bitcoin": 65_000.0,
    "ethereum": 3_200.0,
    "tether": 1.0,
    "solana": 150.0,
    "ripple": 0.6,
    "dogecoin": 0.15,
    "cardano": 0.45,
    "usd-coin": 1.0,
}


def _parse_fall(spec: str) -> tuple[str, float, float]:
    coin, pct, minutes = spec.split(":")
    return coin, float(pct), float(minutes)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a random-walk market on wall time until interrupted, for demos by hand."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.coingecko",
        description="Local CoinGecko look-alike with a live random-walk market (127.0.0.1 only).",
    )
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--coins", default="bitcoin,ethereum", help="comma-separated coin ids")
    parser.add_argument("--plan", choices=["public", "demo", "pro"], default="public")
    parser.add_argument("--api-key", default=None)
    parser.add_argument(
        "--refresh", type=float, default=20.0, help="seconds between new quotes (CoinGecko: 60 keyless/demo, 20 paid)"
    )
    parser.add_argument("--volatility", type=float, default=0.15, help="%% std-dev per refresh")
    parser.add_argument(
        "--fall",
        action="append",
        default=[],
        metavar="COIN:PCT:MINUTES",
        help="make COIN fall PCT%% over MINUTES, starting one minute from now",
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    coins = _csv(args.coins)
    falls = {coin: (pct, minutes) for coin, pct, minutes in map(_parse_fall, args.fall)}
    rng = random.Random(args.seed)
    now = int(time.time())
    step = max(1, int(args.refresh))
    fake = FakeCoinGecko(plan=args.plan, api_key=args.api_key, port=args.port)
    fake.use_wall_clock()
    last: dict[str, float] = {}
    for i, coin in enumerate(coins):
        walk = random_walk(
            now - DAY,
            _DEMO_PRICES.get(coin, 1.0),
            24 * 60,
            step_seconds=300,
            volatility_pct=args.volatility,
            seed=rng.randrange(2**32) + i,
        )
        fake.script(coin, walk)
        last[coin] = walk[-1].price
    fall_start = now + 60
    with fake:
        print(f"fake CoinGecko ({args.plan}) serving {fake.url}", flush=True)
        print(
            f"try: curl -A demo '{fake.url}/simple/price?ids={','.join(coins)}"
            f"&vs_currencies=usd&include_last_updated_at=true'",
            flush=True,
        )
        try:
            while True:
                time.sleep(step)
                t = int(time.time())
                for coin in coins:
                    drift = 0.0
                    if coin in falls:
                        pct, minutes = falls[coin]
                        if fall_start <= t <= fall_start + minutes * 60:
                            steps_in_fall = max(1.0, minutes * 60 / step)
                            drift = -pct / 100.0 / steps_in_fall
                    noise = rng.gauss(0.0, args.volatility / 100.0)
                    last[coin] = max(last[coin] * (1.0 + drift + noise), 1e-9)
                    fake.append_point(coin, t, last[coin])
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
