"""A local InfluxDB 2 write endpoint that refuses what InfluxDB 2 refuses.

No InfluxDB 2 can run on the machines this project is built on, but the processor's v2 sink has to
be tested against something stricter than a mock that says yes to everything. This server
re-implements the v2 *write* contract from InfluxDB's own sources (influxdata/influxdb v2:
``http/write_handler.go``, ``http/points/points_parser.go``, ``models/points*.go``,
``kit/transport/http/error_handler.go``, ``http/tokens.go``, ``tenant/error_*.go``) and stores
every accepted batch in a real InfluxDB 1.x through ``POST /write``, so what a test writes can be
read back with InfluxQL.

Where InfluxDB 1.x and 2.x disagree, 2.x wins and the difference is bridged before forwarding:

* 2.x rejects a whole batch when one line is malformed; 1.x writes the good lines and answers 400.
  The batch is therefore parsed here in full and only forwarded when every line is valid.
* 2.x accepts unsigned integers (``1u``); 1.x does not. They are forwarded as ``1i``; values above
  the signed 64-bit range cannot be stored in 1.x and are refused with 422 (noted in the message).
* 1.x answers a field type conflict with 400 ``partial write``; 2.x answers 422
  ``unprocessable entity`` with ``failure writing points to database: partial write: ...``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast

__all__ = [
    "CONTRACT_VERSION",
    "InfluxV2ContractServer",
    "LineProtocolError",
    "ParsedLine",
    "V1BackendError",
    "WriteRecord",
    "parse_line_protocol",
]

#: The InfluxDB OSS release whose write contract (status codes, messages, headers) is reproduced.
CONTRACT_VERSION = "v2.7.11"

# --------------------------------------------------------------------------------------------
# Error codes and their statuses (kit/platform/errors, kit/transport/http/error_handler.go)
# --------------------------------------------------------------------------------------------
E_INTERNAL = "internal error"
E_NOT_IMPLEMENTED = "not implemented"
E_NOT_FOUND = "not found"
E_CONFLICT = "conflict"
E_INVALID = "invalid"
E_UNPROCESSABLE = "unprocessable entity"
E_EMPTY_VALUE = "empty value"
E_UNAVAILABLE = "unavailable"
E_FORBIDDEN = "forbidden"
E_TOO_MANY_REQUESTS = "too many requests"
E_UNAUTHORIZED = "unauthorized"
E_METHOD_NOT_ALLOWED = "method not allowed"
E_TOO_LARGE = "request too large"

_STATUS_OF_CODE: dict[str, int] = {
    E_INTERNAL: 500,
    E_NOT_IMPLEMENTED: 501,
    E_INVALID: 400,
    E_UNPROCESSABLE: 422,
    E_EMPTY_VALUE: 400,
    E_CONFLICT: 422,
    E_NOT_FOUND: 404,
    E_UNAVAILABLE: 503,
    E_FORBIDDEN: 403,
    E_TOO_MANY_REQUESTS: 429,
    E_UNAUTHORIZED: 401,
    E_METHOD_NOT_ALLOWED: 405,
    E_TOO_LARGE: 413,
}
_CODE_OF_STATUS: dict[int, str] = {
    500: E_INTERNAL,
    501: E_NOT_IMPLEMENTED,
    400: E_INVALID,
    422: E_UNPROCESSABLE,
    404: E_NOT_FOUND,
    503: E_UNAVAILABLE,
    403: E_FORBIDDEN,
    429: E_TOO_MANY_REQUESTS,
    401: E_UNAUTHORIZED,
    405: E_METHOD_NOT_ALLOWED,
    413: E_TOO_LARGE,
}

MSG_INVALID_PRECISION = "invalid precision; valid precision units are ns, us, ms, and s"
MSG_WRITING_REQUIRES_POINTS = "writing requires points"
MSG_UNAUTHORIZED = "unauthorized access"
MSG_INTERNAL = "An internal error has occurred"
MSG_EMPTY_ORG_FILTER = "Please provide either orgID or org"

_V2_PRECISIONS: dict[str, tuple[int, str]] = {
    # v2 name -> (nanoseconds per unit, InfluxDB 1.x /write name)
    "ns": (1, "n"),
    "us": (1_000, "u"),
    "ms": (1_000_000, "ms"),
    "s": (1_000_000_000, "s"),
}

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
MIN_NANO_TIME = _INT64_MIN + 2
MAX_NANO_TIME = _INT64_MAX - 1
MAX_KEY_LENGTH = 65535


# --------------------------------------------------------------------------------------------
# Line protocol: a byte-for-byte port of the InfluxDB 2 scanner (models/points.go and
# models/points_parser.go) so that the same inputs fail with the same reasons.
# --------------------------------------------------------------------------------------------
class LineProtocolError(ValueError):
    """A batch InfluxDB 2 would refuse with 400; the message is the one InfluxDB 2 sends."""


class _PointError(Exception):
    """One line's reason for failing; it becomes ``unable to parse '<line>': <reason>``."""


