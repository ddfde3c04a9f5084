"""``/metrics``, ``/livez`` and ``/readyz`` on plain HTTP for every service (docs/contracts.md).

A standard-library threading server, so the probes answer even while the main loop waits out a
retry backoff. Liveness means "the main loop turned recently" (a stuck loop gets restarted);
readiness means "the dependencies answer" (traffic and alerts wait while Kafka or InfluxDB is away).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Info, generate_latest

from crypto_watcher import __version__
from crypto_watcher.kafka import admin_client

log = logging.getLogger(__name__)


class Heartbeat:
    """Liveness, the one way every service judges it: the main loop beats at every turn and says
    when it will turn next (its poll interval, a backoff); silence longer than that plus
    ``slack_s`` means stuck, and a stuck loop gets restarted."""

    def __init__(self, slack_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.slack_s = slack_s
        self._clock = clock
        self._last = clock()
        self._expect = 0.0

    def beat(self, next_within_s: float = 0.0) -> None:
        self._last = self._clock()
        self._expect = max(0.0, next_within_s)

    def silent_for(self) -> float:
        """Seconds since the last beat."""
        return self._clock() - self._last

    def alive(self) -> bool:
        return self.silent_for() <= self._expect + self.slack_s


class CachedCheck:
    """A readiness check that may take seconds (a Kafka round trip), run at most every ``ttl_s``.

    Probes arrive every few seconds from Kubernetes and Prometheus alike; the answer can be stale
    by ``ttl_s`` without harm, and a slow dependency never piles up probe threads.
    """

    def __init__(self, check: Callable[[], bool], ttl_s: float = 5.0) -> None:
        self._check = check
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._value = False

    def __call__(self) -> bool:
        with self._lock:
            if time.monotonic() - self._at >= self._ttl_s:
                try:
                    self._value = bool(self._check())
                except Exception:
                    log.debug("readiness check failed", exc_info=True)
                    self._value = False
                self._at = time.monotonic()
            return self._value


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        live: Callable[[], bool],
        ready: Callable[[], bool],
    ) -> None:
        handler = _handler(registry, live, ready)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(
    registry: CollectorRegistry, live: Callable[[], bool], ready: Callable[[], bool]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/livez", "/readyz"):
                ok = live() if path == "/livez" else ready()
                self._send(200 if ok else 503, b"ok\n" if ok else b"unavailable\n", "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


BUILD_INFO = Info("cw_build", "Crypto Watcher build")
BUILD_INFO.info({"version": __version__})


def kafka_reachable(bootstrap: str, timeout_s: float = 3.0) -> Callable[[], bool]:
    """A check that the Kafka cluster answers a metadata request."""
    admin = admin_client(bootstrap)

    def check() -> bool:
        admin.list_topics(timeout=timeout_s)
        return True

    return check


def serve(
    host: str,
    port: int,
    live: Callable[[], bool],
    ready: Callable[[], bool],
    registry: CollectorRegistry = REGISTRY,
) -> HealthServer | None:
    """Start the endpoints; a negative port disables them, 0 picks a free one (tests)."""
    if port < 0:
        return None
    server = HealthServer(host, port, registry, live, ready).start()
    log.info("health and metrics on http://%s:%d (/metrics, /livez, /readyz)", host, server.port)
    return server
