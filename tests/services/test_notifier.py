"""Notifier against the real Kafka: delivered once, retried until accepted, committed only after
delivery, health endpoints."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import REGISTRY
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from crypto_watcher.config import NotifierSettings, load_settings
from crypto_watcher.kafka import ensure_topic
from notifier.cli import serve_endpoints
from notifier.service import Notifier, Stats
from notifier.targets import build_targets
from notifier.text import render
from tests.support.alerts import SECRET, make_alert
from tests.support.paths import ROOT
from tests.support.services import Services, unique

IDLE_S = 2.0


def produce(bootstrap: str, topic: str, *values: bytes) -> None:
    ensure_topic(bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, key=b"bitcoin:usd", value=value)
    assert producer.flush(10) == 0


def committed(bootstrap: str, group: str, topic: str) -> int | None:
    """The group's committed offset of partition 0, None when it never committed."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset) if tp.offset >= 0 else None
    finally:
        consumer.close()


def settings_for(services: Services, topic: str, state: Path, urls: str | None = None, **more: Any) -> NotifierSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": services.kafka_bootstrap,
        "alerts_topic": topic,
        "notify_group": unique("notifier"),
        "notify_state": str(state / "delivered.sqlite"),
        "notify_urls": urls,
        "notify_min_backoff": 50,
        "notify_max_backoff": 200,
        "http_port": -1,
    }
    values.update(more)
    return load_settings(NotifierSettings, values)


def run(settings: NotifierSettings, idle_s: float = IDLE_S) -> Stats:
    notifier = Notifier(settings, build_targets(settings), rng=random.Random(7))
    return notifier.run(max_idle_s=idle_s)


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def received(server: HTTPServer, status: int | None = 200) -> list[dict[str, Any]]:
    """JSON bodies the webhook got (with the given answer status; None: all)."""
    return [json.loads(req.get_data()) for req, resp in server.log if status is None or resp.status_code == status]


class Metrics:
    """Counter increases since creation (the metrics are process-wide; tests run one after another)."""

    NAMES = (
        ("cw_notifier_alerts_received_total", {}),
        ("cw_notifier_duplicates_total", {}),
        ("cw_notifier_deliveries_total", {"status": "ok"}),
        ("cw_notifier_deliveries_total", {"status": "failed"}),
        *(("cw_notifier_skipped_total", {"reason": r}) for r in ("invalid", "severity", "expired")),
    )

    def __init__(self) -> None:
        self._start = self._now()

    @classmethod
    def _now(cls) -> dict[str, float]:
        out = {}
        for name, labels in cls.NAMES:
            key = name + "".join(f",{k}={v}" for k, v in labels.items())
            out[key] = REGISTRY.get_sample_value(name, labels) or 0.0
        return out

    def delta(self) -> dict[str, float]:
        return {k: v - self._start[k] for k, v in self._now().items() if v != self._start[k]}


@pytest.fixture
def webhook() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


def hook_url(server: HTTPServer, path: str = "/hook") -> str:
    return f"json://cw:{SECRET}@127.0.0.1:{server.port}{path}"


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.services
def test_alert_is_delivered_once_with_its_content(
    services: Services, topics: dict[str, str], tmp_path: Path, webhook: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook.expect_request("/hook", method="POST").respond_with_data("ok")
    alert = make_alert(severity="critical")
    produce(services.kafka_bootstrap, topics["alerts"], alert.to_json())
    settings = settings_for(services, topics["alerts"], tmp_path, hook_url(webhook))
    counted = Metrics()

    stats = run(settings)

    [got] = received(webhook)
    assert got["title"] == "[CRITICAL] bitcoin:usd drop -5.04% in 15m"
    assert got["type"] == "failure"  # apprise's most urgent type, for colours and icons
    body = got["message"]
    assert body.startswith(alert.message + "\n")
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(alert.event_time / 1000))
    for line in (
        "Pair: bitcoin:usd",
        "Change: -5.04% in 15m (rule drop, threshold 5%)",
        "Price: 56,983.00 USD",
        "Reference: 60,008.00 USD (window high)",
        "Window: 15m",
        "Severity: critical",
        f"Time: {when}",
        f"Alert id: {alert.id}",
    ):
        assert line in body.splitlines()
    assert capsys.readouterr().out.splitlines() == [render(alert).line]
    assert (stats.received, stats.delivered, stats.duplicates) == (1, 1, 0)
    assert committed(services.kafka_bootstrap, settings.notify_group, topics["alerts"]) == 1
    assert counted.delta() == {
        "cw_notifier_alerts_received_total": 1,
        "cw_notifier_deliveries_total,status=ok": 2,  # console and webhook
    }