_SP, _COMMA, _EQ, _BS, _QUOTE, _NL, _TAB, _NUL, _HASH = (ord(c) for c in ' ,=\\"\n\t\x00#')
_MINUS, _PLUS, _DOT = ord("-"), ord("+"), ord(".")
_ZERO, _NINE = ord("0"), ord("9")
_TAG_KEY, _TAG_VALUE, _FIELDS = 0, 1, 2


@dataclass(frozen=True)
class ParsedLine:
    """One valid point: the text as sent and the text InfluxDB 1.x can store."""

    text: bytes
    v1_text: bytes
    v1_problem: str | None = None


def _at(buf: bytes, i: int) -> int:
    """Byte at ``i``, or -1 where Go would read outside the line (never equal to a delimiter)."""
    return buf[i] if 0 <= i < len(buf) else -1


def _is_numeric(b: int) -> bool:
    return _ZERO <= b <= _NINE or b == _DOT


def _skip_whitespace(buf: bytes, i: int) -> int:
    while i < len(buf) and buf[i] in (_SP, _TAB, _NUL):
        i += 1
    return i


def _scan_line(buf: bytes, i: int) -> tuple[int, bytes]:
    start, quoted, fields, equals, commas = i, False, False, 0, 0
    while i < len(buf):
        c = buf[i]
        if c == _BS:
            i += 2
            continue
        if c == _SP:
            fields = True
        if fields:
            if not quoted and c == _EQ:
                i += 1
                equals += 1
                continue
            if not quoted and c == _COMMA:
                i += 1
                commas += 1
                continue
            if c == _QUOTE and equals > commas:
                i += 1
                quoted = not quoted
                continue
        if c == _NL and not quoted:
            break
        i += 1
    return i, buf[start:i]


def _scan_to(buf: bytes, i: int, stop: int) -> tuple[int, bytes]:
    start = i
    while i < len(buf):
        if buf[i] == stop and (i == 0 or buf[i - 1] != _BS):
            break
        i += 1
    return i, buf[start:i]


def _scan_measurement(buf: bytes, i: int) -> tuple[int, int]:
    if i >= len(buf) or buf[i] == _COMMA:
        raise _PointError("missing measurement")
    while True:
        i += 1
        if i >= len(buf):
            raise _PointError("missing fields")
        if buf[i - 1] == _BS:
            continue
        if buf[i] == _COMMA:
            return _TAG_KEY, i + 1
        if buf[i] == _SP:
            return _FIELDS, i


def _scan_tags_key(buf: bytes, i: int) -> int:
    if i >= len(buf) or buf[i] in (_SP, _COMMA, _EQ):
        raise _PointError("missing tag key")
    while True:
        i += 1
        if i >= len(buf) or (buf[i] in (_SP, _COMMA) and buf[i - 1] != _BS):
            raise _PointError("missing tag value")
        if buf[i] == _EQ and buf[i - 1] != _BS:
            return i + 1


def _scan_tags_value(buf: bytes, i: int) -> tuple[int, int]:
    if i >= len(buf) or buf[i] in (_COMMA, _SP):
        raise _PointError("missing tag value")
    while True:
        i += 1
        if i >= len(buf):
            raise _PointError("missing fields")
        if buf[i] == _EQ and buf[i - 1] != _BS:
            raise _PointError("invalid tag format")
        if buf[i] == _COMMA and buf[i - 1] != _BS:
            return _TAG_KEY, i + 1
        if buf[i] == _SP and buf[i - 1] != _BS:
            return _FIELDS, i


def _scan_tags(buf: bytes, i: int) -> tuple[int, list[int]]:
    indices: list[int] = []
    state = _TAG_KEY
    while True:
        if state == _TAG_KEY:
            indices.append(i)
            i = _scan_tags_key(buf, i)
            state = _TAG_VALUE
        elif state == _TAG_VALUE:
            state, i = _scan_tags_value(buf, i)
        else:
            indices.append(i + 1)
            return i, indices


def _scan_key(buf: bytes, i: int) -> tuple[int, bytes]:
    start = _skip_whitespace(buf, i)
    state, i = _scan_measurement(buf, start)
    if state == _TAG_KEY:
        i, indices = _scan_tags(buf, i)
        keys = [_scan_to(buf[indices[j] : indices[j + 1] - 1], 0, _EQ)[1] for j in range(len(indices) - 1)]
        if len(set(keys)) != len(keys):
            raise _PointError("duplicate tags")
    return i, buf[start:i]


