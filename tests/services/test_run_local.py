"""scripts/run-local.sh, the README's first command: one Ctrl-C stops it in order, within seconds,
leaving nothing behind.

A terminal's Ctrl-C is SIGINT to the foreground process group, so the test starts the script in a
process group of its own and signals that group. The script starts its own Kafka and InfluxDB on
free ports with a cache folder of the test's (never the shared services on 9092/8086), runs the
simulated market until the processor has written prices, then gets the SIGINT. Every process it
started carries that cache folder in its environment, which is how leftovers are found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.support.net import free_ports
from tests.support.paths import ROOT as REPO

STARTUP_S = 240.0
STOP_LIMIT_S = 45.0
"""A Ctrl-C must end everything within this: producer flush, processor commit, Kafka's shutdown."""


def started_by(marker: bytes) -> dict[int, str]:
    """pid -> command line of every live process whose environment holds ``marker``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
    return {pid: cmd for pid, cmd in found.items() if cmd}  # a zombie has no command line


@dataclass
class Watch:
    """When each watched pid disappeared, polled every 20 ms from a thread."""

    pids: dict[str, int]
    gone: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set() and len(self.gone) < len(self.pids):
            for name, pid in self.pids.items():
                if name not in self.gone and not alive(pid):
                    self.gone[name] = time.monotonic()
            time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def influx_count(port: int) -> int:
    """Prices in the InfluxDB 2 bucket run-local writes (scripts/influxdb2.sh's org, bucket, token)."""
    try:
        response = requests.get(
            f"http://127.0.0.1:{port}/query",
            params={"db": "crypto", "q": "SELECT count(price) FROM price"},
            headers={"Authorization": "Token cw-test-token"},
            timeout=5,
        )
        series = response.json()["results"][0].get("series", [])
        return int(series[0]["values"][0][1]) if series else 0
    except (requests.RequestException, ValueError, KeyError, IndexError):
        return 0


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    cache: Path
    output: Path
    env: dict[str, str]
    influx_port: int


@pytest.fixture
def run_local(tmp_path: Path) -> Iterator[Run]:
    jars = Path(os.environ.get("CW_CACHE_DIR", REPO / ".cache")) / "kafka" / "libs"
    if not (jars / ".pom.sha").is_file():
        pytest.fail(f"no Kafka jars in {jars}: run `bash scripts/setup.sh` (or scripts/test.sh) first", pytrace=False)
    cache = tmp_path / "cache"
    (cache / "kafka").mkdir(parents=True)
    (cache / "kafka" / "libs").symlink_to(jars)  # the same jars, fetched once; everything else is new
    kafka, controller, influx, influx_rpc, influx2 = free_ports(5)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CW_", "KAFKA_", "INFLUX"))}
    env.update(
        CW_CACHE_DIR=str(cache),
        KAFKA_PORT=str(kafka),
        KAFKA_CONTROLLER_PORT=str(controller),
        KAFKA_HEAP="256m",
        INFLUX_PORT=str(influx),
        INFLUX_RPC_PORT=str(influx_rpc),
        INFLUX2_PORT=str(influx2),
        CW_HTTP_PORT="-1",  # the services' own ports may be in use by others on this machine
        CW_POLL_INTERVAL="1s",
    )
    for key in ("CW_TOOLS_CACHE", "CW_TOOLS_DIR"):
        if key in os.environ:
            env[key] = os.environ[key]
    output = tmp_path / "run-local.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "scripts/run-local.sh", "--no-setup"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    run = Run(proc, cache, output, env, influx2)
    try:
        yield run
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in started_by(f"CW_CACHE_DIR={cache}".encode()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # only what this test started: its cache folder is unique


def test_one_ctrl_c_stops_producer_processor_notifier_then_services_within_seconds(run_local: Run) -> None:
    proc, cache = run_local.proc, run_local.cache
    marker = f"CW_CACHE_DIR={cache}".encode()
    deadline = time.monotonic() + STARTUP_S
    while influx_count(run_local.influx_port) < 6:  # the processor has written prices: all is flowing
        assert proc.poll() is None, f"run-local.sh exited {proc.returncode}:\n{run_local.output.read_text()}"
        assert time.monotonic() < deadline, f"no prices in InfluxDB after {STARTUP_S}s:\n{run_local.output.read_text()}"
        time.sleep(1)

    parts = started_by(marker)
    pids: dict[str, int] = {}
    for name in ("producer", "processor", "notifier"):
        (pid,) = [p for p, cmd in parts.items() if f"bin/crypto-{name}" in cmd]
        pids[name] = pid
    for name, pidfile in (
        ("kafka", cache / "kafka" / "kafka.pid"),
        ("influxdb", cache / "influxdb" / "influxd.pid"),
        ("influxdb2", cache / "influxdb2" / "influxd.pid"),
    ):
        pids[name] = int(pidfile.read_text())
        assert pids[name] in parts, f"{name} was not started by this run"
    watch = Watch(pids)
    watcher = threading.Thread(target=watch.run, daemon=True)
    watcher.start()

    signalled = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what one Ctrl-C in its terminal does
    try:
        proc.wait(timeout=STOP_LIMIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"run-local.sh still running {STOP_LIMIT_S}s after one Ctrl-C; left: {started_by(marker)}\n"
            + run_local.output.read_text()
        )
    took = time.monotonic() - signalled
    watch.stop.set()
    watcher.join(5)
    text = run_local.output.read_text()

    assert proc.returncode == 130, text  # ended by the Ctrl-C, after its clean-up
    left = started_by(marker)
    assert not left, f"left running after run-local.sh exited: {left}"
    assert set(watch.gone) == set(pids), (watch.gone, text)
    order = sorted(watch.gone, key=watch.gone.__getitem__)
    assert order[:3] == ["producer", "processor", "notifier"], (order, text)
    assert set(order[3:]) == {"kafka", "influxdb", "influxdb2"}, order
    # Each stopped cleanly: the producer flushed, and the processor's last write reached InfluxDB.
    assert "flushing" in text and "stopped:" in text, text
    processor_log = (cache / "logs" / "processor.log").read_text()
    for bad in ("Connection refused", "deferred", "Traceback"):
        assert bad not in processor_log, processor_log[-3000:]
    assert took < STOP_LIMIT_S
