"""Typed configuration shared by every service: environment variables (``CW_*``) and CLI flags.

Every setting has one name, one environment variable and one default, listed in the README's
configuration reference. Invalid values fail at start-up with a message naming the setting, the
value and where it came from (environment variable or command-line flag), never deep inside a loop.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from crypto_watcher.durations import Duration, DurationOrZero, Retention, parse_duration_ms
from crypto_watcher.messages import ALERTS_TOPIC, TICKS_DLQ_TOPIC, TICKS_TOPIC, Severity

ENV_PREFIX = "CW_"
UNSET = "unset_means"
"""The ``json_schema_extra`` key of a setting whose unset value means something other than none."""
PLANS_DEFAULT = {UNSET: "the plan's"}


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


def _valid_windows(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("name at least one window")
    for item in value:
        parse_duration_ms(item)
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]
"""A list written ``a,b,c`` in the environment or on a flag."""
WindowList = Annotated[CommaList, AfterValidator(_valid_windows)]
"""Window names like ``5m,15m,1h``: each one a duration, at least one; kept as spelled for tags and alerts."""
Percent = Annotated[float, Field(gt=0, lt=100)]
"""A move threshold in percent (the drop/spike settings and the rules file's ``threshold_pct``)."""


def _replication(value: Any) -> Any:
    """Unset, empty, ``default`` or -1 all mean: the brokers' own ``default.replication.factor``."""
    if isinstance(value, str) and value.strip().lower() in ("", "default", "-1"):
        return None
    if value == -1:
        return None
    return value


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
    topic_retention: Retention = 28 * 86_400_000
    """How long Kafka keeps ticks, alerts and dead letters after they are published (replays need
    it; a backfill of last year stays this long from the day it ran). 0 or `forever`: never deleted."""
    ticks_partitions: Annotated[int, Field(ge=1, le=1000)] = 3
    """Partitions of the ticks topic when the producer creates it (the processor's max parallelism)."""
    topic_replication: Annotated[int, Field(ge=1, le=32767)] | None = None
    """Replication factor of every topic the services create: ticks, alerts, dead letters and the
    processor's state changelogs. Unset (or `default`): the brokers' `default.replication.factor`.
    Start-up fails, saying why, if the cluster cannot meet it (fewer brokers, or below the brokers'
    `min.insync.replicas`); existing topics keep theirs, with a warning if it is lower."""

    _replicas = field_validator("topic_replication", mode="before")(_replication)


class HttpSettings(_Base):
    http_host: str = "127.0.0.1"
    """Address of the /metrics, /livez, /readyz endpoints (0.0.0.0 in containers)."""


class LogSettings(_Base):
    """Logging of every service; read by ``crypto_watcher.logs.setup_logging`` (flags win)."""

    log_level: str = "INFO"
    """Log level of every service: DEBUG, INFO, WARNING or ERROR."""
    log_format: str = "auto"
    """`json`: one JSON object per line; `console`: readable lines; `auto`: console on a terminal, JSON otherwise."""


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
    top_n_refresh: Duration = 3_600_000
    """How often the top-N list is fetched again."""
    vs_currencies: CommaList = Field(default_factory=lambda: ["usd"])
    """Currencies to quote in, comma separated."""
    poll_interval: Duration = 60_000
    """How often to ask for quotes. CoinGecko refreshes /simple/price every 60 s (20 s on paid plans)."""
    coingecko_plan: Plan = Plan.PUBLIC
    """CoinGecko access plan: `public` (keyless), `demo` or `pro`."""
    coingecko_api_key: str | None = None
    """API key for the demo or pro plan (sent in the plan's header, never logged)."""
    coingecko_base_url: Annotated[str | None, Field(json_schema_extra=PLANS_DEFAULT)] = None
    """Defaults to the plan's URL; tests and proxies point it elsewhere."""
    coingecko_timeout: Duration = 10_000
    """Timeout of one CoinGecko call."""
    coingecko_calls_per_minute: Annotated[
        Annotated[float, Field(gt=0)] | None, Field(json_schema_extra=PLANS_DEFAULT)
    ] = None
    """Call budget shared by every CoinGecko call. Defaults to the plan's (public 10, demo 30, pro 500)."""
    coingecko_monthly_calls: Annotated[int, Field(gt=0)] | None = None
    """Monthly call credits of your plan (Demo has had 10,000): warns at start-up if polling would spend more."""
    coingecko_ids_per_call: Annotated[int, Field(ge=1, le=1000)] = 250
    """Coin ids per /simple/price call (fewer when their URL would pass 5,000 characters)."""
    coingecko_cache_dir: str = ".cache/coingecko"
    """Folder of the cached coin list (symbol and name lookup) and of backfill checkpoints."""
    coins_list_ttl: Duration = 86_400_000
    """How long the cached /coins/list is used before it is fetched again."""
    stale_after: Duration = 600_000
    """A quote whose update time has not moved for this long is reported stale (log line and gauge)."""
    max_backoff: Duration = 300_000
    """Longest wait between retries after failures (without a Retry-After)."""
    simulate_seed: int = 42
    """Seed of the simulated market (same seed, same prices)."""
    simulate_event_every: Duration = 180_000
    """The simulated feed schedules a drop or spike on one coin this often."""
    simulate_event_size_pct: Annotated[float, Field(gt=0, lt=90)] = 8.0
    """Size of each simulated drop or spike, in percent."""
    simulate_event_over: Duration = 60_000
    """How long each simulated move takes."""

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
    influx_timeout: Duration = 10_000
    """Timeout of one InfluxDB write."""


class ProcessorSettings(KafkaSettings, InfluxSettings, HttpSettings):
    http_port: Annotated[int, Field(ge=-1, le=65535)] = 9102
    """Port of the health and metrics endpoints (-1: off)."""
    consumer_group: str = "crypto-processor"
    """Kafka consumer group (and state folder name) of the processor."""
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where a new consumer group starts: `earliest` (all retained ticks) or `latest`."""
    state_dir: str = ".cache/state"
    """Folder of the processor's local window state (RocksDB; rebuilt from changelogs if lost)."""
    commit_interval: Duration = 250
    """Checkpoint interval: InfluxDB writes and offset commits happen this often. Ticks wait while a
    checkpoint writes, so a longer one means later alerts (p99 tick to alert at 1,000 ticks/s: 63 ms
    at 250ms, 113 ms at 1s, docs/performance.md) for fewer, larger writes (a backlog at 1s: ~8 %
    more ticks/s). Replays and scorecards use 1s whatever this is."""
    state_cache_mb: Annotated[int, Field(ge=8, le=65_536)] = 16
    """RocksDB block cache (MB) for the window state, one shared by the whole process; it fills as
    state is read, so it is a ceiling, not an allocation (quixstreams' default, 1024, let a
    10,000-coin processor grow past 800 MB; the OS page cache still holds the state files; 16 and
    32 process a backlog equally fast, docs/performance.md)."""
    state_write_buffer_mb: Annotated[int, Field(ge=1, le=1024)] = 4
    """RocksDB write buffer (MB) per state partition; up to three are held in memory before they are
    flushed to disk (quixstreams' default, 64, held ~190 MB of memtables at 10,000 coins)."""
    consumer_prefetch_kb: Annotated[int, Field(ge=64, le=1_048_576)] = 256
    """Most ticks (KB) the Kafka consumer fetches ahead (librdkafka's queued.max.messages.kbytes); its
    default (64 MB) buffered most of a backlog in memory, and 16 MB did not cap it. 256 KB is about
    a thousand ticks, several times what the processor handles between two fetches."""
    malloc_trim_interval: DurationOrZero = 5_000
    """How often the processor returns freed memory to the OS (glibc malloc_trim; 0: never). A
    10,000-coin processor otherwise keeps ~500 MB it freed; each trim takes ~15 ms."""
    rules_file: str | None = None
    """Alert rules YAML (defaults + per-coin overrides; see README). When set, its windows, candle
    interval, grace, cooldown and thresholds replace the five settings below."""
    windows: WindowList = Field(default_factory=lambda: ["5m", "15m", "1h", "4h", "24h"])
    """Windows the percent change is computed over; the drop/spike rules apply to each. Up to 1h a
    window is exact over ticks, on every tick; a longer one is computed from candles as each candle
    closes and spans up to 1/48 more (24h: 24h to 24h30m)."""
    candle_interval: Duration = 60_000
    """Candle length; volatility, crossover and RSI signals work on closed candles."""
    grace: DurationOrZero = 60_000
    """How late (event time) a tick may arrive and still update its windows."""
    drop_pct: Percent = 5.0
    """Alert when a price falls this many percent below its window high."""
    spike_pct: Percent = 5.0
    """Alert when a price rises this many percent above its window low."""
    cooldown: Duration = 900_000
    """After an alert, the same pair, rule and window stays quiet this long (event time)."""

    @property
    def window_ms(self) -> list[int]:
        return [parse_duration_ms(w) for w in self.windows]


SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}