def _go_parse_int(text: bytes, *, unsigned: bool = False) -> int:
    """``strconv.ParseInt``/``ParseUint`` with Go's error text, which ends up in the 400 body."""
    name = "ParseUint" if unsigned else "ParseInt"
    shown = text.decode("utf-8", "replace")
    body = text[1:] if text[:1] in (b"-", b"+") and not unsigned else text
    if not body or not body.isdigit():
        raise _PointError(f'strconv.{name}: parsing "{shown}": invalid syntax')
    value = int(text)
    low, high = (0, _UINT64_MAX) if unsigned else (_INT64_MIN, _INT64_MAX)
    if not low <= value <= high:
        raise _PointError(f'strconv.{name}: parsing "{shown}": value out of range')
    return value


def _scan_number(buf: bytes, i: int) -> int:
    start, is_int, is_unsigned = i, False, False
    if i < len(buf) and buf[i] == _MINUS:
        i += 1
        if i == len(buf):
            raise _PointError("invalid number")
    decimal = scientific = False
    while i < len(buf):
        c = buf[i]
        if c in (_COMMA, _SP):
            break
        if c == ord("i") and i > start and not (is_int or is_unsigned):
            is_int = True
            i += 1
            continue
        if c == ord("u") and i > start and not (is_int or is_unsigned):
            is_unsigned = True
            i += 1
            continue
        if c == _DOT:
            if decimal:
                raise _PointError("invalid number")
            decimal = True
        if i > start and c in (ord("e"), ord("E")):
            scientific = True
            i += 1
            continue
        if c in (_PLUS, _MINUS) and buf[i - 1] in (ord("e"), ord("E")):
            i += 1
            continue
        if i + 2 < len(buf) and c in (ord("N"), ord("n")):
            raise _PointError("invalid number")
        if not _is_numeric(c):
            raise _PointError("invalid number")
        i += 1

    if (is_int or is_unsigned) and (decimal or scientific):
        raise _PointError("invalid number")
    digits = i - start - (1 if is_int else 0) - (1 if decimal else 0) - (1 if buf[start] == _MINUS else 0)
    if digits == 0:
        raise _PointError("invalid number")

    if is_int:
        if buf[i - 1] != ord("i"):
            raise _PointError("invalid number")
        text = buf[start : i - 1]
        if len(text) >= 19:
            try:
                _go_parse_int(text)
            except _PointError as exc:
                raise _PointError(f"unable to parse integer {text.decode()}: {exc}") from None
    elif is_unsigned:
        if buf[i - 1] != ord("u") or buf[start] == _MINUS:
            raise _PointError("invalid number")
        text = buf[start : i - 1]
        if len(text) >= 20:
            try:
                _go_parse_int(text, unsigned=True)
            except _PointError as exc:
                raise _PointError(f"unable to parse unsigned {text.decode()}: {exc}") from None
    else:
        text = buf[start:i]
        if scientific or len(text) >= 25:
            try:
                value = float(text)
            except ValueError:
                raise _PointError("invalid float") from None
            if value in (float("inf"), float("-inf")):
                raise _PointError("invalid float")
    return i


def _scan_boolean(buf: bytes, i: int) -> int:
    start = i
    if i < len(buf) and buf[i] not in b"tfTF":
        raise _PointError("invalid boolean")
    i += 1
    while i < len(buf) and buf[i] not in (_COMMA, _SP):
        i += 1
    word = buf[start:i]
    if len(word) == 1:
        return i
    if word[:1] in b"tT" and len(word) != 4:
        raise _PointError("invalid boolean")
    if word[:1] in b"fF" and len(word) != 5:
        raise _PointError("invalid boolean")
    if word not in (b"true", b"True", b"TRUE", b"false", b"False", b"FALSE"):
        raise _PointError("invalid boolean")
    return i


def _scan_fields(buf: bytes, i: int) -> tuple[int, bytes]:
    start = i = _skip_whitespace(buf, i)
    quoted, equals, commas = False, 0, 0
    while i < len(buf):
        c = buf[i]
        if c == _BS and i + 1 < len(buf):
            i += 2
            continue
        if c == _QUOTE and equals > commas:
            quoted = not quoted
            i += 1
            continue
        if c == _EQ and not quoted:
            equals += 1
            if _at(buf, i - 1) == _SP and _at(buf, i - 2) != _BS:
                raise _PointError("missing field key")
            if _at(buf, i - 1) == _COMMA and _at(buf, i - 2) != _BS:
                raise _PointError("missing field key")
            if i + 1 >= len(buf) or buf[i + 1] in (_COMMA, _SP):
                raise _PointError("missing field value")
            nxt = buf[i + 1]
            if _is_numeric(nxt) or nxt in (_MINUS, ord("N"), ord("n")):
                i = _scan_number(buf, i + 1)
                continue
            if nxt != _QUOTE:
                i = _scan_boolean(buf, i + 1)
                continue
        if c == _COMMA and not quoted:
            commas += 1
        if c == _SP and not quoted:
            break
        i += 1
    if quoted:
        raise _PointError("unbalanced quotes")
    if equals == 0 or commas != equals - 1:
        raise _PointError("invalid field format")
    return i, buf[start:i]


