"""Configuration errors name the setting as the user wrote it, the value, and where it came from."""

from __future__ import annotations

import pytest

from crypto_watcher.config import ConfigError, NotifierSettings, ProcessorSettings, ProducerSettings, load_settings
from crypto_watcher.durations import format_duration, parse_duration_ms
from crypto_watcher.reference import duration_fields
from processor.app import rocksdb_options


def test_defaults() -> None:
    s = load_settings(ProcessorSettings)
    assert (s.window_ms, s.cooldown, s.grace, s.drop_pct) == (
        [300_000, 900_000, 3_600_000, 14_400_000, 86_400_000],
        900_000,
        60_000,
        5.0,
    )
    p = load_settings(ProducerSettings)
    assert (p.coins, p.vs_currencies, p.poll_interval, p.coingecko_plan.value) == (
        ["bitcoin", "ethereum"],
        ["usd"],
        60_000,
        "public",
    )


def test_state_memory_settings_reach_rocksdb(monkeypatch: pytest.MonkeyPatch) -> None:
    default = rocksdb_options(load_settings(ProcessorSettings))
    assert (default.block_cache_size, default.write_buffer_size) == (16 * 2**20, 4 * 2**20)
    monkeypatch.setenv("CW_STATE_CACHE_MB", "1024")
    monkeypatch.setenv("CW_STATE_WRITE_BUFFER_MB", "64")
    large = rocksdb_options(load_settings(ProcessorSettings))
    assert (large.block_cache_size, large.write_buffer_size) == (1024 * 2**20, 64 * 2**20)
    monkeypatch.setenv("CW_STATE_CACHE_MB", "2")
    with pytest.raises(ConfigError, match="CW_STATE_CACHE_MB"):
        load_settings(ProcessorSettings)


def test_environment_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CW_COINS", "Bitcoin, solana")
    monkeypatch.setenv("CW_POLL_INTERVAL", "90s")
    p = load_settings(ProducerSettings, {"vs_currencies": "usd,EUR"})
    assert (p.coins, p.vs_currencies, p.poll_interval) == (["bitcoin", "solana"], ["usd", "eur"], 90_000)


def test_errors_name_env_var_and_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CW_COOLDOWN", "soon")
    with pytest.raises(ConfigError) as info:
        load_settings(ProcessorSettings, {"drop_pct": -2, "windows": "15m,forever"})
    text = str(info.value)
    assert "CW_COOLDOWN (environment variable) = 'soon'" in text
    assert "--drop-pct (command line) = -2" in text
    assert "--windows (command line) = '15m,forever'" in text and "got 'forever'" in text


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("15m", 900_000),
        ("1h", 3_600_000),
        ("90s", 90_000),
        ("2", 2_000),
        ("1.5s", 1_500),
        ("250ms", 250),
        ("1d", 86_400_000),
    ],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


def test_duration_round_trip_and_errors() -> None:
    assert [format_duration(ms) for ms in (900_000, 5_400_000, 1_500, 86_400_000)] == ["15m", "90m", "1500ms", "1d"]
    for bad in ("", "15 minutes", "-5m", "0s"):
        with pytest.raises(ValueError, match="duration must be"):
            parse_duration_ms(bad)


@pytest.mark.parametrize("model", [ProducerSettings, ProcessorSettings, NotifierSettings])
def test_every_duration_setting_reads_text_from_the_environment(model: type, monkeypatch: pytest.MonkeyPatch) -> None:
    fields = duration_fields(model)
    assert fields, model
    for name in fields:
        monkeypatch.setenv(f"CW_{name.upper()}", "90s")
    settings = load_settings(model)
    assert all(getattr(settings, name) == 90_000 for name in fields)


def test_topic_retention_forever() -> None:
    assert load_settings(ProcessorSettings, {"topic_retention": "forever"}).topic_retention == 0
    assert load_settings(ProcessorSettings, {"topic_retention": "7d"}).topic_retention == 7 * 86_400_000


def test_flag_help_is_the_setting_s_description_variable_and_default() -> None:
    from crypto_watcher.cli_help import choices_of, setting_help
    from crypto_watcher.reference import reference

    text = setting_help(ProcessorSettings, "windows")
    assert text.startswith("Windows the percent change") and text.endswith("[CW_WINDOWS, default 5m,15m,1h,4h,24h]")
    assert setting_help(ProcessorSettings, "cooldown", "quiet time") == "quiet time [CW_COOLDOWN, default 15m]"
    assert setting_help(ProcessorSettings, "rules_file", "rules").endswith("[CW_RULES_FILE, default: none]")
    # unset means the CoinGecko plan's value: help and the README's reference say so, not "none"
    assert setting_help(ProducerSettings, "coingecko_calls_per_minute", "budget") == (
        "budget [CW_COINGECKO_CALLS_PER_MINUTE, default: the plan's]"
    )
    assert "| `CW_COINGECKO_BASE_URL` | the plan's |" in reference()
    assert (
        setting_help(NotifierSettings, "notify_console", "100% quiet")
        == "100%% quiet [CW_NOTIFY_CONSOLE, default true]"
    )
    assert choices_of(ProcessorSettings, "influx_api") == ["v1", "v2"]
    assert choices_of(NotifierSettings, "notify_min_severity") == ["info", "warning", "critical"]
    assert choices_of(ProcessorSettings, "windows") is None


def test_window_list_and_percent_types_are_checked_where_they_are_set() -> None:
    with pytest.raises(ConfigError, match="at least one window"):
        load_settings(ProcessorSettings, {"windows": " , "})
    with pytest.raises(ConfigError, match="--spike-pct"):
        load_settings(ProcessorSettings, {"spike_pct": 150})


def test_the_consumer_prefetch_cap_reaches_the_kafka_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    """librdkafka's default prefetch (64 MB) held most of a backlog in memory; the setting caps it."""
    from processor.app import build_pipeline

    monkeypatch.setenv("CW_CONSUMER_PREFETCH_KB", "2048")
    settings = load_settings(ProcessorSettings)
    captured: dict[str, object] = {}

    class Stop(Exception):
        pass

    def fake_application(**kwargs: object) -> None:
        captured.update(kwargs)
        raise Stop

    monkeypatch.setattr("processor.app.Application", fake_application)
    monkeypatch.setattr("processor.app.cluster_replication", lambda *_a: None)
    monkeypatch.setattr("processor.app.topic_manager", lambda *_a: None)
    with pytest.raises(Stop):
        build_pipeline(settings)
    assert captured["consumer_extra_config"]["queued.max.messages.kbytes"] == 2048  # type: ignore[index]
