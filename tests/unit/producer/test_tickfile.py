"""replay-file without Kafka: CSV or JSON Lines, every line validated (bad ones named FILE:LINE),
times in every form, paced by event time, --check-only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crypto_watcher.messages import Tick
from producer.cli import main
from producer.tickfile import LineError, parse_time_ms, read_ticks, replay_file
from tests.support.producer import (
    T0,
    MemoryPublisher,
    restore_root_logging,  # noqa: F401 (fixture)
)
from tests.support.tickfiles import CSV, MS

pytestmark = pytest.mark.usefixtures("restore_root_logging")


def _file(tmp_path: Path, offsets_s: list[int]) -> Path:
    path = tmp_path / "paced.jsonl"
    rows = [
        {"coin": "bitcoin", "vs": "usd", "price": 1 + i, "event_time": MS + s * 1000} for i, s in enumerate(offsets_s)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_csv_lines_are_validated_and_bad_ones_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text(CSV)
    items = list(read_ticks(path))
    good = [(n, t) for n, t in items if isinstance(t, Tick)]
    bad = {n: str(e) for n, e in items if isinstance(e, LineError)}
    assert [(n, t.coin, t.price, t.event_time, t.market_cap, t.symbol, t.source) for n, t in good] == [
        (2, "bitcoin", 50000.5, MS, 1e12, "btc", "file"),
        (3, "ethereum", 3000.0, MS + 10_000, None, None, "file"),
        (10, "ethereum", 3001.0, MS + 60_000, None, None, "file"),
    ]
    assert set(bad) == {4, 5, 6, 7, 8}
    assert bad[4].startswith(f"{path}:4: invalid tick: price:") and "-5" in bad[4]
    assert bad[5] == f"{path}:5: event_time {T0 + 30} looks like seconds; times are milliseconds"
    assert bad[6] == f"{path}:6: event_time: not milliseconds or ISO 8601: '2026-13-01'"
    assert bad[7] == f"{path}:7: 7 fields, header has 6"
    assert bad[8] == f"{path}:8: missing price"


def test_jsonl_lines_and_a_header_without_required_columns(tmp_path: Path) -> None:
    path = tmp_path / "ticks.jsonl"
    lines = [
        json.dumps({"coin": "bitcoin", "vs": "usd", "price": 1.5, "event_time": MS, "source": "backfill"}),
        "{not json",
        "[1, 2]",
        json.dumps({"coin": "bitcoin", "vs": "usd", "price": 2, "event_time": "2026-01-01T00:00:01.250Z"}),
        json.dumps({"coin": "Bitcoin!", "vs": "usd", "price": 2, "event_time": MS}),
        json.dumps({"coin": "bitcoin", "vs": "usd", "price": 2, "event_time": MS, "source": "cnn"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    items = list(read_ticks(path))
    assert [(n, t.price, t.event_time, t.source) for n, t in items if isinstance(t, Tick)] == [
        (1, 1.5, MS, "backfill"),
        (4, 2.0, MS + 1250, "file"),
    ]
    bad = {n: str(e) for n, e in items if isinstance(e, LineError)}
    assert bad[2].startswith(f"{path}:2: not JSON")
    assert bad[3] == f"{path}:3: not a JSON object"
    assert bad[5].startswith(f"{path}:5: invalid tick: coin:")
    assert bad[6].startswith(f"{path}:6: invalid tick: source:")
    header = tmp_path / "no-price.csv"
    header.write_text("coin,vs,event_time\nbitcoin,usd,1\n")
    assert [str(e) for _n, e in read_ticks(header)] == [
        f"{header}:1: CSV header lacks price (has coin, vs, event_time)"
    ]


def test_times() -> None:
    assert parse_time_ms(MS) == MS and parse_time_ms(str(MS)) == MS and parse_time_ms(f"{MS}.0") == MS
    assert parse_time_ms("2026-01-01T00:00:00") == MS  # no offset: UTC
    assert parse_time_ms("2026-01-01T01:00:00+01:00") == MS
    for bad in ("", "soon", 1.5, True, None):
        with pytest.raises(ValueError):
            parse_time_ms(bad)


@pytest.mark.parametrize(
    ("speed", "waits"),
    [
        (1.0, [10.0, 10.0, 10.0]),  # real time: the gaps themselves
        (10.0, [1.0, 1.0, 1.0]),  # ten times faster
        (0.0, []),  # as fast as possible
    ],
)
def test_speed_scales_event_time_gaps(tmp_path: Path, speed: float, waits: list[float]) -> None:
    now = [0.0]
    asked: list[float] = []

    def wait(seconds: float) -> bool:
        asked.append(round(seconds, 6))
        now[0] += seconds
        return False

    out = MemoryPublisher()
    # 0 s, 10 s, 20 s, then a tick from before (5 s: sent at once), then 30 s
    paced = _file(tmp_path, [0, 10, 20, 5, 30])
    report = replay_file(paced, out, speed, clock=lambda: now[0], wait=wait)  # type: ignore[arg-type]
    assert report.published == 5 and report.bad_lines == 0
    assert asked == waits
    assert [t.price for t in out.ticks] == [1, 2, 3, 4, 5]


def test_check_only_validates_and_exits_1_on_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV)
    assert main(["replay-file", str(bad), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4:" in err and f"{bad}:8: missing price" in err and "3 ticks valid, 5 bad lines" in err
    good = _file(tmp_path, [0, 1])
    assert main(["replay-file", str(good), "--check"]) == 0
    assert main(["replay-file", str(tmp_path / "missing.csv")]) == 2
    assert main(["replay-file", str(good), "--speed", "-1"]) == 2
