"""Where ``crypto-processor replay`` may write, decided before anything is read or written:
``choose_target`` allows a what-if database or bucket and the live one only with ``--into-live``,
and refuses the other API's option. The real servers' side is tests/services/test_processor_replay_target.py."""

from __future__ import annotations

import pytest

from crypto_watcher.config import InfluxApi, InfluxSettings
from processor.replay_target import choose_target


def _live(api: str) -> InfluxSettings:
    return InfluxSettings(influx_api=InfluxApi(api), influx_db="crypto", influx_bucket="crypto")


@pytest.mark.parametrize(
    ("api", "db", "bucket", "into_live", "name", "live"),
    [
        ("v2", None, "whatif", False, "whatif", False),
        ("v2", None, None, True, "crypto", True),
        ("v2", None, "crypto", True, "crypto", True),
        ("v2", None, "whatif", True, "whatif", False),
        ("v1", "whatif", None, False, "whatif", False),
        ("v1", None, None, True, "crypto", True),
    ],
)
def test_choose_target_allows(
    api: str, db: str | None, bucket: str | None, into_live: bool, name: str, live: bool
) -> None:
    target = choose_target(_live(api), db, bucket, into_live)
    assert (target.name, target.live) == (name, live)
    assert target.settings == {("influx_bucket" if api == "v2" else "influx_db"): name}


@pytest.mark.parametrize(
    ("api", "db", "bucket", "says"),
    [
        ("v2", None, None, ["--into-live", "--influx-bucket", "'crypto'", "CW_INFLUX_BUCKET", "live bucket"]),
        ("v2", None, "crypto", ["--into-live", "--influx-bucket crypto names", "live bucket 'crypto'"]),
        ("v2", "whatif", None, ["--influx-db does not apply", "v2", "--influx-bucket"]),
        ("v1", None, None, ["--into-live", "--influx-db", "'crypto'", "CW_INFLUX_DB", "live database"]),
        ("v1", "crypto", None, ["--into-live", "--influx-db crypto names", "live database 'crypto'"]),
        ("v1", None, "whatif", ["--influx-bucket does not apply", "v1", "--influx-db"]),
    ],
)
def test_choose_target_refuses(api: str, db: str | None, bucket: str | None, says: list[str]) -> None:
    with pytest.raises(ValueError) as refused:
        choose_target(_live(api), db, bucket, into_live=False)
    for part in says:
        assert part in str(refused.value), (part, str(refused.value))