@pytest.mark.services
def test_same_id_twice_is_delivered_once_and_never_again_after_restart(
    services: Services, topics: dict[str, str], tmp_path: Path, webhook: HTTPServer
) -> None:
    webhook.expect_request("/hook").respond_with_data("ok")
    first, second = make_alert("bitcoin"), make_alert("ethereum")
    produce(services.kafka_bootstrap, topics["alerts"], first.to_json(), first.to_json(), second.to_json())
    settings = settings_for(services, topics["alerts"], tmp_path, hook_url(webhook), notify_console=False)

    counted = Metrics()
    stats = run(settings)
    assert [b["message"].splitlines()[-1] for b in received(webhook)] == [
        f"Alert id: {first.id}",
        f"Alert id: {second.id}",
    ]
    assert (stats.received, stats.delivered, stats.duplicates) == (3, 2, 1)
    assert counted.delta() == {
        "cw_notifier_alerts_received_total": 3,
        "cw_notifier_duplicates_total": 1,
        "cw_notifier_deliveries_total,status=ok": 2,
    }
    assert committed(services.kafka_bootstrap, settings.notify_group, topics["alerts"]) == 3

    # A restart (new instance, same group and state): everything was committed, nothing is read.
    again = run(settings)
    assert (again.received, again.delivered) == (0, 0)

    # Offsets lost (a new group re-reads the whole topic) or the processor replays the alert:
    # the delivered ids in the state file still keep every one of them from going out twice.
    produce(services.kafka_bootstrap, topics["alerts"], first.to_json())
    replay = run(settings.model_copy(update={"notify_group": unique("notifier")}))
    resent = run(settings)
    assert (replay.received, replay.delivered, replay.duplicates) == (4, 0, 4)
    assert (resent.received, resent.delivered, resent.duplicates) == (1, 0, 1)
    assert len(received(webhook, status=None)) == 2


