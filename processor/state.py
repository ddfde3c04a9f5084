"""Per-pair rule state: the protocol the rules read and write, and its one-dict-per-family packing.

The Quix pipeline hands the rules a per-key ``State``; tests hand them a dict-backed one
(``tests.support.state.DictState``). The state keys below are part of every running deployment's
state store and changelog: renaming one would make an upgraded processor forget its cooldowns,
re-arm flags and indicator history.
"""

from __future__ import annotations

from typing import Any, Protocol


class StateLike(Protocol):
    """The part of Quix's per-key ``State`` the rules use."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...


MOVE_STATE = "signals:moves"
"""State key of the move rules' cooldowns and re-arm flags (one dict per pair)."""
CANDLE_STATE = "signals:candles"
"""State key of the candle rules' history: closes, returns, averages, RSI (one dict per pair)."""


def _copy(value: Any) -> Any:
    # Shallow copies suffice to tell a change: stored dicts and lists hold only scalars.
    return value.copy() if isinstance(value, dict | list) else value


class PackedState:
    """A group of values a rule family keeps per pair, stored as one dict under one state key.

    Quix serialises the key (and the value) on every state access, and the rules use up to eleven
    values per candle and several per window change: as one dict that is one read when the group
    is first used and one write in :meth:`flush`, only if something changed. The rules see the same
    ``get``/``set`` of named values as they would on the state itself.
    """

    __slots__ = ("_key", "_original", "_state", "_values")

    def __init__(self, state: StateLike, key: str) -> None:
        self._state = state
        self._key = key
        self._values: dict[str, Any] | None = None
        self._original: dict[str, Any] = {}

    def _load(self) -> dict[str, Any]:
        packed: dict[str, Any] | None = self._state.get(self._key)
        if packed is None:
            packed = {}
        self._values = packed
        self._original = {k: _copy(v) for k, v in packed.items()}
        return packed

    def values(self) -> dict[str, Any]:
        """The group as a live dict, for hot loops that would call get/set many times per tick;
        changes made to it (nested ones included) are written by :meth:`flush` like any set."""
        return self._values if self._values is not None else self._load()

    def get(self, key: str, default: Any = None) -> Any:
        values = self._values if self._values is not None else self._load()
        return values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        values = self._values if self._values is not None else self._load()
        values[key] = value

    def delete(self, key: str) -> None:
        values = self._values if self._values is not None else self._load()
        values.pop(key, None)

    def flush(self) -> None:
        values = self._values
        if values is None:
            return
        original = self._original
        changed = values.keys() != original.keys() or any(
            type(v) is not type(original[k]) or v != original[k] for k, v in values.items()
        )
        if changed:
            self._state.set(self._key, values)
            self._original = {k: _copy(v) for k, v in values.items()}
