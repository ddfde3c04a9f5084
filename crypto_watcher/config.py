"""Typed configuration shared by every service: environment variables (``CW_*``) and CLI flags.

Every setting has one name, one environment variable and one default, listed in the README's
configuration reference. Invalid values fail at start-up with a message naming the setting, the
value and where it came from (environment variable or command-line flag), never deep inside a loop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from crypto_watcher.durations import parse_duration_ms
from crypto_watcher.messages import ALERTS_TOPIC, TICKS_DLQ_TOPIC, TICKS_TOPIC

ENV_PREFIX = "CW_"

CommaList = Annotated[list[str], NoDecode]


class ConfigError(SystemExit):
    """Raised (and exits with status 2) when configuration is invalid; the text says what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _duration(value: Any) -> Any:
    """Text ("90s", "15m"; a bare number is seconds) from env/CLI; ints from code are already ms."""
    if isinstance(value, str):
        return parse_duration_ms(value)
    return value


def _replication(value: Any) -> Any:
    """Unset, empty, ``default`` or -1 all mean: the brokers' own ``default.replication.factor``."""
    if isinstance(value, str) and value.strip().lower() in ("", "default", "-1"):
        return None
    if value == -1:
        return None
    return value


def _retention(value: Any) -> Any:
    """Like a duration, but "0" or "forever" mean Kafka keeps the data for ever."""
    if isinstance(value, str) and value.strip().lower() in ("0", "forever", "infinite", "-1"):
        return 0
    return _duration(value)


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True, use_attribute_docstrings=True)


