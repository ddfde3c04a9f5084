"""The scorecard command as a user meets it first: its help names every flag and warns."""

from __future__ import annotations

import pytest

from processor.cli import main


def test_help_mentions_the_scorecard_and_warns(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "scorecard" in top and "crypto-processor scorecard --from" in top
    with pytest.raises(SystemExit):
        main(["scorecard", "--help"])
    text = capsys.readouterr().out
    for part in ("--from", "--to", "--horizons", "--json", "--influx-db", "--into-live", "pending", "no promise"):
        assert part in text, part
    assert "--alerts-topic" not in text, "the scorecard publishes no alert"
