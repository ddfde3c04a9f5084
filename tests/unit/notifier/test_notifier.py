"""Notifier without Kafka: the text people read, targets and their secrets, settings, the
delivered-ids store and the retry backoff."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest

from crypto_watcher.config import ConfigError, NotifierSettings, load_settings, split_urls
from crypto_watcher.retry import Backoff
from notifier.store import DeliveredStore
from notifier.targets import AppriseTarget, ConsoleTarget, build_targets
from notifier.text import render
from tests.support.alerts import SECRET, make_alert


def test_console_line_is_one_readable_line() -> None:
    alert = make_alert(
        "solana",
        price=0.0012345,
        reference_price=0.0013,
        change_pct=-5.03846,
        message="solana fell\nsharply",
        event_time=1_767_225_600_000,
        id="0123456789abcdef0123",
    )
    out = io.StringIO()
    assert ConsoleTarget(lambda: out).send(render(alert)) is None
    assert out.getvalue() == (
        "2026-01-01T00:00:00Z WARNING  solana:usd drop -5.04% in 15m: 0.001234 USD (ref 0.001300 USD)"
        " - solana fell sharply [id 0123456789abcdef0123]\n"
    )


def test_titles_and_bodies_of_other_rules() -> None:
    alert = make_alert(
        kind="buy_hint", rule="rsi", threshold_pct=30.0, indicator=24.56, severity="info", change_pct=3.2
    )
    note = render(alert)
    assert note.title == "[INFO] bitcoin:usd buy hint +3.20% in 15m"
    assert "Change: +3.20% in 15m (rule rsi, threshold 30, indicator 24.56)" in note.body.splitlines()
    assert "Reference: 60,008.00 USD (reference)" in note.body.splitlines()


def test_targets_console_by_default_and_always_without_urls() -> None:
    def names(**values: Any) -> list[str]:
        return [t.name for t in build_targets(load_settings(NotifierSettings, values))]

    assert names() == ["console"]
    assert names(notify_console=False) == ["console"]  # nothing else configured: never silent
    two = "json://127.0.0.1:9/a,form://127.0.0.1:9/b"
    assert names(notify_urls=two) == ["console", "json://", "form://"]
    assert names(notify_urls=two, notify_console=False) == ["json://", "form://"]


def test_urls_split_on_commas_and_whitespace_but_not_inside_a_url() -> None:
    text = " tgram://123:abc/456, json://h/x\n mailto://u:p@example.org?to=a@x.org,b@y.org,,discord://1/t ,"
    assert split_urls(text) == [
        "tgram://123:abc/456",
        "json://h/x",
        "mailto://u:p@example.org?to=a@x.org,b@y.org",
        "discord://1/t",
    ]


def test_bad_urls_are_reported_without_their_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CW_NOTIFY_URLS", f"json://u:{SECRET}@h/x nosuch://{SECRET}/1 {SECRET} tgram://{SECRET}")
    settings = load_settings(NotifierSettings)
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    with pytest.raises(ConfigError) as info:
        build_targets(settings)
    text = str(info.value)
    assert SECRET not in text
    assert "CW_NOTIFY_URLS entry 2 of 4: unknown apprise scheme 'nosuch://'" in text
    assert "CW_NOTIFY_URLS entry 3 of 4: not a URL" in text
    assert "CW_NOTIFY_URLS entry 4 of 4 (tgram://): apprise cannot use it" in text
    assert "entry 1" not in text


def test_settings_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CW_NOTIFY_MIN_SEVERITY", "loud")
    monkeypatch.setenv("CW_NOTIFY_MAX_BACKOFF", "forever")
    with pytest.raises(ConfigError) as info:
        load_settings(NotifierSettings)
    assert "CW_NOTIFY_MIN_SEVERITY (environment variable) = 'loud'" in str(info.value)
    assert "CW_NOTIFY_MAX_BACKOFF (environment variable) = 'forever'" in str(info.value)
    monkeypatch.delenv("CW_NOTIFY_MIN_SEVERITY")
    monkeypatch.setenv("CW_NOTIFY_MAX_BACKOFF", "10m")
    monkeypatch.setenv("CW_NOTIFY_RETENTION", "7d")
    s = load_settings(NotifierSettings)
    assert (s.notify_max_backoff, s.notify_retention, s.notify_min_severity) == (600_000, 604_800_000, "info")


def test_failure_reasons_are_scrubbed_of_every_part_of_the_url() -> None:
    target = AppriseTarget(f"json://user:{SECRET}@hooks.example.org:8443/t0ken/path?secret=abc123", 5.0)
    scrubbed = target.redact(f"POST to https://hooks.example.org:8443/t0ken/path failed for user:{SECRET}; abc123")
    assert all(s not in scrubbed for s in (SECRET, "hooks.example.org", "t0ken", "abc123", "8443"))
    assert target.name == "json://"
    assert SECRET not in target.key


def test_store_remembers_ids_and_forgets_them_after_the_retention(tmp_path: Path) -> None:
    now = [10_000_000_000_000]
    path = tmp_path / "sub" / "delivered.sqlite"
    store = DeliveredStore(path, retention_ms=1000, clock=lambda: now[0])
    store.mark_target("a" * 20, "console", now[0] - 500)
    assert store.delivered_targets("a" * 20) == {"console"}
    store.mark_delivered("a" * 20, now[0] - 500)
    store.mark_delivered("b" * 20, now[0] - 2000)
    store.close()

    store = DeliveredStore(path, retention_ms=1000, clock=lambda: now[0])  # survives a restart
    assert store.is_delivered("a" * 20) and store.delivered_targets("a" * 20) == set()
    assert store.purge() == 1
    assert not store.is_delivered("b" * 20) and store.count() == 1
    now[0] += 1000
    assert store.purge() == 1 and store.count() == 0
    store.close()


def test_backoff_doubles_with_jitter_up_to_the_maximum() -> None:
    backoff = Backoff(base_s=1.0, max_s=30.0, rng=random.Random(1))
    delays = [backoff.delay(n) for n in range(1, 12)]
    ceilings = [min(30.0, 2.0 ** (n - 1)) for n in range(1, 12)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)
