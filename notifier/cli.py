"""``crypto-notifier``: deliver alerts from ``crypto.alerts`` to Telegram, Slack, e-mail, webhooks... and stdout."""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from crypto_watcher.cli_help import add_bootstrap, add_log_level, add_setting, add_stop_when_idle, service_parser
from crypto_watcher.config import ConfigError, NotifierSettings, load_settings
from crypto_watcher.health import CachedCheck, HealthServer, kafka_reachable, serve
from crypto_watcher.logs import setup_logging
from crypto_watcher.messages import Alert
from notifier.service import Notifier
from notifier.targets import Target, build_targets
from notifier.text import render

log = logging.getLogger("notifier")

EPILOG = """\
Every option can also be set by its environment variable (shown in brackets); flags win.
Where alerts go is set only by the environment, since the URLs hold secrets (a command line is
visible to every user of the machine): CW_NOTIFY_URLS, Apprise URLs separated by commas or spaces.
Examples:
  crypto-notifier                                      # every alert as one line on stdout
  CW_NOTIFY_URLS='tgram://BOT_TOKEN/CHAT_ID' crypto-notifier --min-severity warning
  CW_NOTIFY_URLS='mailto://user:app-password@gmail.com json://hooks.example.org/cw' crypto-notifier
  CW_NOTIFY_URLS=... crypto-notifier --send-test       # one sample notification to each URL, then exit
URL syntax of each service: https://github.com/caronc/apprise/wiki
An alert is committed only once every URL accepted it; failures are retried with exponential
backoff for as long as it takes, and an alert id already delivered is never sent again.
Stop with Ctrl-C or SIGTERM (an alert still being retried stays uncommitted); the exit status is 0.
Exit status 2: invalid configuration; 1: --send-test had a failure.
"""


def build_parser() -> argparse.ArgumentParser:
    p = service_parser("crypto-notifier", __doc__, EPILOG)
    settings = NotifierSettings
    add_bootstrap(p)
    add_setting(p, settings, "alerts_topic", "--topic")
    add_setting(p, settings, "notify_group", "--group")
    add_setting(p, settings, "notify_min_severity", "--min-severity")
    add_setting(
        p,
        settings,
        "notify_console",
        "--no-console",
        text="do not print alerts on stdout when URLs are set (CW_NOTIFY_CONSOLE=false)",
        action="store_const",
        const=False,
    )
    add_setting(p, settings, "notify_state", "--state")
    add_setting(p, settings, "http_port", type=int)
    add_stop_when_idle(p, "alert")
    p.add_argument(
        "--send-test",
        action="store_true",
        help="send one sample notification to every target, report each result, and exit (no Kafka)",
    )
    add_log_level(p)
    return p


def sample_alert() -> Alert:
    now = int(time.time()) * 1000
    return Alert(
        id=Alert.make_id("bitcoin", "usd", "test", "drop", "15m", now),
        coin="bitcoin",
        vs="usd",
        kind="drop",
        rule="drop",
        window="15m",
        window_ms=900_000,
        change_pct=-5.0,
        price=57_000.0,
        reference_price=60_000.0,
        threshold_pct=5.0,
        event_time=now,
        severity="info",
        message="Test from crypto-notifier: bitcoin fell 5.00% within 15m (not a real alert).",
    )


def send_test(targets: Sequence[Target]) -> int:
    """Every target once, no retries: a quick way to check the URLs before waiting for a real alert."""
    note = render(sample_alert())
    failures = 0
    for target in targets:
        reason = target.send(note)
        if reason is None:
            log.info("test notification to %s: delivered", target.name)
        else:
            failures += 1
            log.error("test notification to %s: failed: %s", target.name, reason)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, "notifier")
    flags = {k: v for k, v in vars(args).items() if k not in ("stop_when_idle", "send_test", "log_level")}
    try:
        settings = load_settings(NotifierSettings, flags)
        targets = build_targets(settings)
    except ConfigError as exc:
        print(f"crypto-notifier: {exc}", file=sys.stderr)
        return 2
    if args.send_test:
        return send_test(targets)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping (an alert being retried stays uncommitted)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        notifier = Notifier(settings, targets, stop=stop)
    except (OSError, sqlite3.Error) as exc:
        print(f"crypto-notifier: cannot open CW_NOTIFY_STATE={settings.notify_state!r}: {exc}", file=sys.stderr)
        return 2
    try:
        server = serve_endpoints(settings, notifier)
    except OSError as exc:
        notifier.close()
        where = f"{settings.http_host}:{settings.http_port}"
        print(f"crypto-notifier: cannot serve HTTP on {where} (CW_HTTP_HOST/CW_HTTP_PORT): {exc}", file=sys.stderr)
        return 2
    try:
        notifier.run(max_idle_s=args.stop_when_idle or None)
    finally:
        if server is not None:
            server.stop()
    return 0


def serve_endpoints(settings: NotifierSettings, notifier: Notifier) -> HealthServer | None:
    """/metrics, /livez (the loop turns, including while it waits out a retry), /readyz (Kafka answers)."""
    ready = CachedCheck(kafka_reachable(settings.kafka_bootstrap))
    return serve(settings.http_host, settings.http_port, notifier.live, ready)


if __name__ == "__main__":
    raise SystemExit(main())