# A comma starts a new URL only when a scheme follows it; otherwise it belongs to the URL
# (apprise itself allows ``mailto://...?to=a@x.org,b@y.org``).
_COMMA_BEFORE_SCHEME = re.compile(r",+(?=[A-Za-z][A-Za-z0-9+.-]*://)")


class NotifierSettings(KafkaSettings, HttpSettings):
    """Settings of ``crypto-notifier``.

    The notification URLs carry credentials (bot tokens, webhook secrets, SMTP passwords), so they
    are a ``SecretStr`` and are never validated here: a pydantic error message would echo the raw
    value. They are split and checked by :func:`split_urls` and ``notifier.targets.build_targets``,
    whose errors name only the entry's position and scheme.
    """

    http_port: Annotated[int, Field(ge=-1, le=65535)] = 9103
    """Port of the health and metrics endpoints (-1: off)."""
    notify_urls: SecretStr | None = None
    """Apprise URLs alerts go to (`tgram://`, `slack://`, `mailto://`, `json://`...), comma/space separated; secret."""
    notify_console: bool = True
    """Also print each alert as one line on stdout (always on when `CW_NOTIFY_URLS` is unset)."""
    notify_min_severity: Severity = "info"
    """Deliver only alerts at least this severe: `info`, `warning` or `critical`."""
    notify_group: str = "crypto-notifier"
    """Kafka consumer group of the notifier; a new group starts at the oldest retained alert."""
    notify_state: str = ".cache/notifier/delivered.sqlite"
    """SQLite file of delivered alert ids: a restart or a replay never delivers an alert twice."""
    notify_retention: Duration = 86_400_000
    """Delivered ids are kept this long (alert event time); an older alert is skipped, not delivered,
    so a first start or a replay of old ranges never floods anyone with yesterday's news."""
    notify_timeout: Duration = 30_000
    """Longest one delivery attempt to one URL may take."""
    notify_min_backoff: Duration = 1_000
    """Wait after a first failed delivery; it doubles (with jitter) up to `CW_NOTIFY_MAX_BACKOFF`."""
    notify_max_backoff: Duration = 300_000
    """Longest wait between delivery attempts. Attempts never stop: an alert is delivered or kept."""

    @property
    def urls(self) -> list[str]:
        """The configured URLs, in order (may contain secrets: never log them)."""
        return split_urls(self.notify_urls.get_secret_value() if self.notify_urls else "")

    def at_least_min_severity(self, severity: str) -> bool:
        return SEVERITY_RANK[severity] >= SEVERITY_RANK[self.notify_min_severity]


def split_urls(text: str) -> list[str]:
    """Split on whitespace, and on commas that start a new ``scheme://``; empty entries vanish."""
    out: list[str] = []
    for chunk in text.split():
        out.extend(part for part in (p.strip(",") for p in _COMMA_BEFORE_SCHEME.split(chunk)) if part)
    return out


S = TypeVar("S", bound=BaseModel)


def unset_means(model: type[BaseModel], name: str) -> str | None:
    """What leaving a setting without a default unset means (``the plan's``), where that is not "none":
    the flags' help and the README's reference both say it, from the field's ``UNSET`` marker."""
    extra = model.model_fields[name].json_schema_extra
    return extra.get(UNSET) if isinstance(extra, dict) else None  # type: ignore[return-value]


def default_of(model: type[BaseModel], name: str) -> Any:
    """A setting's default (its factory called), for the places that must agree with it: the rules
    file's defaults, the README's reference and every flag's help read it here instead of copying it."""
    return model.model_fields[name].get_default(call_default_factory=True)


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
