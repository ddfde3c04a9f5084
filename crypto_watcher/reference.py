"""The README's configuration reference, generated from the settings models so it cannot drift.

``python -m crypto_watcher.reference`` prints the Markdown tables; a test checks the README has them.
"""

from __future__ import annotations

from pydantic import BaseModel
from pydantic_settings import BaseSettings

from crypto_watcher.cli_help import env_name, shown_default
from crypto_watcher.config import (
    KafkaSettings,
    LogSettings,
    NotifierSettings,
    ProcessorSettings,
    ProducerSettings,
    unset_means,
)
from crypto_watcher.durations import is_duration


def duration_fields(model: type[BaseModel]) -> set[str]:
    """Settings parsed as durations: those of the shared duration types (``crypto_watcher.durations``)."""
    return {name for name, field in model.model_fields.items() if is_duration(field)}


def _default(name: str, model: type[BaseSettings]) -> str:
    shown = shown_default(model, name)
    if shown is None:
        return unset_means(model, name) or "—"
    return f"`{shown}`"


def table(model: type[BaseSettings], skip: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    rows = ["| environment variable | default | meaning |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        meaning = " ".join((field.description or "").split())  # one table row, whatever the docstring's lines
        rows.append(f"| `{env_name(name)}` | {_default(name, model)} | {meaning} |")
    return "\n".join(rows)


def reference() -> str:
    kafka = set(KafkaSettings.model_fields)
    return "\n\n".join(
        [
            "#### Logging (every service)",
            table(LogSettings),
            "#### Kafka (every service)",
            table(KafkaSettings),
            "#### Producer (`crypto-producer`)",
            table(ProducerSettings, kafka),
            "#### Processor (`crypto-processor`)",
            table(ProcessorSettings, kafka),
            "#### Notifier (`crypto-notifier`)",
            table(NotifierSettings, kafka),
        ]
    )


if __name__ == "__main__":
    print(reference())
