"""Faults a test can cause on the real services: a loaded machine, a broker that crashes mid-run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
LOCAL_BROKER = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
"""The broker scripts/kafka.sh starts and kills (``KAFKA_PORT`` moves it, e.g. for a private test run)."""


@contextmanager
def busy_cores(count: int | None = None, seconds: float = 600.0) -> Iterator[None]:
    """Keep ``count`` cores (default: all) busy for the block: timing bugs show up under load.

    Each spinner ends by itself after ``seconds`` even if the test process dies.
    """
    count = count or os.cpu_count() or 2
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
    spinners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
        for p in spinners:
            p.wait()


def kafka_script(action: str, timeout: float = 180.0) -> None:
    """Run scripts/kafka.sh ACTION against the local broker; raise with its output if it fails."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts/kafka.sh"), action], timeout=timeout, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/kafka.sh {action} failed ({done.returncode}): {done.stderr[-2000:]}")


def topic_size(bootstrap: str, topic: str) -> int:
    """Records in ``topic`` (sum of high watermarks); 0 while it does not exist yet."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "cw-test-size", "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions)
    finally:
        consumer.close()


class BrokerCrash(threading.Thread):
    """SIGKILLs the local broker once ``topic`` holds ``after`` records, and restarts it ``down_s`` later.

    Call ``check()`` after the run: it raises what went wrong in the thread (e.g. the broker never
    reached the threshold, or did not come back).
    """

    def __init__(self, bootstrap: str, topic: str, after: int, down_s: float = 3.0, deadline_s: float = 300.0) -> None:
        super().__init__(name="broker-crash", daemon=True)
        if not bootstrap.startswith(LOCAL_BROKER):
            raise RuntimeError(f"broker crash tests drive the local broker of scripts/kafka.sh ({LOCAL_BROKER})")
        self.bootstrap, self.topic, self.after, self.down_s, self.deadline_s = (
            bootstrap,
            topic,
            after,
            down_s,
            deadline_s,
        )
        self.killed_at: int | None = None
        self.restarted = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + self.deadline_s
            while time.monotonic() < deadline:
                try:
                    size = topic_size(self.bootstrap, self.topic)
                except KafkaException:
                    size = 0  # a topic being created answers "not leader" for a moment

                if size >= self.after:
                    self.killed_at = size
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"{self.topic} never reached {self.after} records")
            kafka_script("kill")
            time.sleep(self.down_s)
        except BaseException as exc:
            self.error = exc
        finally:
            try:
                kafka_script("start")
                self.restarted = True
            except BaseException as exc:
                self.error = self.error or exc

    def check(self) -> None:
        self.join(timeout=300)
        if self.error is not None:
            raise AssertionError(f"broker crash did not go as planned: {self.error}") from self.error
        assert self.killed_at is not None and self.restarted
