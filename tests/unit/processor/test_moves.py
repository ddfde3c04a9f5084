"""Exact sliding windows: late ticks re-emit the windows they fall into; repeats replace."""

from __future__ import annotations

from processor.moves import sliding_changes
from tests.support.state import DictState

S = 1000
W = [300 * S]


def feed(
    state: DictState, t: int, price: float, windows: list[int] = W, grace: int = 60 * S
) -> list[tuple[int, int, float, float]]:
    out = sliding_changes("btc", "usd", t, price, windows, grace, state)
    return [(c["end"], c["ticks"], c["first"], c["last"]) for c in out]


def test_in_order_ticks_emit_their_own_window() -> None:
    state = DictState()
    assert feed(state, 100 * S, 1.0) == [(100 * S, 1, 1.0, 1.0)]
    assert feed(state, 200 * S, 2.0) == [(200 * S, 2, 1.0, 2.0)]
    assert feed(state, 450 * S, 3.0) == [(450 * S, 2, 2.0, 3.0)]  # 100 s tick fell out of [150, 450]


def test_late_tick_gets_its_full_window_and_updates_later_ends() -> None:
    state = DictState()
    for t, p in [(176, 1.0), (205, 2.0), (227, 3.0), (433, 10.0), (512, 11.0)]:
        feed(state, t * S, p)
    got = feed(state, 475 * S, 12.0)  # 37 s late, within the 60 s grace
    # its own window [175, 475] holds 176..433 and itself; the window ending 512 now includes it
    assert got == [(475 * S, 5, 1.0, 12.0), (512 * S, 4, 3.0, 11.0)]


def test_tick_later_than_grace_is_not_windowed() -> None:
    state = DictState()
    feed(state, 1000 * S, 1.0)
    assert feed(state, 900 * S, 2.0) == []


def test_repeated_event_time_replaces_instead_of_double_counting() -> None:
    state = DictState()
    feed(state, 100 * S, 1.0)
    assert feed(state, 100 * S, 1.5) == [(100 * S, 1, 1.5, 1.5)]


def test_buffer_is_pruned_to_longest_window_plus_grace() -> None:
    state = DictState()
    for t in range(0, 3600, 10):
        feed(state, t * S, 1.0, windows=[300 * S, 900 * S])
    kept = state.get("moves:ticks")
    assert kept[0][0] >= (3590 - 900 - 60) * S and len(kept) <= 97
