"""Settings of ``crypto-notifier`` (environment variables ``CW_*``, flags on top; see crypto_watcher.config).

The notification URLs carry credentials (bot tokens, webhook secrets, SMTP passwords), so they are a
``SecretStr`` and are never validated here: a pydantic error message would echo the raw value. They
are split and checked by :func:`split_urls` and ``notifier.targets.build_targets``, whose errors name
only the entry's position and scheme.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from crypto_watcher.config import HttpSettings, KafkaSettings
from crypto_watcher.durations import parse_duration_ms
from crypto_watcher.messages import Severity

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}

# A comma starts a new URL only when a scheme follows it; otherwise it belongs to the URL
# (apprise itself allows ``mailto://...?to=a@x.org,b@y.org``).
_COMMA_BEFORE_SCHEME = re.compile(r",+(?=[A-Za-z][A-Za-z0-9+.-]*://)")


class NotifierSettings(KafkaSettings, HttpSettings):
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
    notify_retention: Annotated[int, Field(gt=0)] = 86_400_000
    """Delivered ids are kept this long (alert event time); an older alert is skipped, not delivered,
    so a first start or a replay of old ranges never floods anyone with yesterday's news."""
    notify_timeout: Annotated[int, Field(gt=0)] = 30_000
    """Longest one delivery attempt to one URL may take."""
    notify_min_backoff: Annotated[int, Field(gt=0)] = 1_000
    """Wait after a first failed delivery; it doubles (with jitter) up to `CW_NOTIFY_MAX_BACKOFF`."""
    notify_max_backoff: Annotated[int, Field(gt=0)] = 300_000
    """Longest wait between delivery attempts. Attempts never stop: an alert is delivered or kept."""

    @field_validator("notify_retention", "notify_timeout", "notify_min_backoff", "notify_max_backoff", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        """Text from env/flags is a duration ("90s"); ints from code are already milliseconds."""
        return parse_duration_ms(value) if isinstance(value, str) else value

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
