"""The one definition of every message on Crypto Watcher's Kafka topics.

Producer, processor, notifier and tests all import these models, so a field cannot drift between
sides. Values are JSON; times are integer milliseconds since the Unix epoch (UTC), the unit Kafka
uses for message timestamps. Readers ignore unknown fields (tolerant reader), and ``v`` names the
schema version so a future incompatible change can be recognised rather than misread.
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

TICKS_TOPIC = "crypto.ticks"
ALERTS_TOPIC = "crypto.alerts"
TICKS_DLQ_TOPIC = "crypto.ticks.dlq"

# 2009-01-03 (the genesis block) .. 2100-01-01: anything outside is a unit mistake (s vs ms).
MIN_EVENT_TIME_MS = 1_230_940_800_000
MAX_EVENT_TIME_MS = 4_102_444_800_000

CoinId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")]
VsCurrency = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{2,12}$")]
EpochMs = Annotated[int, Field(ge=MIN_EVENT_TIME_MS, le=MAX_EVENT_TIME_MS)]
Source = Literal["coingecko", "simulate", "backfill", "file", "test"]


class MessageError(ValueError):
    """A message that does not match its schema; the text names each bad field and its value."""


def _describe(exc: ValidationError, what: str) -> MessageError:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(message)"
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        parts.append(f"{field}: {err['msg']} (got {shown})")
    return MessageError(f"invalid {what}: " + "; ".join(parts))


def message_key(coin: str, vs: str) -> str:
    """The Kafka key ``"<coin>:<vs>"``: every per-pair window and state lives under it."""
    return f"{coin}:{vs}"


def pair_of(key: str) -> tuple[str, str]:
    """Coin and vs of a :func:`message_key`, for window results that arrive with the key alone
    (Quix's tumbling windows hand over the aggregate and the key, not the tick)."""
    coin, _, vs = key.partition(":")
    return coin, vs


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    _what: ClassVar[str] = "message"
    """How errors name this kind of message ("invalid tick: ...")."""

    @classmethod
    def from_json(cls, data: bytes | str | dict[str, object]) -> Self:
        """Parse and validate; raises MessageError naming every bad field."""
        try:
            if isinstance(data, dict):
                return cls.model_validate(data)
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise _describe(exc, cls._what) from None

    @classmethod
    def create(cls, **fields: object) -> Self:
        """Build from untrusted values (a market response): MessageError instead of pydantic's error."""
        return cls.from_json(fields)


class Tick(_Message):
    """One observed quote of a coin in a vs-currency, at the time the market source says it held."""

    _what = "tick"

    v: Literal[1] = 1
    coin: CoinId
    symbol: str | None = None
    vs: VsCurrency
    price: Annotated[float, Field(gt=0)]
    market_cap: Annotated[float, Field(ge=0)] | None = None
    volume_24h: Annotated[float, Field(ge=0)] | None = None
    change_24h_pct: float | None = None
    source: Source
    event_time: EpochMs
    """When the source says the quote was current (CoinGecko ``last_updated_at``): the Kafka
    message timestamp, and the time every window uses."""
    fetch_time: EpochMs | None = None
    """When we received it; event_time lagging far behind it means a stale quote."""

    @property
    def key(self) -> str:
        return message_key(self.coin, self.vs)


AlertKind = Literal["drop", "spike", "volatility", "buy_hint", "sell_hint"]
Severity = Literal["info", "warning", "critical"]


class Alert(_Message):
    """A signal that fired: what moved, by how much, against what, over which window.

    ``id`` is derived from what the alert is about (pair, rule, kind, window, event time), never
    from when it was computed, so a replay or a restarted processor produces the same id and every
    consumer can deduplicate on it.
    """

    _what = "alert"

    v: Literal[1] = 1
    id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{20}$")]
    coin: CoinId
    vs: VsCurrency
    kind: AlertKind
    rule: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    window: Annotated[str, StringConstraints(min_length=1, max_length=20)]
    window_ms: Annotated[int, Field(gt=0)]
    change_pct: float
    price: Annotated[float, Field(gt=0)]
    reference_price: Annotated[float, Field(gt=0)]
    threshold_pct: Annotated[float, Field(gt=0)] | None = None
    """The rule's threshold: percent for drop/spike, z for volatility, RSI level for rsi."""
    indicator: float | None = None
    """The indicator value that fired (z-score, RSI, fast-slow average gap in %), when there is one."""
    event_time: EpochMs
    severity: Severity = "warning"
    message: Annotated[str, StringConstraints(min_length=1, max_length=500)]

    @property
    def key(self) -> str:
        return message_key(self.coin, self.vs)

    @staticmethod
    def make_id(coin: str, vs: str, rule: str, kind: str, window: str, event_time: int) -> str:
        raw = f"{coin}:{vs}|{rule}|{kind}|{window}|{event_time}".encode()
        return hashlib.sha256(raw).hexdigest()[:20]


def pct_change(new: float, old: float) -> float:
    """Percent change from ``old`` to ``new``; rounded to 1e-9 so replays compare exactly."""
    if old <= 0 or not math.isfinite(old) or not math.isfinite(new):
        raise ValueError(f"percent change needs finite prices and old > 0, got new={new!r} old={old!r}")
    return round((new - old) / old * 100.0, 9)
