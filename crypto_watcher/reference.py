"""The README's configuration reference, generated from the settings models so it cannot drift.

``python -m crypto_watcher.reference`` prints the Markdown tables; a test checks the README has them.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel
from pydantic_settings import BaseSettings

from crypto_watcher.config import ENV_PREFIX, KafkaSettings, ProcessorSettings, ProducerSettings
from crypto_watcher.durations import format_duration
from notifier.settings import NotifierSettings


def duration_fields(model: type[BaseModel]) -> set[str]:
    """Settings parsed as durations: those with the shared ``_duration``/``_retention`` validators."""
    fields: set[str] = set()
    for decorator in model.__pydantic_decorators__.field_validators.values():
        func = getattr(decorator.func, "__func__", decorator.func)
        if getattr(func, "__name__", "") in ("_duration", "_retention"):
            fields.update(decorator.info.fields)
    return fields


def _default(name: str, model: type[BaseSettings]) -> str:
    field = model.model_fields[name]
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "—"
    if name in duration_fields(model):
        return f"`{format_duration(int(value))}`" if value else "`0`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
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
        meaning = " ".join((field.description or "").split())  # one table row, whatever the docstring's lines
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {_default(name, model)} | {meaning} |")
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
            "#### Notifier (`crypto-notifier`)",
            table(NotifierSettings, kafka),
        ]
    )


if __name__ == "__main__":
    print(reference())
