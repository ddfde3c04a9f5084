"""The message schema: round trips, and bad values refused with a message naming field and value."""

from __future__ import annotations

import json

import pytest

from crypto_watcher.messages import Alert, MessageError, Tick, message_key, pct_change

T0 = 1_700_000_000_000


def tick(**overrides: object) -> Tick:
    fields: dict[str, object] = {"coin": "bitcoin", "vs": "usd", "price": 50_000.5, "source": "test", "event_time": T0}
    fields.update(overrides)
    return Tick(**fields)  # type: ignore[arg-type]


def test_tick_round_trip_keeps_every_field() -> None:
    original = tick(symbol="btc", market_cap=1e12, volume_24h=3.5e10, change_24h_pct=-1.25, fetch_time=T0 + 900)
    assert Tick.from_json(original.to_json()) == original
    assert original.key == "bitcoin:usd" == message_key("bitcoin", "usd")


def test_tick_json_omits_absent_optionals_and_ignores_unknown_fields() -> None:
    data = json.loads(tick().to_json())
    assert "market_cap" not in data and data["v"] == 1
    data["added_in_a_later_version"] = 1
    assert Tick.from_json(json.dumps(data)) == tick()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("price", -1, "price: Input should be greater than 0 (got -1)"),
        ("price", 0, "price: Input should be greater than 0"),
        ("price", "abc", "price: Input should be a valid number"),
        ("price", None, "price: Input should be a valid number"),
        ("coin", "Bit Coin", "coin: String should match pattern"),
        ("vs", "", "vs: String should match pattern"),
        ("event_time", 1_700_000_000, "event_time: Input should be greater than or equal to"),
        ("market_cap", -5, "market_cap: Input should be greater than or equal to 0 (got -5)"),
        ("source", "elsewhere", "source: Input should be"),
    ],
)
def test_tick_rejects_bad_values_naming_field_and_value(field: str, value: object, expected: str) -> None:
    data = json.loads(tick().to_json())
    data[field] = value
    with pytest.raises(MessageError) as info:
        Tick.from_json(json.dumps(data))
    assert expected in str(info.value)
    assert str(info.value).startswith("invalid tick: ")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"coin":"bitcoin","vs":"usd","price":NaN,"source":"test","event_time":1700000000000}',
        b'{"coin":"bitcoin","vs":"usd","price":Infinity,"source":"test","event_time":1700000000000}',
    ],
)
def test_tick_rejects_non_finite_prices(raw: bytes) -> None:
    with pytest.raises(MessageError, match="price: Input should be a finite number"):
        Tick.from_json(raw)


def test_tick_rejects_garbage_and_missing_fields() -> None:
    with pytest.raises(MessageError, match=r"\(message\): Invalid JSON"):
        Tick.from_json(b"\x00\xffnot json")
    with pytest.raises(MessageError, match="price: Field required"):
        Tick.from_json(b'{"coin":"bitcoin","vs":"usd","source":"test","event_time":1700000000000}')


def alert(**overrides: object) -> Alert:
    fields: dict[str, object] = {
        "id": Alert.make_id("bitcoin", "usd", "drop", "drop", "15m", T0),
        "coin": "bitcoin",
        "vs": "usd",
        "kind": "drop",
        "rule": "drop",
        "window": "15m",
        "window_ms": 900_000,
        "change_pct": -6.5,
        "price": 46_750.0,
        "reference_price": 50_000.0,
        "threshold_pct": 5.0,
        "event_time": T0,
        "message": "bitcoin fell 6.50% within 15m",
    }
    fields.update(overrides)
    return Alert(**fields)  # type: ignore[arg-type]


def test_alert_round_trip_and_deterministic_id() -> None:
    original = alert()
    assert Alert.from_json(original.to_json()) == original
    same = Alert.make_id("bitcoin", "usd", "drop", "drop", "15m", T0)
    assert original.id == same
    assert Alert.make_id("bitcoin", "usd", "drop", "drop", "15m", T0 + 1) != same
    assert Alert.make_id("bitcoin", "eur", "drop", "drop", "15m", T0) != same


def test_alert_rejects_bad_kind_and_id() -> None:
    with pytest.raises(
        MessageError, match="kind: Input should be 'drop', 'spike', 'volatility', 'buy_hint' or 'sell_hint'"
    ):
        Alert.create(**(alert().model_dump() | {"kind": "crash"}))
    with pytest.raises(MessageError, match="id: String should match pattern"):
        Alert.from_json(alert().model_dump() | {"id": "not-an-id"})


def test_pct_change() -> None:
    assert pct_change(93.0, 100.0) == -7.0
    assert pct_change(105.0, 100.0) == 5.0
    with pytest.raises(ValueError, match="old > 0"):
        pct_change(1.0, 0.0)