class KafkaSettings(_Base):
    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma separated."""
    ticks_topic: str = TICKS_TOPIC
    """Topic of price ticks (key `<coin>:<vs>`)."""
    alerts_topic: str = ALERTS_TOPIC
    """Topic the processor publishes alerts to."""
    dlq_topic: str = TICKS_DLQ_TOPIC
    """Dead-letter topic for ticks the processor cannot use."""
    topic_retention: Annotated[int, Field(ge=0)] = 28 * 86_400_000
    """How long Kafka keeps ticks, alerts and dead letters after they are published (replays need
    it; a backfill of last year stays this long from the day it ran). 0 or `forever`: never deleted."""
    ticks_partitions: Annotated[int, Field(ge=1, le=1000)] = 3
    """Partitions of the ticks topic when the producer creates it (the processor's max parallelism)."""
    topic_replication: Annotated[int, Field(ge=1, le=32767)] | None = None
    """Replication factor of every topic the services create: ticks, alerts, dead letters and the
    processor's state changelogs. Unset (or `default`): the brokers' `default.replication.factor`.
    Start-up fails, saying why, if the cluster cannot meet it (fewer brokers, or below the brokers'
    `min.insync.replicas`); existing topics keep theirs, with a warning if it is lower."""

    _keep = field_validator("topic_retention", mode="before")(_retention)
    _replicas = field_validator("topic_replication", mode="before")(_replication)


class HttpSettings(_Base):
    http_host: str = "127.0.0.1"
    """Address of the /metrics, /livez, /readyz endpoints (0.0.0.0 in containers)."""


class Plan(StrEnum):
    PUBLIC = "public"
    DEMO = "demo"
    PRO = "pro"


class SourceKind(StrEnum):
    COINGECKO = "coingecko"
    SIMULATE = "simulate"


class ProducerSettings(KafkaSettings, HttpSettings):
    http_port: Annotated[int, Field(ge=-1, le=65535)] = 9101
    """Port of the health and metrics endpoints (-1: off)."""
    source: SourceKind = SourceKind.COINGECKO
    """Market source: `coingecko` or `simulate` (offline random walk with scheduled moves; its quotes
    carry symbol, market cap, 24 h volume and 24 h change as CoinGecko's do, so every panel has data)."""
    coins: CommaList = Field(default_factory=lambda: ["bitcoin", "ethereum"])
    """Coins to watch: CoinGecko ids, symbols or names, comma separated (ids pass through; see CoinGecko access)."""
    top_n: Annotated[int, Field(ge=0, le=5000)] = 0
    """Watch the top N coins by market cap (from /coins/markets) instead of `CW_COINS`; 0: off."""
    top_n_refresh: Annotated[int, Field(gt=0)] = 3_600_000
    """How often the top-N list is fetched again."""
    vs_currencies: CommaList = Field(default_factory=lambda: ["usd"])
    """Currencies to quote in, comma separated."""
    poll_interval: Annotated[int, Field(gt=0)] = 60_000
    """How often to ask for quotes. CoinGecko refreshes /simple/price every 60 s (20 s on paid plans)."""
    coingecko_plan: Plan = Plan.PUBLIC
    """CoinGecko access plan: `public` (keyless), `demo` or `pro`."""
    coingecko_api_key: str | None = None
    """API key for the demo or pro plan (sent in the plan's header, never logged)."""
    coingecko_base_url: str | None = None
    """Defaults to the plan's URL; tests and proxies point it elsewhere."""
    coingecko_timeout: Annotated[int, Field(gt=0)] = 10_000
    """Timeout of one CoinGecko call."""
    coingecko_calls_per_minute: Annotated[float, Field(gt=0)] | None = None
    """Call budget shared by every CoinGecko call. Defaults to the plan's (public 10, demo 30, pro 500)."""
    coingecko_monthly_calls: Annotated[int, Field(gt=0)] | None = None
    """Monthly call credits of your plan (Demo has had 10,000): warns at start-up if polling would spend more."""
    coingecko_ids_per_call: Annotated[int, Field(ge=1, le=1000)] = 250
    """Coin ids per /simple/price call (fewer when their URL would pass 5,000 characters)."""
    coingecko_cache_dir: str = ".cache/coingecko"
    """Folder of the cached coin list (symbol and name lookup) and of backfill checkpoints."""
    coins_list_ttl: Annotated[int, Field(gt=0)] = 86_400_000
    """How long the cached /coins/list is used before it is fetched again."""
    stale_after: Annotated[int, Field(gt=0)] = 600_000
    """A quote whose update time has not moved for this long is reported stale (log line and gauge)."""
    max_backoff: Annotated[int, Field(gt=0)] = 300_000
    """Longest wait between retries after failures (without a Retry-After)."""
    simulate_seed: int = 42
    """Seed of the simulated market (same seed, same prices)."""
    simulate_event_every: Annotated[int, Field(gt=0)] = 180_000
    """The simulated feed schedules a drop or spike on one coin this often."""
    simulate_event_size_pct: Annotated[float, Field(gt=0, lt=90)] = 8.0
    """Size of each simulated drop or spike, in percent."""
    simulate_event_over: Annotated[int, Field(gt=0)] = 60_000
    """How long each simulated move takes."""

    _producer_lists = field_validator("coins", "vs_currencies", mode="before")(_split_commas)
    _producer_durations = field_validator(
        "poll_interval",
        "coingecko_timeout",
        "max_backoff",
        "top_n_refresh",
        "coins_list_ttl",
        "stale_after",
        "simulate_event_every",
        "simulate_event_over",
        mode="before",
    )(_duration)

    @field_validator("coins", "vs_currencies")
    @classmethod
    def _lowercase_nonempty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one")
        return [v.lower() for v in value]


class InfluxApi(StrEnum):
    V1 = "v1"
    V2 = "v2"


class InfluxSettings(_Base):
    influx_api: InfluxApi = InfluxApi.V1
    """v1: /write + InfluxQL (InfluxDB 1.x). v2: influxdb-client (InfluxDB 2.x). Other versions are untested."""
    influx_url: str = "http://127.0.0.1:8086"
    """InfluxDB base URL."""
    influx_db: str = "crypto"
    """v1 database name."""
    influx_username: str | None = None
    """v1 user name, when InfluxDB has authentication on."""
    influx_password: str | None = None
    """v1 password."""
    influx_token: str | None = None
    """v2 API token (needs write access to the bucket)."""
    influx_org: str | None = None
    """v2 organisation."""
    influx_bucket: str = "crypto"
    """v2 bucket."""
    influx_timeout: Annotated[int, Field(gt=0)] = 10_000
    """Timeout of one InfluxDB write."""

    _influx_durations = field_validator("influx_timeout", mode="before")(_duration)


class ProcessorSettings(KafkaSettings, InfluxSettings, HttpSettings):
    http_port: Annotated[int, Field(ge=-1, le=65535)] = 9102
    """Port of the health and metrics endpoints (-1: off)."""
    consumer_group: str = "crypto-processor"
    """Kafka consumer group (and state folder name) of the processor."""
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where a new consumer group starts: `earliest` (all retained ticks) or `latest`."""
    state_dir: str = ".cache/state"
    """Folder of the processor's local window state (RocksDB; rebuilt from changelogs if lost)."""
    commit_interval: Annotated[int, Field(gt=0)] = 5_000
    """Checkpoint interval: InfluxDB writes and offset commits happen this often."""
    state_cache_mb: Annotated[int, Field(ge=8, le=65_536)] = 1024
    """RocksDB block cache (MB) for the window state, one shared by the whole process; it fills as
    state is read, so it is a ceiling, not an allocation (1024 is quixstreams' default)."""
    state_write_buffer_mb: Annotated[int, Field(ge=1, le=1024)] = 64
    """RocksDB write buffer (MB) per state partition; up to three are held in memory before they are
    flushed to disk (64 is quixstreams' default). Lower both to fit a small memory limit."""
    rules_file: str | None = None
    """Alert rules YAML (defaults + per-coin overrides; see README). When set, its windows, candle
    interval, grace, cooldown and thresholds replace the five settings below."""
    windows: CommaList = Field(default_factory=lambda: ["5m", "15m", "1h"])
    """Windows the percent change is computed over; the drop/spike rules apply to each."""
    candle_interval: Annotated[int, Field(gt=0)] = 60_000
    """Candle length; volatility, crossover and RSI signals work on closed candles."""
    grace: Annotated[int, Field(ge=0)] = 60_000
    """How late (event time) a tick may arrive and still update its windows."""
    drop_pct: Annotated[float, Field(gt=0, lt=100)] = 5.0
    """Alert when a price falls this many percent below its window high."""
    spike_pct: Annotated[float, Field(gt=0)] = 5.0
    """Alert when a price rises this many percent above its window low."""
    cooldown: Annotated[int, Field(ge=0)] = 900_000
    """After an alert, the same pair, rule and window stays quiet this long (event time)."""

    _processor_lists = field_validator("windows", mode="before")(_split_commas)
    _processor_durations = field_validator("grace", "cooldown", "commit_interval", "candle_interval", mode="before")(
        _duration
    )

    @field_validator("windows")
    @classmethod
    def _valid_windows(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one window")
        for item in value:
            parse_duration_ms(item)
        return value

    @property
    def window_ms(self) -> list[int]:
        return [parse_duration_ms(w) for w in self.windows]


S = TypeVar("S", bound=BaseModel)


def load_settings(cls: type[S], flags: Mapping[str, Any] | None = None) -> S:
    """Build settings from the environment, with command-line ``flags`` (field -> value) on top.

    Errors name the setting as the user wrote it: ``--poll-interval`` for a flag,
    ``CW_POLL_INTERVAL`` for an environment variable, with the offending value.
    """
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    try:
        return cls(**given)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            env = ENV_PREFIX + field.upper()
            if field in given:
                where = f"--{field.replace('_', '-')} (command line)"
            elif env in os.environ:
                where = f"{env} (environment variable)"
            else:
                where = field
            lines.append(f"  {where} = {err.get('input')!r}: {err['msg']}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
