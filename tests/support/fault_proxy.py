"""A thin fault-injecting HTTP proxy in front of a real server (the tests' InfluxDB 2), on loopback.

A real InfluxDB answers 429 or 503 only when it is really overloaded, and it cannot be made to
vanish and come back mid-test without losing its other users. This proxy forwards every request,
byte for byte, to the real server, and on demand answers the next N requests itself (a status,
headers such as ``Retry-After``, a body), or refuses connections altogether (its listening socket
closed, open connections cut) until told to accept them again on the same port. It keeps no
knowledge of InfluxDB: whatever is not an injected fault is the real server's answer.

Every exchange is logged (method, path, query, request body, status, injected or not), so a test
can count the requests a client really made.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import socket
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

# Headers that belong to one connection, not to the message (RFC 9110 section 7.6.1).
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


@dataclass
class _Fault:
    remaining: int
    status: int
    headers: dict[str, str]
    body: bytes
    path: str | None


@dataclass(frozen=True)
class Exchange:
    """One request the proxy answered, and how."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes
    status: int
    injected: bool
    at: float  # time.monotonic() when answered


@dataclass
class _State:
    faults: deque[_Fault] = field(default_factory=deque)
    log: list[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a connection cut by refuse_connections() is expected, not worth a traceback


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as InfluxDB clients expect
    server: _Server

    def do_GET(self) -> None:
        self._exchange()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _exchange(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        target = urllib.parse.urlsplit(self.path)
        fault = proxy._take_fault(target.path)
        if fault is not None:
            status, headers, payload = fault.status, dict(fault.headers), fault.body
        else:
            status, headers, payload = proxy._forward(self.command, self.path, dict(self.headers.items()), body)
        proxy._record(
            Exchange(
                self.command,
                target.path,
                dict(urllib.parse.parse_qsl(target.query, keep_blank_values=True)),
                body,
                status,
                fault is not None,
                time.monotonic(),
            )
        )
        self.send_response_only(status)
        for name, value in headers.items():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class FaultProxy:
    """Forwards to ``upstream`` (a loopback URL); ``fail_next`` and ``refuse_connections`` inject faults."""

    def __init__(self, upstream: str, timeout_s: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        if not _is_loopback(parts.hostname):
            raise ValueError(f"the fault proxy only forwards to loopback, not {parts.hostname!r}")
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.timeout_s = timeout_s
        self.port = 0
        self._state = _State()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._httpd is not None

    def start(self) -> FaultProxy:
        httpd = _Server(("127.0.0.1", self.port), self)  # port 0 first, then the same port again
        self.port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fault-proxy:{self.port}", daemon=True
        )
        self._httpd = httpd
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()  # new connections are refused from here on
        with httpd.connections_lock:
            open_connections = list(httpd.connections)
        for conn in open_connections:  # and kept-alive ones are cut, as a dying server's would be
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ faults
    def refuse_connections(self) -> None:
        """Behave like a server that is down: connections are refused until ``accept_connections``."""
        self.stop()

    def accept_connections(self) -> None:
        """Listen again, on the same port."""
        if not self.is_up:
            self.start()

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        headers: dict[str, str] | None = None,
        body: bytes | str | dict[str, Any] | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests (to ``path``, if given) with ``status`` instead of forwarding.

        Faults queued by successive calls are served in order. ``body`` defaults to InfluxDB's JSON
        error shape ({"code", "message"}); a dict is sent as JSON, text and bytes as they are.
        """
        if count < 1 or not 400 <= status <= 599:
            raise ValueError("count must be >= 1 and status an HTTP error status (400-599)")
        if body is None:
            body = {"code": "injected", "message": f"injected by the fault proxy: HTTP {status}"}
        payload = json.dumps(body).encode() if isinstance(body, dict) else body
        payload = payload.encode() if isinstance(payload, str) else payload
        all_headers = {"Content-Type": "application/json; charset=utf-8" if isinstance(body, dict) else "text/plain"}
        all_headers.update(headers or {})
        with self._state.lock:
            self._state.faults.append(_Fault(count, status, all_headers, payload, path))

    @property
    def exchanges(self) -> list[Exchange]:
        """Every request answered so far, in order (a copy)."""
        with self._state.lock:
            return list(self._state.log)

    def clear_log(self) -> None:
        with self._state.lock:
            self._state.log.clear()

    # ------------------------------------------------------------------ used by the handler
    def _take_fault(self, path: str) -> _Fault | None:
        with self._state.lock:
            faults = self._state.faults
            if not faults or (faults[0].path is not None and faults[0].path != path):
                return None
            fault = faults[0]
            fault.remaining -= 1
            if fault.remaining == 0:
                faults.popleft()
            return fault

    def _record(self, exchange: Exchange) -> None:
        with self._state.lock:
            self._state.log.append(exchange)

    def _forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """The real server's answer; 502 if it cannot be reached (what a real reverse proxy says)."""
        sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
        if body or method in ("POST", "PUT", "PATCH"):
            sent["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=self.timeout_s)
        try:
            conn.request(method, target, body=body or None, headers=sent)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        except OSError as exc:
            message = {"code": "bad gateway", "message": f"fault proxy: upstream unreachable: {exc}"}
            return 502, {"Content-Type": "application/json"}, json.dumps(message).encode()
        finally:
            conn.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
