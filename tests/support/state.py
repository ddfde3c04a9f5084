"""A dict-backed stand-in for Quix's per-key state, for driving the rules without Kafka."""

from __future__ import annotations

from typing import Any


class DictState:
    """What ``processor.state.StateLike`` asks of a state, over a plain dict (``data``) tests can read."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)