def _scan_time(buf: bytes, i: int) -> tuple[int, bytes]:
    start = i = _skip_whitespace(buf, i)
    while i < len(buf):
        c = buf[i]
        if c in (_NL, _SP):
            break
        if i == start and c == _MINUS:
            i += 1
            continue
        if not _ZERO <= c <= _NINE:
            raise _PointError("bad timestamp")
        i += 1
    return i, buf[start:i]


def _go_div(a: int, b: int) -> int:
    """Go's integer division truncates toward zero; the range in the error text depends on it."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _check_time(timestamp: int, multiplier: int) -> None:
    def out_of_range(ts: int, mult: int) -> _PointError:
        low, high = _go_div(MIN_NANO_TIME, mult), _go_div(MAX_NANO_TIME, mult)
        return _PointError(f"time {ts} is outside the range [{low}, {high}]")

    if timestamp in (0, 1) or multiplier == 1:
        nanos = timestamp * multiplier
    elif timestamp == MIN_NANO_TIME or multiplier == MAX_NANO_TIME:
        raise out_of_range(timestamp, multiplier)
    else:
        nanos = timestamp * multiplier
        if not _INT64_MIN <= nanos <= _INT64_MAX:
            raise out_of_range(timestamp, multiplier)
    if not MIN_NANO_TIME <= nanos <= MAX_NANO_TIME:
        raise out_of_range(nanos // 1_000_000_000, 1)


def _scan_field_value(buf: bytes, i: int) -> int:
    quoted = False
    while i < len(buf):
        c = buf[i]
        if c == _BS and i + 1 < len(buf) and buf[i + 1] in (_QUOTE, _BS):
            i += 2
            continue
        if c == _QUOTE:
            i += 1
            quoted = not quoted
            continue
        if c == _COMMA and not quoted:
            break
        i += 1
    return i


def _unsigned_values(fields: bytes, offset: int) -> list[tuple[int, int]]:
    """(position of the ``u`` suffix in the line, value) for every unsigned field."""
    found: list[tuple[int, int]] = []
    pos = 0
    while pos < len(fields):
        eq, key = _scan_to(fields, pos, _EQ)
        if eq > len(fields) - 2:
            raise _PointError(f"invalid value: field-key={key.decode('utf-8', 'replace')}")
        value_start = eq + 1
        value_end = _scan_field_value(fields, value_start)
        value = fields[value_start:value_end]
        if value[:1] != b'"' and value.endswith(b"u") and value[:1] not in b"tfTF":
            found.append((offset + value_end - 1, int(value[:-1])))
        pos = value_end + 1
    return found


def _parse_point(line: bytes, nanos_per_unit: int) -> ParsedLine:
    pos, key = _scan_key(line, 0)
    if not key:
        raise _PointError("missing measurement")
    if len(key) > MAX_KEY_LENGTH:
        raise _PointError(f"max key length exceeded: {len(key)} > {MAX_KEY_LENGTH}")
    fields_end, fields = _scan_fields(line, pos)
    if not fields:
        raise _PointError("missing fields")
    pos, ts = _scan_time(line, fields_end)
    if ts:
        _check_time(_go_parse_int(ts), nanos_per_unit)
        if any(b != _SP for b in line[pos:]):
            raise _PointError("point is invalid")
    fields_start = fields_end - len(fields)
    unsigned = _unsigned_values(fields, fields_start)
    if not unsigned:
        return ParsedLine(line, line)
    v1 = bytearray(line)
    problem = None
    for where, value in unsigned:
        v1[where] = ord("i")
        if value > _INT64_MAX:
            problem = (
                f"unsigned value {value} does not fit the signed 64-bit integers of the "
                "InfluxDB 1.x store behind this contract server"
            )
    return ParsedLine(line, bytes(v1), problem)


def parse_line_protocol(body: bytes, precision: str = "ns") -> list[ParsedLine]:
    """Parse a batch as InfluxDB 2 does; raise :class:`LineProtocolError` with its 400 message.

    Every failing line is reported, joined by newlines, exactly as InfluxDB 2 joins them.
    """
    if precision not in _V2_PRECISIONS:
        raise ValueError(MSG_INVALID_PRECISION)
    nanos_per_unit = _V2_PRECISIONS[precision][0]
    points: list[ParsedLine] = []
    failed: list[str] = []
    pos = 0
    while pos < len(body):
        pos, block = _scan_line(body, pos)
        pos += 1
        if not block:
            continue
        start = _skip_whitespace(block, 0)
        if start >= len(block) or block[start] == _HASH:
            continue
        if block[-1] == _NL:
            block = block[:-1]
        line = block[start:]
        try:
            points.append(_parse_point(line, nanos_per_unit))
        except _PointError as exc:
            failed.append(f"unable to parse '{line.decode('utf-8', 'replace')}': {exc}")
    if failed:
        raise LineProtocolError("\n".join(failed))
    return points


# --------------------------------------------------------------------------------------------
# InfluxDB 1.x access
# --------------------------------------------------------------------------------------------
class V1BackendError(RuntimeError):
    """The InfluxDB 1.x behind the contract server is missing or misbehaving."""


def _v1_request(
    v1_url: str, path: str, params: Mapping[str, str], data: bytes | None, timeout: float
) -> tuple[int, bytes]:
    url = f"{v1_url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _go_json(payload: Mapping[str, Any]) -> bytes:
    """JSON the way Go's ``json.Marshal`` writes it: compact and HTML-escaped."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def _make_id(*parts: str) -> str:
    """A stable 16-hex-digit, non-zero ID, the shape InfluxDB 2 gives orgs and buckets."""
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]
    return digest if int(digest, 16) else "0000000000000001"


