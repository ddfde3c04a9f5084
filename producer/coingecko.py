"""CoinGecko HTTP access: plans, keys, and turning every failure into one classified error.

The poll loop decides *when* to call again; this module only says *what happened*, so rate limits,
server errors, Cloudflare HTML pages and broken JSON all reach the loop as a ``CoinGeckoError``
with a kind, the HTTP status and the server's Retry-After when it sent one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import requests

from crypto_watcher import __version__
from crypto_watcher.config import Plan

log = logging.getLogger(__name__)

PUBLIC_URL = "https://api.coingecko.com/api/v3"
PRO_URL = "https://pro-api.coingecko.com/api/v3"


@dataclass(frozen=True)
class PlanInfo:
    base_url: str
    key_header: str | None
    calls_per_minute: float
    """Conservative default budget; CoinGecko's published figures disagree, so it is configurable."""


PLANS: dict[Plan, PlanInfo] = {
    Plan.PUBLIC: PlanInfo(PUBLIC_URL, None, 10.0),
    Plan.DEMO: PlanInfo(PUBLIC_URL, "x-cg-demo-api-key", 30.0),
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


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff rather than parse clocks.
    return max(0.0, seconds)


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


class CoinGeckoClient:
    """One HTTP session to CoinGecko for one plan; ``get`` returns parsed JSON or raises CoinGeckoError."""

    def __init__(
        self,
        plan: Plan = Plan.PUBLIC,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 10.0,
        session: requests.Session | None = None,
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

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            response = self.session.get(url, params=params, timeout=self.timeout_s)
        except requests.Timeout as exc:
            raise CoinGeckoError(TIMEOUT, f"no answer within {self.timeout_s:g}s from {path}") from exc
        except requests.RequestException as exc:
            # ConnectionError, ChunkedEncodingError (body cut short), ContentDecodingError, ...
            raise CoinGeckoError(CONNECTION, f"connection to {self.base_url} failed: {exc.__class__.__name__}") from exc
        return self._decode(path, response)

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
                _retry_after(response.headers.get("retry-after")),
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
                _retry_after(response.headers.get("retry-after")),
            )
        if "html" in content_type or body.lstrip().startswith("<"):
            raise CoinGeckoError(HTML, f"{path}: HTTP {status} but an HTML page instead of JSON", status)
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise CoinGeckoError(
                MALFORMED, f"{path}: malformed JSON ({exc.msg} at char {exc.pos} of {len(body)})", status
            ) from exc
