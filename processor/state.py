"""Per-pair state: the protocol the rules read and write, and how it is packed into few values.

The Quix pipeline hands the rules a per-key ``State``; tests hand them a dict-backed one
(``tests.support.state.DictState``). The state keys below are part of every running deployment's
state store and changelog: renaming one would make an upgraded processor forget its cooldowns,
re-arm flags and indicator history. Moving one (as :class:`TickState` moved three into one value)
needs the conversion that class does on a pair's first tick, and makes a rollback start afresh
(docs/deploy.md, "Upgrade").
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
BUFFER_KEY = "moves:ticks"
"""The sliding windows' tick buffer (processor.moves)."""
CANDLES_KEY = "candles:open"
"""A pair's open candles and watermark: ``{"watermark": ms, "open": [[start, open, open_ms, high,
low, close, close_ms, ticks], ...]}`` sorted by start, rarely more than two (processor.candles)."""
TICK_STATE = "pair:tick"
"""State key of everything a pair's every tick reads and writes, as one dict: the sliding windows'
tick buffer (:data:`BUFFER_KEY`), the open candles (:data:`CANDLES_KEY`) and the move rules'
state (:data:`MOVE_STATE`), each under its own former state key."""
TICK_KEYS = (BUFFER_KEY, CANDLES_KEY, MOVE_STATE)
"""The keys :data:`TICK_STATE` holds; before it, each was a state key of its own (a processor
from then left them so, and :class:`TickState` folds them in on the pair's next tick)."""


class PackedState:
    """A group of values a rule family keeps per pair, stored as one dict under one state key.

    Quix serialises the key (and the value) on every state access, and the candle rules use up to
    eleven values per candle: as one dict that is one read when the group is first used and one
    write in :meth:`flush`. The rules see the same ``get``/``set`` of named values as they would
    on the state itself. The write is unconditional: every closed candle appends to the rules'
    history, so a check for changes (copying the dict to compare) only cost time.
    """

    __slots__ = ("_key", "_state", "_values")

    def __init__(self, state: StateLike, key: str) -> None:
        self._state = state
        self._key = key
        self._values: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        packed: dict[str, Any] | None = self._state.get(self._key)
        self._values = packed if packed is not None else {}
        return self._values

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
        if self._values is not None:
            self._state.set(self._key, self._values)


_DELETED = object()


class TickState:
    """A pair's state for one tick: :data:`TICK_KEYS` served from one stored dict, the rest passed
    through to Quix's state, and every write held until :meth:`flush`.

    Each Quix state access serialises its key, looks it up in the transaction's cache or RocksDB
    and (for a read) deserialises the value; each write is a changelog message at the checkpoint.
    Every tick touched the tick buffer, the open candles and the move rules' state: three reads,
    two or three writes. Packed, that is one read here and one write in :meth:`flush`, and the
    buffer (the largest of the three) was written on every tick anyway. The rarer, larger state
    (the candle rules' history, the long windows' candles) changes once a candle and stays apart.

    Writes reach Quix's state only in :meth:`flush`, all at once: a tick that raises half way
    (and goes to the DLQ) leaves no half of its update behind, so the next tick does not close a
    candle twice or count a tick in one window and not the next. Call :meth:`flush` once, at the
    end of the tick; make a new ``TickState`` for the next one.
    """

    __slots__ = ("_dirty", "_legacy", "_other", "_state", "_values")

    def __init__(self, state: StateLike) -> None:
        self._state = state
        self._values: dict[str, Any] | None = None
        self._other: dict[str, Any] = {}  # writes to the keys outside TICK_KEYS, until flush
        self._legacy: list[str] = []
        self._dirty = False

    def _load(self) -> dict[str, Any]:
        values: dict[str, Any] | None = self._state.get(TICK_STATE)
        if values is None:  # a new pair, or one a processor from before TICK_STATE left
            values = {}
            for key in TICK_KEYS:
                old = self._state.get(key)
                if old is not None:
                    values[key] = old
                    self._legacy.append(key)
            self._dirty = bool(self._legacy)
        self._values = values
        return values

    def get(self, key: str, default: Any = None) -> Any:
        if key in TICK_KEYS:
            values = self._values if self._values is not None else self._load()
            return values.get(key, default)
        if key in self._other:
            value = self._other[key]
            return default if value is _DELETED else value
        return self._state.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if key in TICK_KEYS:
            values = self._values if self._values is not None else self._load()
            values[key] = value
            self._dirty = True
        else:
            self._other[key] = value

    def delete(self, key: str) -> None:
        if key in TICK_KEYS:
            values = self._values if self._values is not None else self._load()
            if values.pop(key, None) is not None:
                self._dirty = True
        else:
            self._other[key] = _DELETED

    def flush(self) -> None:
        """Write what the tick changed: the packed dict (if anything in it was set), the other
        keys it set or deleted, and the deletion of the former keys folded into the dict."""
        if self._dirty and self._values is not None:
            self._state.set(TICK_STATE, self._values)
            self._dirty = False
        for key, value in self._other.items():
            if value is _DELETED:
                self._state.delete(key)
            else:
                self._state.set(key, value)
        self._other = {}
        for key in self._legacy:
            self._state.delete(key)
        self._legacy = []
