"""The notifier's Prometheus metrics (names and meanings: docs/contracts.md).

Module-level, in prometheus-client's default registry like every service's, so ``/metrics``
(crypto_watcher.health) shows them next to ``cw_build_info`` and the process metrics.
"""

from __future__ import annotations

from prometheus_client import Counter

RECEIVED = Counter("cw_notifier_alerts_received_total", "Alerts read from the alerts topic")
DELIVERIES = Counter("cw_notifier_deliveries_total", "Delivery attempts, one per target, by outcome", ["status"])
DUPLICATES = Counter("cw_notifier_duplicates_total", "Alerts skipped as already delivered")
SKIPPED = Counter(
    "cw_notifier_skipped_total",
    "Alerts not delivered on purpose: invalid (undecodable), severity (below the minimum), "
    "expired (older than the retention of delivered ids)",
    ["reason"],
)

# Every series exists from the start, so rate() and alert rules see 0 rather than nothing.
for _status in ("ok", "failed"):
    DELIVERIES.labels(status=_status)
for _reason in ("invalid", "severity", "expired"):
    SKIPPED.labels(reason=_reason)
