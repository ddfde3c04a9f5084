"""CoinGecko HTTP access: plans, keys, the shared call budget, and one classified error per failure.

Rate limits, server errors, Cloudflare HTML pages, timeouts, resets and broken JSON all reach the
caller as a ``CoinGeckoError`` with a kind, the HTTP status and the server's Retry-After when it
sent one (``crypto_watcher.retry``). Every call first waits for its turn in the shared ``RateLimiter`` and is counted in
``cw_producer_api_calls_total`` / ``cw_producer_api_errors_total``. The caller decides *when* to try
again: the poll loop with its own backoff, everything else through ``get_with_retries``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import requests

from crypto_watcher import __version__
from crypto_watcher.config import Plan
from crypto_watcher.retry import Backoff, parse_retry_after
from producer.metrics import ProducerMetrics, default_metrics
from producer.ratelimit import RateLimiter, Stopped, UsageLog

log = logging.getLogger(__name__)

PUBLIC_URL = "https://api.coingecko.com/api/v3"
PRO_URL = "https://pro-api.coingecko.com/api/v3"


@dataclass(frozen=True)
class PlanInfo:
    base_url: str
    key_header: str | None
    calls_per_minute: float
    """Conservative default budget; CoinGecko's published figures disagree, so it is configurable."""
    monthly_calls: int | None = None
    """Monthly call credits where a figure has been published (Demo: 10,000); only informs a hint."""


PLANS: dict[Plan, PlanInfo] = {
    Plan.PUBLIC: PlanInfo(PUBLIC_URL, None, 10.0),
    Plan.DEMO: PlanInfo(PUBLIC_URL, "x-cg-demo-api-key", 30.0, 10_000),
    Plan.PRO: PlanInfo(PRO_URL, "x-cg-pro-api-key", 500.0),
}

# Kinds of failure, also the `kind` label of cw_producer_api_errors_total.
RATE_LIMITED = "rate_limited"
HTTP_5XX = "http_5xx"
HTTP_4XX = "http_4xx"
HTML = "html"
TIMEOUT = "timeout"
CONNECTION = "connection"
MALFORMED = "malformed"


