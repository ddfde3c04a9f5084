"""Line-protocol helpers only tests need."""

from __future__ import annotations

from crypto_watcher.messages import Tick
from processor.points import price_line


def tick_line(tick: Tick) -> str:
    """The ``price`` point the processor writes for ``tick`` (its stream carries the fields as a dict)."""
    return price_line(tick.__dict__)
