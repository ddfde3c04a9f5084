"""The environment of a service the tests start as a subprocess (``python -m processor`` and the rest).

Built in one place because every such test needs the same three things right: none of the
developer's own ``CW_*`` variables may leak in (a stray ``CW_WINDOWS`` would change what the test
measures), the services' Kafka and topics, and the test's own settings, named as the services read
them (``CW_<SETTING>``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tests.support.services import Influx2


def service_env(kafka_bootstrap: str, topics: Mapping[str, str], **settings: str | int | Path) -> dict[str, str]:
    """This process's environment without ``CW_*``, plus Kafka, the ticks/alerts/DLQ topics and
    ``settings`` (``commit_interval="1s"`` becomes ``CW_COMMIT_INTERVAL=1s``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CW_")}
    env["CW_KAFKA_BOOTSTRAP"] = kafka_bootstrap
    for kind in ("ticks", "alerts", "dlq"):
        env[f"CW_{kind.upper()}_TOPIC"] = topics[kind]
    env.update({f"CW_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def influx2_settings(influx2: Influx2, bucket: str, url: str | None = None) -> dict[str, str]:
    """The processor's settings for an InfluxDB 2 bucket, reached at ``url`` (a fault proxy) or directly."""
    return {
        "influx_api": "v2",
        "influx_url": url or influx2.url,
        "influx_token": influx2.token,
        "influx_org": influx2.org,
        "influx_bucket": bucket,
    }


def notifier_settings(tmp: Path, group: str, urls: str | None = None) -> dict[str, str | Path]:
    """The notifier's settings for a test: its own group and delivery state under ``tmp``, no
    console channel, quick retries (5 s at most) and ``urls`` (Apprise) if given."""
    settings: dict[str, str | Path] = {
        "notify_group": group,
        "notify_state": tmp / "delivered.sqlite",
        "notify_console": "false",
        "notify_retention": "30d",
        "notify_max_backoff": "5s",
    }
    if urls is not None:
        settings["notify_urls"] = urls
    return settings
