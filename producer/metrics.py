"""The producer's Prometheus metrics: every ``cw_producer_*`` name of docs/contracts.md, nothing else.

``ProducerMetrics()`` registers on prometheus-client's global registry (what the producer's
``/metrics`` serves, next to ``cw_build_info`` and the process metrics); tests pass their own
``CollectorRegistry`` so each test counts from zero. ``default_metrics()`` is the one global
instance every component falls back to, so a metric is never registered twice in a process.
"""

from __future__ import annotations

import threading

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

# Label values known in advance are created at zero, so dashboards and alert rules see the series
# (and `rate()` works) before the first failure ever happens.
ERROR_KINDS = ("rate_limited", "http_5xx", "http_4xx", "html", "timeout", "connection", "malformed")
SKIP_REASONS = ("bad_value", "missing_field", "unknown_id", "unchanged")


def _counter_by(name: str, doc: str, label: str, known: tuple[str, ...], registry: CollectorRegistry) -> Counter:
    """A counter with one label whose ``known`` values exist at zero from the start (see above)."""
    counter = Counter(name, doc, [label], registry=registry)
    for value in known:
        counter.labels(value)
    return counter


class ProducerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        r = self.registry
        self.api_calls = Counter(
            "cw_producer_api_calls",
            "CoinGecko HTTP calls made, by endpoint and HTTP status (`error` when no answer arrived).",
            ["endpoint", "status"],
            registry=r,
        )
        self.api_errors = _counter_by(
            "cw_producer_api_errors",
            "Failed CoinGecko calls, by kind: rate_limited, http_5xx, http_4xx, html, timeout, connection, malformed.",
            "kind",
            ERROR_KINDS,
            r,
        )
        self.ticks_published = Counter(
            "cw_producer_ticks_published", "Ticks delivered to Kafka (delivery report OK).", registry=r
        )
        self.delivery_failures = Counter(
            "cw_producer_delivery_failures", "Ticks Kafka reported as not delivered.", registry=r
        )
        self.producer_recoveries = Counter(
            "cw_producer_kafka_recoveries",
            "Fatal Kafka producer errors recovered from: a new producer re-sent every unacknowledged tick.",
            registry=r,
        )
        self.records_skipped = _counter_by(
            "cw_producer_records_skipped",
            "Quotes not published, by reason: bad_value, missing_field, unknown_id, unchanged.",
            "reason",
            SKIP_REASONS,
            r,
        )
        self.skipped_pairs = Gauge(
            "cw_producer_skipped_pairs",
            "Pairs (coin:vs, or a whole coin) the last complete poll skipped as unusable: null or bad values, "
            "missing fields, unknown ids. Each is logged once; this says how many still are.",
            registry=r,
        )
        self.stale_quotes = Gauge(
            "cw_producer_stale_quotes",
            "Quotes older than the stale limit (CW_STALE_AFTER) at the last poll.",
            registry=r,
        )
        self.last_poll = Gauge(
            "cw_producer_last_poll_timestamp_seconds", "Wall time of the last successful poll.", registry=r
        )


_default: ProducerMetrics | None = None
_lock = threading.Lock()


def default_metrics() -> ProducerMetrics:
    """The process-wide metrics on the global registry, created on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = ProducerMetrics()
        return _default
