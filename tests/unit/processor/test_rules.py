"""The rules file: defaults, per-coin overrides, and errors naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.rules import RulesError, load_rules
from tests.support.paths import ROOT as REPO_ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides_merge_field_by_field(tmp_path: Path) -> None:
    rules = load_rules(
        write(
            tmp_path,
            """
defaults:
  windows: [5m, 1h]
  candle_interval: 5m
  cooldown: 30m
  rules:
    drop: {threshold_pct: 4}
coins:
  bitcoin:
    cooldown: 10m
    rules:
      drop: {windows: [1h]}
      crossover: null
""",
        )
    )
    assert rules.window_ms == [300_000, 3_600_000] and rules.candle_interval == 300_000
    btc, eth = rules.for_coin("bitcoin"), rules.for_coin("ethereum")
    assert btc.drop is not None and btc.drop.threshold_pct == 4 and btc.drop.windows == ["1h"]
    assert btc.crossover is None and eth.crossover is not None
    assert eth.drop is not None and eth.drop.windows is None
    assert (rules.cooldown("bitcoin", None), rules.cooldown("ethereum", None)) == (600_000, 1_800_000)


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, ""))
    assert rules.windows == ["5m", "15m", "1h", "4h", "24h"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "defaults:\n  rules:\n    drop:\n      threshold_pct: -3\n",
            "rules.yaml:4: defaults.rules.drop.threshold_pct: Input should be greater than 0 (got -3)",
        ),
        ("defaults:\n  windows: [5m, soon]\n", "rules.yaml:2: defaults.windows: Value error, duration must be like"),
        (
            "defaults:\n  rules:\n    crossover: {fast: 30, slow: 20}\n",
            "rules.yaml:3: defaults.rules.crossover: Value error, fast (30) must be shorter than slow (20)",
        ),
        ("defaults:\n  cooldwn: 5m\n", "rules.yaml:2: defaults.cooldwn: Extra inputs are not permitted"),
        (
            "coins:\n  bitcoin:\n    rules:\n      drop: {threshold_pct: 3, windoes: [5m]}\n",
            "rules.yaml:4: coins.bitcoin.rules.drop.windoes: Extra inputs are not permitted",
        ),
        (
            "coins:\n  bitcoin:\n    rules:\n      rsi:\n        oversold: 60\n",
            "rules.yaml:5: coins.bitcoin.rules.rsi.oversold: Input should be less than 50 (got 60)",
        ),
        ("defaults: [1, 2\n", "rules.yaml:2: not valid YAML"),
        ("- just\n- a list\n", "rules.yaml:1: the file must be a mapping"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(RulesError) as info:
        load_rules(write(tmp_path, text))
    assert expected in str(info.value)
    assert str(info.value).startswith("invalid rules file:")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"cannot read rules file .*nope\.yaml: No such file"):
        load_rules(tmp_path / "nope.yaml")


def test_shipped_example_rules_file_is_valid() -> None:
    rules = load_rules(REPO_ROOT / "config" / "rules.example.yaml")
    tether = rules.for_coin("tether")
    assert tether.crossover is None and tether.drop is not None and tether.drop.threshold_pct == 1


def test_rules_without_a_file_are_the_processor_settings() -> None:
    from crypto_watcher.config import ProcessorSettings, load_settings
    from processor.rules import RuleSet

    assert RuleSet.from_settings(load_settings(ProcessorSettings)).spec == RuleSet.defaults().spec
    flags = {"windows": "1m,2h", "drop_pct": 3, "spike_pct": 7, "cooldown": "30m", "grace": "5s"}
    rules = RuleSet.from_settings(load_settings(ProcessorSettings, flags))
    drop, spike = rules.for_coin("bitcoin").drop, rules.for_coin("bitcoin").spike
    assert rules.windows == ["1m", "2h"] and rules.window_ms == [60_000, 7_200_000] and rules.grace == 5_000
    assert drop is not None and spike is not None and (drop.threshold_pct, spike.threshold_pct) == (3, 7)
    assert rules.cooldown("bitcoin", None) == 1_800_000
