"""The README's configuration reference, generated from the settings models so it cannot drift.

``python -m crypto_watcher.reference`` prints the Markdown tables; a test checks the README has them.
"""

from __future__ import annotations

from enum import Enum

from pydantic_settings import BaseSettings

from crypto_watcher.config import ENV_PREFIX, KafkaSettings, ProcessorSettings, ProducerSettings
from crypto_watcher.durations import format_duration

DURATION_FIELDS = {
    "poll_interval",
    "coingecko_timeout",
    "max_backoff",
    "top_n_refresh",
    "coins_list_ttl",
    "stale_after",
    "simulate_event_every",
    "simulate_event_over",
    "influx_timeout",
    "commit_interval",
    "grace",
    "cooldown",
}


def _default(name: str, model: type[BaseSettings]) -> str:
    field = model.model_fields[name]
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "—"
    if name in DURATION_FIELDS:
        return f"`{format_duration(int(value))}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, list):
        return f"`{','.join(value)}`"
    return f"`{value}`"


def table(model: type[BaseSettings], skip: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    rows = ["| environment variable | default | meaning |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {_default(name, model)} | {field.description or ''} |")
    return "\n".join(rows)


def reference() -> str:
    kafka = set(KafkaSettings.model_fields)
    return "\n\n".join(
        [
            "#### Kafka (every service)",
            table(KafkaSettings),
            "#### Producer (`crypto-producer`)",
            table(ProducerSettings, kafka),
            "#### Processor (`crypto-processor`)",
            table(ProcessorSettings, kafka),
        ]
    )


if __name__ == "__main__":
    print(reference())