class CoinGeckoError(Exception):
    """A call that produced no usable data; ``kind`` says why, ``retry_after`` is the server's wish."""

    def __init__(self, kind: str, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """401/403/404-type answers mean the configuration is wrong; retrying cannot fix them."""
        return self.kind != HTTP_4XX or self.status in (408, 425)


_COIN_PATH = re.compile(r"^/coins/(?!list$|markets$)[^/]+(/.*)?$")


def endpoint_label(path: str) -> str:
    """The ``endpoint`` label: the API path with the coin id templated (bounded cardinality)."""
    path = "/" + path.strip("/")
    match = _COIN_PATH.match(path)
    if match:
        return "/coins/{id}" + (match.group(1) or "")
    return path


def describe_failure(exc: CoinGeckoError, delay: float, attempt: int) -> str:
    """The one log line a failed call gets: what happened, and when the next try is."""
    if exc.retry_after is not None:
        why = f"server asked to wait (Retry-After {exc.retry_after:g}s)"
    elif not exc.retryable:
        why = "retrying cannot fix this (check plan, key and base URL)"
    else:
        why = f"attempt {attempt}, backing off"
    return f"CoinGecko call failed [{exc.kind}]: {exc}; next try in {delay:.1f}s ({why})"


def _error_text(body: str) -> str:
    """CoinGecko's error bodies come in several shapes; find the human message in any of them."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:120].replace("\n", " ")
    if isinstance(data, dict):
        status = data.get("status")
        if isinstance(status, dict) and "error_message" in status:
            return str(status["error_message"])
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("status"), dict):
            return str(error["status"].get("error_message", error))
        if error is not None:
            return str(error)
    return body[:120]


def _cause(exc: BaseException) -> str:
    """The innermost reason of a requests failure ("ConnectionResetError", "IncompleteRead"), short."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        nxt = seen.__cause__ or seen.__context__
        assert nxt is not None
        seen = nxt
    name = seen.__class__.__name__
    text = str(seen).split("\n")[0][:100]
    return f"{exc.__class__.__name__} ({name}: {text})" if seen is not exc else f"{name}: {text}"


class CoinGeckoClient:
    """One HTTP session to CoinGecko for one plan; ``get`` returns parsed JSON or raises CoinGeckoError."""

    def __init__(
        self,
        plan: Plan = Plan.PUBLIC,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 10.0,
        session: requests.Session | None = None,
        *,
        limiter: RateLimiter | None = None,
        metrics: ProducerMetrics | None = None,
        usage: UsageLog | None = None,
    ) -> None:
        info = PLANS[plan]
        if info.key_header and not api_key:
            raise ValueError(f"the {plan.value} plan needs an API key (CW_COINGECKO_API_KEY)")
        self.plan = plan
        self.base_url = (base_url or info.base_url).rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        # A request without a User-Agent has been answered by Cloudflare's 403 error 1020.
        self.session.headers["User-Agent"] = f"crypto-watcher/{__version__} (+https://github.com/crypto-watcher)"
        self.session.headers["Accept"] = "application/json"
        if info.key_header and api_key:
            self.session.headers[info.key_header] = api_key
        self.limiter = limiter
        """Shared by every call; None means unlimited (unit tests, the end-to-end test)."""
        self.metrics = metrics or default_metrics()
        self.usage = usage
        self._lock = threading.Lock()  # one requests.Session is not thread-safe

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """One call (after waiting for its turn in the budget): parsed JSON, or CoinGeckoError.

        Raises ``Stopped`` when the producer stops while the call waits for its turn.
        """
        path = "/" + path.strip("/")
        endpoint = endpoint_label(path)
        turn: AbstractContextManager[None] = self.limiter.call() if self.limiter is not None else nullcontext()
        status = "error"
        try:
            with turn, self._lock:
                response = self._send(path, params)
                status = str(response.status_code)
                result = self._decode(path, response)
        except CoinGeckoError as exc:
            self._count(endpoint, status, exc)
            if exc.kind == RATE_LIMITED and exc.retry_after is not None and self.limiter is not None:
                self.limiter.hold(exc.retry_after)
            raise
        self._count(endpoint, status, None)
        return result

    def _send(self, path: str, params: dict[str, Any] | None) -> requests.Response:
        url = f"{self.base_url}{path}"
        try:
            return self.session.get(url, params=params, timeout=self.timeout_s)
        except requests.Timeout as exc:
            raise CoinGeckoError(TIMEOUT, f"{path}: no answer within {self.timeout_s:g}s") from exc
        except requests.RequestException as exc:
            # ConnectionError (refused, reset), ChunkedEncodingError (body cut short), ...
            raise CoinGeckoError(CONNECTION, f"{path}: connection to {self.base_url} failed: {_cause(exc)}") from exc

    def _count(self, endpoint: str, status: str, error: CoinGeckoError | None) -> None:
        self.metrics.api_calls.labels(endpoint=endpoint, status=status).inc()
        if error is not None:
            self.metrics.api_errors.labels(kind=error.kind).inc()
        if self.usage is not None:
            self.usage.record(error is None, rate_limited=error is not None and error.kind == RATE_LIMITED)

    def get_with_retries(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
        on_retry: Callable[[CoinGeckoError, float], None] | None = None,
        wait: Callable[[float], bool] | None = None,
        max_attempts: int | None = None,
    ) -> Any:
        """``get`` until it succeeds: retryable failures back off (Retry-After first), one log line each.

        Non-retryable failures (wrong key, unknown coin, plan limits) are raised at once, and so is
        the last failure after ``max_attempts`` (None: no limit); a stop request while waiting
        raises ``Stopped``. ``wait(seconds) -> bool`` (True: stop) replaces
        the real wait in tests.
        """
        backoff = backoff or Backoff()
        stop = stop or threading.Event()
        while True:
            if stop.is_set():
                raise Stopped
            try:
                result = self.get(path, params)
            except CoinGeckoError as exc:
                if not exc.retryable or (max_attempts is not None and backoff.failures + 1 >= max_attempts):
                    backoff.reset()
                    raise
                delay = backoff.next_delay(exc.retry_after)
                log.warning("%s", describe_failure(exc, delay, backoff.failures))
                if on_retry is not None:
                    on_retry(exc, delay)
                stopped = wait(delay) if wait is not None else stop.wait(delay)
                if stopped:
                    raise Stopped from None
                continue
            backoff.reset()
            return result

    def _decode(self, path: str, response: requests.Response) -> Any:
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        try:
            body = response.text
        except (requests.RequestException, ValueError) as exc:
            raise CoinGeckoError(CONNECTION, f"{path}: response body lost: {exc}", status) from exc
        if status == 429:
            raise CoinGeckoError(
                RATE_LIMITED,
                f"{path}: rate limited (429): {_error_text(body)}",
                status,
                parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 400:
            is_html = "html" in content_type or body.lstrip().startswith("<")
            kind = HTTP_5XX if status >= 500 else HTTP_4XX
            if is_html and status != 403:
                kind = HTML if status < 500 else HTTP_5XX
            hint = " (Cloudflare HTML page)" if is_html else ""
            raise CoinGeckoError(
                kind,
                f"{path}: HTTP {status}{hint}: {_error_text(body) if not is_html else body[:80].strip()!r}",
                status,
                parse_retry_after(response.headers.get("retry-after")),
            )
        if "html" in content_type or body.lstrip().startswith("<"):
            raise CoinGeckoError(HTML, f"{path}: HTTP {status} but an HTML page instead of JSON", status)
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise CoinGeckoError(
                MALFORMED, f"{path}: malformed JSON ({exc.msg} at char {exc.pos} of {len(body)})", status
            ) from exc
