"""replay-file into the real ticks topic: the good lines are published, the bad ones named and left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto_watcher.messages import Tick
from producer.cli import main
from tests.support.producer import (
    keep_forever,
    restore_root_logging,  # noqa: F401 (fixture)
)
from tests.support.services import Services, read_topic
from tests.support.tickfiles import CSV, MS

pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.mark.services
def test_replay_publishes_the_good_lines_to_kafka(services: Services, topics: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text(CSV)
    keep_forever(services.kafka_bootstrap, topics["ticks"])
    code = main(
        ["replay-file", str(path), "--speed", "0", "--bootstrap", services.kafka_bootstrap, "--topic", topics["ticks"]]
    )
    assert code == 1  # published the good lines, and says the file had bad ones
    got = sorted(
        (k, Tick.from_json(v).event_time, Tick.from_json(v).price)
        for k, v, _published in read_topic(services.kafka_bootstrap, topics["ticks"])
        if v is not None and k is not None
    )
    assert got == [
        ("bitcoin:usd", MS, 50000.5),
        ("ethereum:usd", MS + 10_000, 3000.0),
        ("ethereum:usd", MS + 60_000, 3001.0),
    ]