@pytest.mark.services
def test_failing_webhook_is_retried_until_delivered_and_only_then_committed(
    services: Services,
    topics: dict[str, str],
    tmp_path: Path,
    webhook: HTTPServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    third_failure = threading.Event()
    offset_checked = threading.Event()

    def answer(request: Request) -> Response:
        calls.append(json.loads(request.get_data())["message"].splitlines()[-1])
        if len(calls) == 3:
            third_failure.set()
            offset_checked.wait(20)  # hold the answer until the test has looked at Kafka
        return Response("busy", status=500) if len(calls) <= 3 else Response("ok")

    webhook.expect_request("/hook-t0ken").respond_with_handler(answer)
    alert, later = make_alert("bitcoin"), make_alert("ethereum")
    produce(services.kafka_bootstrap, topics["alerts"], alert.to_json(), later.to_json())
    settings = settings_for(services, topics["alerts"], tmp_path, hook_url(webhook, "/hook-t0ken"))
    notifier = Notifier(settings, build_targets(settings), rng=random.Random(7))
    counted = Metrics()
    result: list[Stats] = []
    caplog.set_level(logging.INFO)
    worker = threading.Thread(target=lambda: result.append(notifier.run(max_idle_s=IDLE_S)))
    worker.start()
    try:
        assert third_failure.wait(30)
        assert committed(services.kafka_bootstrap, settings.notify_group, topics["alerts"]) is None
    finally:
        offset_checked.set()
        worker.join(60)
    [stats] = result

    # In order: the alert behind the failing one waits (its partition paused), and is not lost.
    assert calls == [f"Alert id: {alert.id}"] * 4 + [f"Alert id: {later.id}"]
    assert (stats.delivered, stats.failed_attempts) == (2, 3)
    assert committed(services.kafka_bootstrap, settings.notify_group, topics["alerts"]) == 2
    assert counted.delta() == {
        "cw_notifier_alerts_received_total": 2,
        "cw_notifier_deliveries_total,status=ok": 4,  # console and webhook, two alerts
        "cw_notifier_deliveries_total,status=failed": 3,
    }
    # The console accepted at once and is not written to again while the webhook is retried.
    assert capsys.readouterr().out.count(alert.id) == 1
    failures = [r.getMessage() for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert len(failures) == 3
    assert all("delivery to json:// failed" in f and "retrying in" in f for f in failures)
    # Scheme only: no password, no path (a token in many services), no host:port. (werkzeug's lines
    # are the test webhook's own access log.)
    ours = [r.getMessage() for r in caplog.records if r.name != "werkzeug"]
    assert ours and not [m for m in ours if SECRET in m or "t0ken" in m or f":{webhook.port}" in m]


@pytest.mark.services
def test_sigterm_during_failing_delivery_commits_nothing_and_next_run_delivers(
    services: Services, topics: dict[str, str], tmp_path: Path, webhook: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook.expect_request("/hook").respond_with_data("down", status=503)
    alert = make_alert()
    produce(services.kafka_bootstrap, topics["alerts"], alert.to_json())
    settings = settings_for(services, topics["alerts"], tmp_path, hook_url(webhook))
    env = {
        **os.environ,
        "CW_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "CW_ALERTS_TOPIC": topics["alerts"],
        "CW_NOTIFY_GROUP": settings.notify_group,
        "CW_NOTIFY_STATE": settings.notify_state,
        "CW_NOTIFY_URLS": hook_url(webhook),
        "CW_NOTIFY_MIN_BACKOFF": "100ms",
        "CW_NOTIFY_MAX_BACKOFF": "300ms",
        "CW_HTTP_PORT": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "notifier"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: len(webhook.log) >= 2 or process.poll() is not None)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "SIGTERM received" in err and "left uncommitted" in err
    assert SECRET not in err and SECRET not in out
    assert out.splitlines() == [render(alert).line]  # the console got it; only the webhook is owed
    assert committed(services.kafka_bootstrap, settings.notify_group, topics["alerts"]) is None
    assert received(webhook) == []

    webhook.clear()
    webhook.expect_request("/hook").respond_with_data("ok")
    stats = run(settings)
    assert [b["title"] for b in received(webhook)] == ["[WARNING] bitcoin:usd drop -5.04% in 15m"]
    assert stats.delivered == 1
    assert capsys.readouterr().out == ""  # not printed twice
    assert committed(services.kafka_bootstrap, settings.notify_group, topics["alerts"]) == 1


@pytest.mark.services
def test_min_severity_undecodable_and_expired_alerts_are_skipped_and_committed(
    services: Services, topics: dict[str, str], tmp_path: Path, webhook: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.expect_request("/hook").respond_with_data("ok")
    info, warning, critical = (
        make_alert(c, severity=s) for c, s in [("a", "info"), ("b", "warning"), ("c", "critical")]
    )
    old = make_alert("d", minutes_ago=180, severity="critical")
    values = [
        info.to_json(),
        b"\xff\x00 not json",
        warning.to_json(),
        b'{"id": "nothex", "coin": "bitcoin"}',
        old.to_json(),
        critical.to_json(),
    ]
    produce(services.kafka_bootstrap, topics["alerts"], *values)
    settings = settings_for(
        services,
        topics["alerts"],
        tmp_path,
        hook_url(webhook),
        notify_min_severity="warning",
        notify_retention=3_600_000,
        notify_console=False,
    )

    counted = Metrics()
    stats = run(settings)

    assert [b["message"].splitlines()[-1] for b in received(webhook)] == [
        f"Alert id: {warning.id}",
        f"Alert id: {critical.id}",
    ]
    assert stats.skipped == {"severity": 1, "invalid": 2, "expired": 1}
    assert counted.delta() == {
        "cw_notifier_alerts_received_total": 6,
        "cw_notifier_deliveries_total,status=ok": 2,
        "cw_notifier_skipped_total,reason=invalid": 2,
        "cw_notifier_skipped_total,reason=severity": 1,
        "cw_notifier_skipped_total,reason=expired": 1,
    }
    assert committed(services.kafka_bootstrap, settings.notify_group, topics["alerts"]) == 6
    # Match the start of the message: the start-up line names the SQLite path, which sits in a tmp
    # folder named after this test and so also contains the word "undecodable".
    undecodable = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping undecodable")]
    assert len(undecodable) == 2 and f"{topics['alerts']}[0]@1" in undecodable[0]
    assert f"{topics['alerts']}[0]@3" in undecodable[1]


@pytest.mark.services
def test_metrics_livez_and_readyz_are_served(
    services: Services, topics: dict[str, str], tmp_path: Path, webhook: HTTPServer
) -> None:
    webhook.expect_request("/hook").respond_with_data("ok")
    produce(services.kafka_bootstrap, topics["alerts"], make_alert().to_json())
    settings = settings_for(services, topics["alerts"], tmp_path, hook_url(webhook), notify_console=False, http_port=0)
    notifier = Notifier(settings, build_targets(settings))
    server = serve_endpoints(settings, notifier)
    assert server is not None
    counted = Metrics()
    worker = threading.Thread(target=notifier.run)
    worker.start()
    try:
        wait_for(lambda: len(received(webhook)) == 1)
        base = f"http://127.0.0.1:{server.port}"
        assert get(base + "/livez") == 200 and get(base + "/readyz") == 200
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            text = response.read().decode()
        for line in ("cw_notifier_alerts_received_total ", 'cw_notifier_deliveries_total{status="ok"} '):
            [value] = [float(x.split()[-1]) for x in text.splitlines() if x.startswith(line)]
            assert value >= 1
        assert counted.delta() == {"cw_notifier_alerts_received_total": 1, "cw_notifier_deliveries_total,status=ok": 1}
        for name in ("cw_notifier_duplicates_total", 'cw_notifier_skipped_total{reason="invalid"}', "cw_build_info{"):
            assert name in text
    finally:
        notifier.stop.set()
        worker.join(30)
    try:
        assert get(base + "/livez") == 503  # stopped: no longer alive
    finally:
        server.stop()