def _id_error(text: str) -> str | None:
    """Why ``platform.IDFromString`` would refuse ``text``, or None when it is a valid ID."""
    if len(text) != 16:
        return "id must have a length of 16 bytes"
    try:
        value = int(text, 16)
    except ValueError:
        return "invalid ID"
    return None if value else "invalid ID"


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WriteRecord:
    """One ``POST /api/v2/write`` as the server saw and answered it.

    ``query`` holds the first value of each parameter (as Go reads them), ``headers`` use
    Title-Case names (``Content-Encoding``), ``body`` is the inflated body when it could be
    inflated, ``lines`` the points stored by a 204, ``injected`` marks answers from fail_next.
    """

    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    status: int
    code: str | None = None
    message: str | None = None
    lines: int = 0
    injected: bool = False


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: str | None
    body: bytes
    content_type: str


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    code: str | None = None
    message: str | None = None
    lines: int = 0
    injected: bool = False


def _error(code: str, message: str, status: int | None = None) -> _Reply:
    return _Reply(
        status=status if status is not None else _STATUS_OF_CODE.get(code, 500),
        body=_go_json({"code": code, "message": message}),
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "X-Platform-Error-Code": code,
        },
        code=code,
        message=message,
    )


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: InfluxV2ContractServer) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    @property
    def _server(self) -> _HTTPServer:
        return cast(_HTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        with self._server.connections_lock:
            self._server.connections.add(self.connection)

    def finish(self) -> None:
        with self._server.connections_lock:
            self._server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: test output should show assertions, not an access log."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, reply: _Reply, *, head_only: bool = False) -> None:
        # send_response_only: Go's net/http sends Date but no Server header.
        self.send_response_only(reply.status)
        self.send_header("Date", self.date_time_string())
        self.send_header("X-Influxdb-Build", "OSS")
        self.send_header("X-Influxdb-Version", CONTRACT_VERSION)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.status not in (204, 304):
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.body and not head_only and reply.status not in (204, 304):
            self.wfile.write(reply.body)

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        owner = self._server.owner
        headers = {name.title(): value for name, value in self.headers.items()}
        try:
            reply = owner._handle(method, self.path, headers, body)
        except Exception as exc:  # a bug here must fail the request visibly, not hang it
            owner._anomaly(f"contract server crashed on {method} {self.path}: {exc!r}")
            reply = _error(E_INTERNAL, f"a panic has occurred: {exc!r}")
        try:
            self._send(reply, head_only=method == "HEAD")
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


class InfluxV2ContractServer:
    """An InfluxDB 2 ``/api/v2/write`` endpoint on 127.0.0.1 backed by a real InfluxDB 1.x.

    Each bucket is stored in the 1.x database of the same name, created on :meth:`start`.
    Answers follow InfluxDB 2's sources: status code, ``{"code", "message"}`` body,
    ``X-Platform-Error-Code`` header and the order in which the checks run (token, precision,
    bucket parameter, gzip header, org, bucket, line protocol, storage).
    """

    def __init__(
        self,
        v1_url: str,
        org: str,
        token: str,
        buckets: Iterable[str],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        drop_buckets_on_stop: bool = False,
        max_body_bytes: int | None = None,
        v1_timeout: float = 10.0,
    ) -> None:
        self.v1_url = v1_url.rstrip("/")
        self.org = org
        self.token = token
        self.buckets: tuple[str, ...] = tuple(dict.fromkeys(buckets))
        if not org or not token or not self.buckets or any(not b for b in self.buckets):
            raise ValueError("org, token and at least one non-empty bucket name are required")
        self.host = host
        self.port = port
        self.org_id = _make_id("org", org)
        self.bucket_ids: dict[str, str] = {b: _make_id("bucket", org, b) for b in self.buckets}
        self.drop_buckets_on_stop = drop_buckets_on_stop
        self.max_body_bytes = max_body_bytes
        self.v1_timeout = v1_timeout
        self.backend_anomalies: list[str] = []
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._writes: list[WriteRecord] = []
        self._faults: deque[_Fault] = deque()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._started_at = time.time()

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """Base URL for ``InfluxDBClient(url=...)``; it stays the same across go_down/come_back."""
        return f"http://{self.host}:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._httpd is not None

    def start(self) -> Self:
        """Check the 1.x store, create the bucket databases and start listening."""
        with self._state_lock:
            if self._started:
                return self
            self._check_v1()
            for bucket in self.buckets:
                self._v1_statement(f"CREATE DATABASE {_quote_ident(bucket)}")
            self._listen()
            self._started = True
            self._started_at = time.time()
            return self

    def stop(self) -> None:
        """Stop listening, cut open connections and, if asked, drop the bucket databases."""
        with self._state_lock:
            if not self._started:
                return
            self._close()
            self._started = False
            if self.drop_buckets_on_stop:
                for bucket in self.buckets:
                    with contextlib.suppress(V1BackendError):
                        self._v1_statement(f"DROP DATABASE {_quote_ident(bucket)}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def go_down(self) -> None:
        """Close the listening socket and every open connection: clients get connection refused."""
        with self._state_lock:
            if not self._started:
                raise RuntimeError("the server was never started")
            self._close()

    def come_back(self) -> None:
        """Listen again on the same host and port after :meth:`go_down`."""
        with self._state_lock:
            if not self._started:
                raise RuntimeError("the server was never started")
            if self._httpd is None:
                self._listen()

    def _listen(self) -> None:
        try:
            httpd = _HTTPServer((self.host, self.port), self)
        except OSError as exc:
            raise RuntimeError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = int(httpd.server_address[1])
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"influx-v2-contract:{self.port}",
            daemon=True,
        )
        thread.start()
        self._httpd, self._thread = httpd, thread

    def _close(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with httpd.connections_lock:
            connections = list(httpd.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)

    # ---------------------------------------------------------------- assertions and faults
    @property
    def writes(self) -> list[WriteRecord]:
        """Every write request so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._writes)

    @property
    def accepted_lines(self) -> int:
        """Points stored in InfluxDB 1.x by requests answered 204."""
        with self._lock:
            return sum(w.lines for w in self._writes if w.status == 204)

    def clear_log(self) -> None:
        with self._lock:
            self._writes.clear()

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        retry_after: float | str | None = None,
        body: Mapping[str, Any] | str | bytes | None = None,
        content_type: str | None = None,
    ) -> None:
        """Answer the next ``count`` write requests with ``status`` instead of handling them.

        The fault is answered before any check (token included), as an overloaded server or a
        proxy in front of InfluxDB would; faults queued by successive calls are served in order.

        ``retry_after`` becomes the ``Retry-After`` header. InfluxDB documents it as a whole number
        of seconds and urllib3 (under influxdb-client) cannot read anything else, so a number with
        a fraction is refused here; a string (an HTTP date, say) is sent as it is. ``body``
        defaults to InfluxDB's JSON error for the status; a mapping is sent as JSON, text as is.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        header: str | None
        if retry_after is None or isinstance(retry_after, str):
            header = retry_after
        else:
            if retry_after < 0 or retry_after != int(retry_after):
                raise ValueError("retry_after must be a non-negative whole number of seconds")
            header = str(int(retry_after))
        code = _CODE_OF_STATUS.get(status, E_INTERNAL)
        if body is None:
            payload = _go_json({"code": code, "message": f"injected fault: HTTP {status}"})
            ctype = content_type or "application/json; charset=utf-8"
        elif isinstance(body, Mapping):
            payload = _go_json(body)
            ctype = content_type or "application/json; charset=utf-8"
        else:
            payload = body.encode() if isinstance(body, str) else body
            ctype = content_type or "text/plain; charset=utf-8"
        with self._lock:
            self._faults.append(_Fault(count, status, header, payload, ctype))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def query(self, bucket: str, influxql: str, epoch: str = "ms") -> list[dict[str, Any]]:
        """Run InfluxQL against the bucket's 1.x database; one dict per row, across all series."""
        status, raw = _v1_request(
            self.v1_url,
            "/query",
            {"db": bucket, "q": influxql, "epoch": epoch},
            None,
            self.v1_timeout,
        )
        if status != 200:
            raise V1BackendError(f"InfluxDB 1.x answered {status} to {influxql!r}: {raw!r}")
        rows: list[dict[str, Any]] = []
        for result in json.loads(raw).get("results", []):
            if "error" in result:
                raise V1BackendError(f"InfluxQL error for {influxql!r}: {result['error']}")
            for series in result.get("series", []):
                for values in series.get("values", []):
                    row = dict(zip(series["columns"], values, strict=True))
                    row.update(series.get("tags") or {})
                    row.setdefault("_measurement", series.get("name"))
                    rows.append(row)
        return rows

    # ---------------------------------------------------------------- InfluxDB 1.x
    def _check_v1(self) -> None:
        try:
            status, _ = _v1_request(self.v1_url, "/ping", {}, None, self.v1_timeout)
        except OSError as exc:
            raise V1BackendError(
                f"InfluxDB 1.x is not reachable at {self.v1_url} ({exc}); "
                "start it with `bash scripts/influxdb.sh start`"
            ) from exc
        if status != 204:
            raise V1BackendError(f"{self.v1_url}/ping answered {status}, expected 204 from InfluxDB 1.x")

    def _v1_statement(self, statement: str) -> None:
        try:
            status, raw = _v1_request(self.v1_url, "/query", {"q": statement}, b"", self.v1_timeout)
        except OSError as exc:
            raise V1BackendError(f"InfluxDB 1.x unreachable for {statement!r}: {exc}") from exc
        results = json.loads(raw).get("results", [{}]) if raw else [{}]
        if status != 200 or any("error" in r for r in results):
            raise V1BackendError(f"InfluxDB 1.x refused {statement!r}: {status} {raw!r}")

    # ---------------------------------------------------------------- request handling
    def _handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        parts = urllib.parse.urlsplit(target)
        path = parts.path
        if path == "/ping" and method in ("GET", "HEAD"):
            return _Reply(204)
        if path == "/health" and method == "GET":
            text = (
                '{"name":"influxdb", "message":"ready for queries and writes", "status":"pass", '
                f'"checks":[], "version": "{CONTRACT_VERSION}"}}\n'
            )
            return _Reply(200, text.encode(), {"Content-Type": "application/json; charset=utf-8"})
        if path == "/ready" and method == "GET":
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._started_at))
            up = f"{time.time() - self._started_at:.3f}s"
            payload = json.dumps({"status": "ready", "started": started, "up": up}, indent=4)
            return _Reply(200, payload.encode() + b"\n", {"Content-Type": "application/json; charset=utf-8"})
        if path == "/api/v2/write" and method == "POST":
            query: dict[str, str] = {}
            for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
                query.setdefault(name, value)  # Go's url.Values.Get returns the first value
            return self._write(query, headers, body)
        if path.startswith("/api/v2") and self._token_error(headers) is not None:
            return _error(E_UNAUTHORIZED, MSG_UNAUTHORIZED)
        if path == "/api/v2/write":
            return _error(E_METHOD_NOT_ALLOWED, "allow: POST")
        return _error(E_NOT_FOUND, "path not found")

    def _token_error(self, headers: Mapping[str, str]) -> str | None:
        header = headers.get("Authorization", "")
        if not header:
            return "authorization Header is missing"
        for scheme in ("Token ", "Bearer "):
            if header.startswith(scheme):
                return None if header[len(scheme) :] == self.token else "token not found"
        return "authorization Header Scheme is invalid"

    def _write(self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> _Reply:
        with self._lock:
            fault = self._faults[0] if self._faults else None
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.popleft()
        if fault is not None:
            reply = _Reply(
                fault.status,
                fault.body,
                {"Content-Type": fault.content_type},
                code=_CODE_OF_STATUS.get(fault.status, E_INTERNAL),
                message="injected fault",
                injected=True,
            )
            if fault.content_type.startswith("application/json"):
                reply.headers["X-Platform-Error-Code"] = reply.code or E_INTERNAL
            if fault.retry_after is not None:
                reply.headers["Retry-After"] = fault.retry_after
            decoded = body
        else:
            reply, decoded = self._write_checked(query, headers, body)
        record = WriteRecord(
            query=dict(query),
            headers=dict(headers),
            body=decoded,
            status=reply.status,
            code=reply.code,
            message=reply.message,
            lines=reply.lines,
            injected=reply.injected,
        )
        with self._lock:
            self._writes.append(record)
        return reply

    def _write_checked(self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> tuple[_Reply, bytes]:
        # 1. authentication middleware (http/authentication_middleware.go, http/tokens.go)
        if self._token_error(headers) is not None:
            return _error(E_UNAUTHORIZED, MSG_UNAUTHORIZED), body
        # 2. decodeWriteRequest: precision, then bucket presence, then the gzip header
        precision = query.get("precision") or "ns"
        if precision not in _V2_PRECISIONS:
            return _error(E_INVALID, MSG_INVALID_PRECISION), body
        bucket_param = query.get("bucket", "")
        if not bucket_param:
            return _error(E_NOT_FOUND, "bucket not found"), body
        encoding = headers.get("Content-Encoding", "")
        gzipped = encoding in ("gzip", "x-gzip")
        if gzipped and body[:3] != b"\x1f\x8b\x08":
            # gzip.NewReader's error is a plain Go error, which the error handler hides as a 500.
            return _error(E_INTERNAL, MSG_INTERNAL), body
        # 3. queryOrganization (http/requests.go, tenant/service_org.go)
        org_error = self._find_org(query)
        if org_error is not None:
            return org_error, body
        # 4. findBucket: by ID first, then by name (tenant/error_bucket.go)
        bucket = self._find_bucket(bucket_param)
        if bucket is None:
            return _error(E_NOT_FOUND, f'bucket "{bucket_param}" not found'), body
        # 5. read (and inflate) the body, then parse it (http/points/points_parser.go)
        if gzipped:
            try:
                data = gzip.decompress(body)
            except EOFError:
                return _error(E_INTERNAL, "unable to read data: unexpected EOF"), body
            except zlib.error:
                return _error(E_INTERNAL, "unable to read data: flate: corrupt input"), body
            except OSError as exc:
                # Go's gzip.ErrChecksum / ErrHeader are the two read errors mapped to 400.
                broken = "checksum" if ("CRC" in str(exc) or "length" in str(exc)) else "header"
                return _error(E_INVALID, f"unable to read data: gzip: invalid {broken}"), body
        else:
            data = body
        if self.max_body_bytes is not None and len(data) > self.max_body_bytes:
            return _error(E_TOO_LARGE, "unable to read data: points batch is too large"), data
        if not data:
            return _error(E_INVALID, MSG_WRITING_REQUIRES_POINTS), data
        try:
            points = parse_line_protocol(data, precision)
        except LineProtocolError as exc:
            return _error(E_INVALID, str(exc)), data
        # 6. storage
        return self._store(bucket, precision, points), data

    def _find_org(self, query: Mapping[str, str]) -> _Reply | None:
        by_id: str | None = None
        by_name: str | None = None
        org_param = query.get("org", "")
        if org_param:
            if _id_error(org_param) is None:
                by_id = org_param
            else:
                by_name = org_param
        org_id_param = query.get("orgID", "")
        if org_id_param:
            problem = _id_error(org_id_param)
            if problem is not None:
                return _error(E_INVALID, problem)
            by_id = org_id_param
        if by_id is not None:
            return None if by_id == self.org_id else _error(E_NOT_FOUND, "organization not found")
        if by_name is None:
            return _error(E_INVALID, MSG_EMPTY_ORG_FILTER)
        if by_name.strip() != self.org:
            return _error(E_NOT_FOUND, f'organization name "{by_name}" not found')
        return None

    def _find_bucket(self, param: str) -> str | None:
        if _id_error(param) is None:
            for name, bucket_id in self.bucket_ids.items():
                if bucket_id == param:
                    return name
        return param if param in self.bucket_ids else None

    def _store(self, bucket: str, precision: str, points: list[ParsedLine]) -> _Reply:
        problems = [p.v1_problem for p in points if p.v1_problem]
        if problems:
            return _error(E_UNPROCESSABLE, f"failure writing points to database: {problems[0]}")
        payload = b"\n".join(p.v1_text for p in points)
        params = {"db": bucket, "precision": _V2_PRECISIONS[precision][1]}
        try:
            status, raw = _v1_request(self.v1_url, "/write", params, payload, self.v1_timeout)
        except OSError as exc:
            self._anomaly(f"InfluxDB 1.x unreachable while writing to {bucket}: {exc}")
            return _error(E_INTERNAL, f"unexpected error writing points to database: {exc}")
        if status == 204:
            return _Reply(204, lines=len(points))
        try:
            v1_message = str(json.loads(raw).get("error", raw.decode("utf-8", "replace")))
        except ValueError:
            v1_message = raw.decode("utf-8", "replace")
        if status == 400 and v1_message.startswith("partial write"):
            return _error(E_UNPROCESSABLE, f"failure writing points to database: {v1_message}")
        self._anomaly(f"InfluxDB 1.x answered {status} to a batch v2 accepts: {v1_message}")
        return _error(
            E_INTERNAL,
            f"unexpected error writing points to database: InfluxDB 1.x {status}: {v1_message}",
        )

    def _anomaly(self, text: str) -> None:
        with self._lock:
            self.backend_anomalies.append(text)
