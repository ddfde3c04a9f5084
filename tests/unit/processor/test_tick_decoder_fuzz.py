"""Fuzz the processor's tick deserializer: whatever bytes arrive on ``crypto.ticks``, it either
returns a valid tick or raises the one error type the DLQ handler accepts (``MessageError``).

Anything else (a TypeError, a RecursionError, a crash in the JSON parser) would escape the DLQ
hook and stop the processor on one bad record, which is what these tests guard against.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto_watcher.messages import MessageError, Tick
from processor.app import TickDeserializer

DECODE = TickDeserializer()
VALID: dict[str, Any] = {
    "v": 1,
    "coin": "bitcoin",
    "vs": "usd",
    "price": 50_000.5,
    "market_cap": 1e12,
    "volume_24h": 3e10,
    "change_24h_pct": -1.5,
    "source": "coingecko",
    "event_time": 1_700_000_000_000,
    "fetch_time": 1_700_000_001_000,
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def decode_or_reject(raw: bytes) -> dict[str, Any] | None:
    """The deserializer's result, or None when it refused the bytes with MessageError."""
    try:
        value = DECODE(raw, None)
    except MessageError as exc:
        assert str(exc).startswith("invalid tick: "), exc
        return None
    # Whatever it accepted is a tick that survives a round trip unchanged.
    assert Tick.from_json(Tick.model_validate(value).to_json()).__dict__ == value
    return value


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_message_error(raw: bytes) -> None:
    decode_or_reject(raw)


@settings(max_examples=1500, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(VALID)), json_values, max_size=4))
def test_valid_tick_with_fields_replaced_by_any_json_decodes_or_raises_message_error(
    replaced: dict[str, Any],
) -> None:
    raw = json.dumps({**VALID, **replaced}, allow_nan=True).encode()
    value = decode_or_reject(raw)
    if value is not None:
        assert value["price"] > 0 and value["event_time"] >= 1_230_940_800_000


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(0, 200))
def test_valid_tick_with_bytes_spliced_in_decodes_or_raises_message_error(junk: bytes, at: int) -> None:
    raw = json.dumps(VALID).encode()
    at = min(at, len(raw))
    decode_or_reject(raw[:at] + junk + raw[at:])


def test_pathological_inputs_are_refused_not_crashing() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    nested_field = json.dumps({**VALID, "symbol": None}).encode().replace(b"null", b"[" * 5000 + b"]" * 5000)
    for raw in (
        b"",
        b"\x00",
        deep,
        nested_field,
        b'{"price": 1e999}',
        '{"coin": "\ud800"}'.encode("utf-8", "surrogatepass"),
    ):
        assert decode_or_reject(raw) is None, raw[:40]
    assert decode_or_reject(json.dumps(VALID).encode()) == Tick.from_json(VALID).__dict__
