"""The InfluxDB sink: Quix ``BatchingSink`` over a writer for the v1 or the v2 API.

Quix calls ``write`` at each checkpoint, before it commits offsets. A write InfluxDB could not take
*now* (connection refused, timeout, 429, 5xx) raises ``SinkBackpressureError``: Quix pauses the
partitions, discards the batch and the uncommitted state, and re-reads from the last commit, so
nothing is lost. Writes are idempotent (docs/contracts.md), so re-reading duplicates nothing.
A write InfluxDB refuses on its merits (400 malformed, 413 too large, 422 e.g. a field type
conflict) is split in halves until the refused lines stand alone: every other point is written and
each refused line goes to the dead-letter topic with InfluxDB's reason (``InfluxSink``). Bad
credentials or names (401/403/404) stop the processor with a clear message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol, cast

import requests
from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch
from quixstreams.sinks.base.item import SinkItem

from crypto_watcher.config import InfluxApi, InfluxSettings
from crypto_watcher.retry import Backoff, parse_retry_after
from crypto_watcher.times import ms_to_s
from processor import metrics
from processor.dlq import DeadLetterError, RejectedPoint

log = logging.getLogger(__name__)

MAX_LINES_PER_REQUEST = 5000
MAX_BACKOFF_S = 10.0  # a paused sink checks again at least this often: recovery is prompt


class TransientWriteError(Exception):
    """InfluxDB cannot take the write now; the same write may succeed later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RejectedWriteError(Exception):
    """InfluxDB refused the points themselves; retrying the same points cannot succeed.

    ``reason`` is InfluxDB's own message, kept whole for the dead-letter record."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class InfluxAuthError(RuntimeError):
    """Credentials, permissions or names (org, bucket) are wrong: a problem a person must fix.

    Raised out of the sink so the processor stops with the message instead of skipping data."""


class LineWriter(Protocol):
    description: str

    def check(self) -> None: ...
    def ping(self) -> bool: ...
    def write(self, lines: Sequence[str]) -> None: ...
    def close(self) -> None: ...


def _classify(status: int, text: str, retry_after: str | None, what: str) -> Exception:
    reason = text.strip()
    try:  # both APIs answer errors as JSON: v2 {"code", "message"}, v1 {"error"}
        body = json.loads(text)
        if isinstance(body, dict):
            reason = str(body.get("message") or body.get("error") or reason)
    except ValueError:
        pass
    detail = reason.replace("\n", " ")[:300]
    if status in (401, 403):
        return InfluxAuthError(f"{what}: HTTP {status}: {detail} (check the InfluxDB token/credentials)")
    if status == 404:
        return InfluxAuthError(f"{what}: HTTP {status}: {detail} (check the org, bucket or database name)")
    if status == 429 or status >= 500 or status == 408:
        return TransientWriteError(f"{what}: HTTP {status}: {detail}", parse_retry_after(retry_after))
    return RejectedWriteError(f"{what}: HTTP {status}: {detail}", reason)


class V1Writer:
    """InfluxDB 1.x ``/write`` (tested on 1.6; 1.8+ and 2.x with DBRP mappings serve it too)."""

    def __init__(
        self, url: str, database: str, username: str | None = None, password: str | None = None, timeout_s: float = 10.0
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.timeout_s = timeout_s
        self.session = requests.Session()
        if username:
            self.session.auth = (username, password or "")
        self.description = f"InfluxDB v1 API at {self.url}, database {database!r}"

    def check(self) -> None:
        """Create the database when we may (idempotent in InfluxDB); a read-only user just writes."""
        try:
            response = self.session.post(
                f"{self.url}/query", params={"q": f'CREATE DATABASE "{self.database}"'}, timeout=self.timeout_s
            )
        except requests.RequestException as exc:
            log.warning("%s not reachable at start-up (%s); writes will wait for it", self.description, exc)
            return
        if response.status_code in (401, 403):
            raise _classify(response.status_code, response.text, None, self.description)

    def ping(self) -> bool:
        return self.session.get(f"{self.url}/ping", timeout=3).status_code == 204

    def write(self, lines: Sequence[str]) -> None:
        try:
            response = self.session.post(
                f"{self.url}/write",
                params={"db": self.database, "precision": "ms"},
                data="\n".join(lines).encode(),
                timeout=self.timeout_s,
            )
        except requests.RequestException as exc:
            raise TransientWriteError(f"{self.description}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code == 204:
            return
        if response.status_code == 404 and "database not found" in response.text:
            self.check()
            raise TransientWriteError(f"{self.description}: database was missing; created it", 0.5)
        raise _classify(response.status_code, response.text, response.headers.get("Retry-After"), self.description)

    def close(self) -> None:
        self.session.close()


class V2Writer:
    """InfluxDB 2.x through influxdb-client, synchronous so the checkpoint knows the outcome."""

    def __init__(self, url: str, token: str, org: str, bucket: str, timeout_s: float = 10.0) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.bucket = bucket
        self.org = org
        self.client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000))
        self.api = self.client.write_api(write_options=SYNCHRONOUS)
        self.description = f"InfluxDB v2 API at {url}, org {org!r}, bucket {bucket!r}"

    def ping(self) -> bool:
        return bool(self.client.ping())

    def check(self) -> None:
        pass  # The bucket is provisioned with the server (compose/Helm); a write reports what is wrong.

    def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self.api.write(
                bucket=self.bucket,
                org=self.org,
                record=list(lines),
                write_precision=cast(WritePrecision, WritePrecision.MS),
            )
        except ApiException as exc:
            headers: Any = exc.headers or {}
            raise _classify(
                int(exc.status or 0), str(exc.body or exc.reason), headers.get("Retry-After"), self.description
            ) from exc
        except (HTTPError, OSError) as exc:
            raise TransientWriteError(f"{self.description}: {exc.__class__.__name__}: {exc}") from exc

    def close(self) -> None:
        self.client.close()


def make_writer(settings: InfluxSettings) -> LineWriter:
    timeout_s = ms_to_s(settings.influx_timeout)
    if settings.influx_api is InfluxApi.V2:
        missing = [
            name
            for name, value in (("CW_INFLUX_TOKEN", settings.influx_token), ("CW_INFLUX_ORG", settings.influx_org))
            if not value
        ]
        if missing:
            raise ValueError(f"CW_INFLUX_API=v2 needs {' and '.join(missing)}")
        assert settings.influx_token and settings.influx_org
        return V2Writer(
            settings.influx_url, settings.influx_token, settings.influx_org, settings.influx_bucket, timeout_s
        )
    return V1Writer(
        settings.influx_url, settings.influx_db, settings.influx_username, settings.influx_password, timeout_s
    )


class RejectedPoints(Protocol):
    """Where refused points go: ``processor.dlq.DeadLetters`` (raises DeadLetterError if it cannot)."""

    def on_rejected_points(self, points: Sequence[RejectedPoint]) -> None: ...


class InfluxSink(BatchingSink):
    """Items are line-protocol strings (or lists of them) made by ``processor.points``.

    Up to ``MAX_LINES_PER_REQUEST`` lines go in one request. A request InfluxDB refuses is split in
    halves, and refused halves again, until each refused line stands alone: one bad line among
    5,000 costs at most 1 + 2·⌈log2 5,000⌉ = 27 requests, instead of 5,000 points lost. Halves InfluxDB
    already took in part (a 422 writes the other lines) are simply written again: a point's identity
    is its series and time, so that changes nothing. The refused lines go to ``dead_letters`` (or,
    without one, to the log) before the checkpoint commits, so no point vanishes without a copy.
    """

    def __init__(self, writer: LineWriter, dead_letters: RejectedPoints | None = None) -> None:
        super().__init__()
        self.writer = writer
        self.dead_letters = dead_letters
        self.points_written = 0
        self.rejected_writes = 0  # requests InfluxDB refused (bisection included)
        self.rejected_points = 0
        self.backpressure_events = 0
        self._backoff = Backoff(base_s=1.0, max_s=MAX_BACKOFF_S)

    def setup(self) -> None:
        self.writer.check()

    def write(self, batch: SinkBatch) -> None:
        lines: list[str] = []
        for item in batch:
            if isinstance(item.value, list):
                lines.extend(line for line in item.value if line)
            elif item.value:
                lines.append(item.value)
        for start in range(0, len(lines), MAX_LINES_PER_REQUEST):
            chunk = lines[start : start + MAX_LINES_PER_REQUEST]
            try:
                refused = self._write_isolating(chunk)
                if refused:
                    self._dead_letter(batch, refused)
            except (TransientWriteError, DeadLetterError) as exc:
                self.backpressure_events += 1
                metrics.SINK_ERRORS.labels("backpressure").inc()
                retry_after = exc.retry_after if isinstance(exc, TransientWriteError) else None
                delay = self._backoff.next_delay(retry_after)
                log.warning(
                    "InfluxDB write deferred (%s); pausing %.1fs, batch of %d points will be re-read",
                    exc,
                    delay,
                    len(lines),
                )
                raise SinkBackpressureError(retry_after=delay) from exc
            self.points_written += len(chunk) - len(refused)
            metrics.SINK_POINTS.inc(len(chunk) - len(refused))
        self._backoff.reset()

    def _write_isolating(self, lines: Sequence[str]) -> list[tuple[str, str]]:
        """Write ``lines``; return those InfluxDB refuses, each with its reason (bisecting to find them)."""
        began = time.perf_counter()
        try:
            self.writer.write(lines)
        except RejectedWriteError as exc:
            self.rejected_writes += 1
            metrics.SINK_ERRORS.labels("rejected").inc()
            if len(lines) == 1:
                return [(lines[0], exc.reason)]
            half = len(lines) // 2
            return self._write_isolating(lines[:half]) + self._write_isolating(lines[half:])
        metrics.SINK_SECONDS.observe(time.perf_counter() - began)
        return []

    def _dead_letter(self, batch: SinkBatch, refused: list[tuple[str, str]]) -> None:
        """Hand the refused lines over, each with the record it came from (a rare path: one scan)."""
        wanted = {line for line, _ in refused}
        origin: dict[str, SinkItem] = {}
        for item in batch:
            for line in item.value if isinstance(item.value, list) else [item.value]:
                if line in wanted:
                    origin.setdefault(line, item)
        points = [
            RejectedPoint(line, reason, batch.topic, batch.partition, origin[line].offset, _key_bytes(origin[line].key))
            for line, reason in refused
        ]
        log.warning("InfluxDB refused %d point(s) of a checkpoint; the others are written", len(points))
        if self.dead_letters is not None:
            self.dead_letters.on_rejected_points(points)
        else:
            for point in points:
                log.error("InfluxDB refused a point, skipped: %s; line: %s", point.reason, point.line[:300])
        self.rejected_points += len(points)
        metrics.SINK_REJECTED.inc(len(points))


def _key_bytes(key: Any) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    return str(key).encode()
