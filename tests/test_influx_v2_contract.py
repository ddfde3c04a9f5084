"""The InfluxDB 2 write contract, driven through the real influxdb-client against the contract
server, with every accepted point read back from the real InfluxDB 1.x.

These tests keep the contract server honest: if it ever accepted what InfluxDB 2 refuses (or
refused what it accepts), the processor's v2 sink tests built on it would prove nothing.
Expected codes and messages come from InfluxDB 2's sources (see tests/support/influx_v2.py).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError

from tests.support.influx_v2 import (
    InfluxV2ContractServer,
    LineProtocolError,
    V1BackendError,
    parse_line_protocol,
)

V1_URL = os.environ.get("CW_TEST_INFLUX_URL", "http://127.0.0.1:8086").rstrip("/")
ORG = "crypto-watcher"
TOKEN = "cw-contract-token"
T0 = 1_700_000_000_123  # a millisecond timestamp with a non-zero millisecond part

services = pytest.mark.services


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def v1_url() -> str:
    """InfluxDB 1.x must be there: a missing store is a broken setup, never a reason to skip."""
    try:
        with urllib.request.urlopen(f"{V1_URL}/ping", timeout=3) as response:
            status = response.status
    except OSError as exc:
        pytest.fail(
            f"InfluxDB 1.x is not reachable at {V1_URL} ({exc}). The v2 contract tests store "
            "their data there: start it with `bash scripts/influxdb.sh start` "
            "(or run everything with `bash scripts/test.sh`).",
            pytrace=False,
        )
    if status != 204:
        pytest.fail(f"{V1_URL}/ping answered {status}; expected InfluxDB 1.x (204)", pytrace=False)
    return V1_URL


@pytest.fixture
def server(v1_url: str) -> Iterator[InfluxV2ContractServer]:
    name = f"cw_v2c_{uuid.uuid4().hex[:10]}"
    with InfluxV2ContractServer(v1_url, ORG, TOKEN, [name, f"{name}_other"], drop_buckets_on_stop=True) as srv:
        yield srv
    assert srv.backend_anomalies == [], "InfluxDB 1.x refused what the v2 rules accepted"


@pytest.fixture
def bucket(server: InfluxV2ContractServer) -> str:
    return server.buckets[0]


@pytest.fixture
def client(server: InfluxV2ContractServer) -> Iterator[InfluxDBClient]:
    with InfluxDBClient(url=server.url, token=TOKEN, org=ORG, timeout=10_000) as c:
        yield c


# ------------------------------------------------------------------------------------- helpers
def write(
    client: InfluxDBClient,
    bucket: str,
    lines: list[str] | str,
    precision: Any = WritePrecision.MS,
    **kwargs: Any,
) -> None:
    api = client.write_api(write_options=SYNCHRONOUS)
    api.write(bucket=bucket, record=lines, write_precision=precision, **kwargs)


@dataclass(frozen=True)
class Refusal:
    """What the client saw of a refused write."""

    status: int
    headers: Mapping[str, str]
    body: str
    json: Any
    retry_after: str | None


def refused(action: Callable[[], object]) -> Refusal:
    """The ApiException a write raised, as the client exposes it (JSON bodies decoded)."""
    with pytest.raises(ApiException) as info:
        action()
    error = info.value
    headers = {str(k): str(v) for k, v in dict(error.headers).items()}
    body = error.body.decode() if isinstance(error.body, bytes) else str(error.body or "")
    is_json = headers.get("Content-Type", "").startswith("application/json")
    return Refusal(
        status=int(error.status),
        headers=headers,
        body=body,
        json=json.loads(body) if is_json and body else None,
        retry_after=error.retry_after,
    )


def raw(
    server: InfluxV2ContractServer,
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with nothing added by a client library (no default org, no auth)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        target = path + ("?" + urllib.parse.urlencode(query) if query else "")
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


AUTH = {"Authorization": f"Token {TOKEN}"}


def stored(server: InfluxV2ContractServer, bucket: str, measurement: str) -> list[dict[str, Any]]:
    return server.query(bucket, f'SELECT * FROM "{measurement}"')


def nothing_stored(server: InfluxV2ContractServer, bucket: str) -> bool:
    return server.query(bucket, "SHOW MEASUREMENTS") == []


# ------------------------------------------------------------ line protocol (no server needed)
REFUSED = [
    ("price", "missing fields"),
    ("price,coin=btc", "missing fields"),
    (",coin=btc p=1", "missing measurement"),
    ("price,=btc p=1", "missing tag key"),
    ("price,coin p=1", "missing tag value"),
    ("price,coin= p=1", "missing tag value"),
    ("price,coin=a=b p=1", "invalid tag format"),
    ("price,coin=a,coin=b p=1", "duplicate tags"),
    ("price p=", "missing field value"),
    ("price =1", "missing field key"),
    ("price p=1,g", "invalid field format"),
    ("price p=1.2.3", "invalid number"),
    ("price p=NaN", "invalid number"),
    ("price p=1.5i", "invalid number"),
    ("price p=-1u", "invalid number"),
    ("price p=1e", "invalid float"),
    ("price p=1e400", "invalid float"),
    ("price p=yes", "invalid boolean"),
    ('price p="open', "unbalanced quotes"),
    ("price p=1 12x", "bad timestamp"),
    ("price p=1 1 2", "point is invalid"),
    (
        "price p=9223372036854775808i",
        "unable to parse integer 9223372036854775808: strconv.ParseInt: "
        'parsing "9223372036854775808": value out of range',
    ),
    (
        "price p=1 99999999999999999999",
        'strconv.ParseInt: parsing "99999999999999999999": value out of range',
    ),
]


@pytest.mark.parametrize(("line", "reason"), REFUSED)
def test_parser_refuses_what_influxdb2_refuses_with_its_reason(line: str, reason: str) -> None:
    with pytest.raises(LineProtocolError) as info:
        parse_line_protocol(line.encode(), "ns")
    assert str(info.value) == f"unable to parse '{line}': {reason}"


ACCEPTED = [
    "price,coin=bitcoin,vs=usd price=97000.5,market_cap=1.9e12 1700000000123",
    'price p=1i,q=2u,r=t,s=FALSE,t="text with \\"quotes\\", commas and = signs"',
    "weird\\ name,tag\\ key=tag\\,value field\\=key=1",
    "price,b=2,a=1 p=-.5",  # unsorted tags are fine
    "price p=1 -1",  # before 1970
    "price p=1 1700000000123   ",  # trailing spaces after the timestamp
    'price note="spans\nlines"',  # a quoted newline does not end the line
]


@pytest.mark.parametrize("line", ACCEPTED)
def test_parser_accepts_valid_lines(line: str) -> None:
    assert len(parse_line_protocol(line.encode(), "ms")) == 1


def test_parser_reports_every_bad_line_and_skips_comments_and_blanks() -> None:
    body = b"# a comment\n\nok p=1\nbad1\n   \nok p=2\nbad2 p=\n"
    with pytest.raises(LineProtocolError) as info:
        parse_line_protocol(body, "ns")
    assert str(info.value) == ("unable to parse 'bad1': missing fields\nunable to parse 'bad2 p=': missing field value")
    assert [p.text for p in parse_line_protocol(b"# c\n\nok p=1\n\nok p=2\n")] == [
        b"ok p=1",
        b"ok p=2",
    ]


def test_timestamp_range_depends_on_precision() -> None:
    parse_line_protocol(b"m f=1 9223372036854", "ms")
    with pytest.raises(LineProtocolError) as info:
        parse_line_protocol(b"m f=1 9223372036855", "ms")
    assert "time 9223372036855 is outside the range [-9223372036854, 9223372036854]" in str(info.value)


def test_unsigned_integers_become_signed_for_influxdb1() -> None:
    (point,) = parse_line_protocol(b'm a=42u,b=1i,s="7u" 5')
    assert point.v1_text == b'm a=42i,b=1i,s="7u" 5'
    assert point.v1_problem is None
    (big,) = parse_line_protocol(b"m a=18446744073709551615u")
    assert big.v1_problem is not None


def test_start_fails_loudly_when_influxdb1_is_missing() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    server = InfluxV2ContractServer(f"http://127.0.0.1:{dead_port}", ORG, TOKEN, ["b"])
    with pytest.raises(V1BackendError, match=r"scripts/influxdb\.sh start"):
        server.start()
    assert not server.is_up


def test_fractional_retry_after_is_refused() -> None:
    server = InfluxV2ContractServer(V1_URL, ORG, TOKEN, ["b"])
    with pytest.raises(ValueError, match="whole number"):
        server.fail_next(1, 503, retry_after=0.5)


# ------------------------------------------------------------------------ accepted writes
@services
def test_good_write_lands_in_influxdb1_with_values_and_timestamps(
    server: InfluxV2ContractServer, client: InfluxDBClient, bucket: str
) -> None:
    write(
        client,
        bucket,
        [
            f"price,coin=bitcoin,vs=usd,source=test price=97000.5,volume_24h=1.5e10 {T0}",
            f"price,coin=ethereum,vs=usd,source=test price=3500.25,volume_24h=7e9 {T0 + 1}",
            f'alert,coin=bitcoin,kind=drop id="abc123",message="BTC fell, fast",n=3i {T0 + 2}',
        ],
    )

    prices = sorted(stored(server, bucket, "price"), key=lambda r: r["time"])
    assert [(r["time"], r["coin"], r["price"], r["volume_24h"]) for r in prices] == [
        (T0, "bitcoin", 97000.5, 1.5e10),
        (T0 + 1, "ethereum", 3500.25, 7e9),
    ]
    (alert,) = stored(server, bucket, "alert")
    assert (alert["time"], alert["id"], alert["message"], alert["n"]) == (
        T0 + 2,
        "abc123",
        "BTC fell, fast",
        3,
    )
    (record,) = server.writes
    assert (record.status, record.lines, record.query["precision"], record.query["org"]) == (
        204,
        3,
        "ms",
        ORG,
    )
    assert server.accepted_lines == 3


@services
@pytest.mark.parametrize(
    ("precision", "timestamp"),
    [
        (WritePrecision.NS, T0 * 1_000_000),
        (WritePrecision.US, T0 * 1_000),
        (WritePrecision.MS, T0),
        (WritePrecision.S, T0 // 1000),
    ],
)
def test_every_precision_lands_at_the_same_instant(
    server: InfluxV2ContractServer,
    client: InfluxDBClient,
    bucket: str,
    precision: str,
    timestamp: int,
) -> None:
    write(client, bucket, f"tick p=1 {timestamp}", precision)
    (row,) = stored(server, bucket, "tick")
    expected = T0 if precision != WritePrecision.S else (T0 // 1000) * 1000
    assert row["time"] == expected


@services
def test_bucket_can_be_named_by_id_and_org_by_org_id(server: InfluxV2ContractServer, bucket: str) -> None:
    status, _, _ = raw(
        server,
        "POST",
        "/api/v2/write",
        query={"orgID": server.org_id, "bucket": server.bucket_ids[bucket], "precision": "ms"},
        body=f"byid p=2 {T0}".encode(),
        headers=AUTH,
    )
    assert status == 204
    assert [r["p"] for r in stored(server, bucket, "byid")] == [2]


@services
def test_bearer_scheme_is_accepted_like_token(server: InfluxV2ContractServer, bucket: str) -> None:
    status, headers, body = raw(
        server,
        "POST",
        "/api/v2/write",
        query={"org": ORG, "bucket": bucket},
        body=b"bearer p=1",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert (status, body) == (204, b"")
    assert headers["X-Influxdb-Build"] == "OSS"


@services
def test_unsigned_integers_are_accepted_and_stored(
    server: InfluxV2ContractServer, client: InfluxDBClient, bucket: str
) -> None:
    write(client, bucket, f"counts n=42u {T0}")
    assert [r["n"] for r in stored(server, bucket, "counts")] == [42]


@services
def test_gzip_body_is_inflated_and_stored(server: InfluxV2ContractServer, bucket: str) -> None:
    with InfluxDBClient(url=server.url, token=TOKEN, org=ORG, enable_gzip=True) as gz_client:
        write(gz_client, bucket, [f"zipped p={i} {T0 + i}" for i in range(50)])
    assert server.writes[-1].headers.get("Content-Encoding") == "gzip"
    assert server.writes[-1].body.startswith(b"zipped p=0")
    assert len(stored(server, bucket, "zipped")) == 50


@services
def test_concurrent_writers_all_land(server: InfluxV2ContractServer, bucket: str) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with InfluxDBClient(url=server.url, token=TOKEN, org=ORG) as c:
                for i in range(5):
                    write(c, bucket, f"par,w={n} p={i} {T0 + i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert server.accepted_lines == 40
    assert len(stored(server, bucket, "par")) == 40


# ------------------------------------------------------------------------ refused writes
@services
def test_wrong_token_is_401_and_nothing_lands(server: InfluxV2ContractServer, bucket: str) -> None:
    with InfluxDBClient(url=server.url, token="not-the-token", org=ORG) as bad:
        error = refused(lambda: write(bad, bucket, f"price p=1 {T0}"))
    assert error.status == 401
    assert error.json == {"code": "unauthorized", "message": "unauthorized access"}
    assert error.headers["X-Platform-Error-Code"] == "unauthorized"
    assert nothing_stored(server, bucket)


@services
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Token "}],
    ids=["no-header", "no-scheme", "basic-scheme", "empty-token"],
)
def test_missing_or_malformed_authorization_is_401(
    server: InfluxV2ContractServer, bucket: str, headers: dict[str, str]
) -> None:
    status, _, body = raw(
        server,
        "POST",
        "/api/v2/write",
        query={"org": ORG, "bucket": bucket, "precision": "bogus"},
        body=b"price p=1",
        headers=headers,
    )
    # Authentication runs before any other check, even before the bad precision.
    assert (status, json.loads(body)["code"]) == (401, "unauthorized")
    assert nothing_stored(server, bucket)


@services
def test_org_errors(server: InfluxV2ContractServer, client: InfluxDBClient, bucket: str) -> None:
    error = refused(lambda: write(client, bucket, "price p=1", org=""))
    assert (error.status, error.json) == (
        400,
        {"code": "invalid", "message": "Please provide either orgID or org"},
    )
    error = refused(lambda: write(client, bucket, "price p=1", org="someone-else"))
    assert (error.status, error.json) == (
        404,
        {"code": "not found", "message": 'organization name "someone-else" not found'},
    )
    status, _, body = raw(server, "POST", "/api/v2/write", query={"bucket": bucket}, body=b"p v=1", headers=AUTH)
    assert (status, json.loads(body)["message"]) == (400, "Please provide either orgID or org")
    status, _, body = raw(
        server,
        "POST",
        "/api/v2/write",
        query={"orgID": "abc", "bucket": bucket},
        body=b"p v=1",
        headers=AUTH,
    )
    assert (status, json.loads(body)) == (
        400,
        {"code": "invalid", "message": "id must have a length of 16 bytes"},
    )
    status, _, body = raw(
        server,
        "POST",
        "/api/v2/write",
        query={"orgID": "00000000000000aa", "bucket": bucket},
        body=b"p v=1",
        headers=AUTH,
    )
    assert (status, json.loads(body)["message"]) == (404, "organization not found")
    assert nothing_stored(server, bucket)


@services
def test_bucket_errors(server: InfluxV2ContractServer, client: InfluxDBClient, bucket: str) -> None:
    error = refused(lambda: write(client, "no-such-bucket", "price p=1"))
    assert (error.status, error.json) == (
        404,
        {"code": "not found", "message": 'bucket "no-such-bucket" not found'},
    )
    # No bucket parameter at all is a 404 too (decodeWriteRequest), not a 400.
    status, headers, body = raw(server, "POST", "/api/v2/write", query={"org": ORG}, body=b"p v=1", headers=AUTH)
    assert (status, json.loads(body)) == (404, {"code": "not found", "message": "bucket not found"})
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert nothing_stored(server, bucket)


@services
def test_bad_precision_is_400(server: InfluxV2ContractServer, client: InfluxDBClient, bucket: str) -> None:
    expected = {
        "code": "invalid",
        "message": "invalid precision; valid precision units are ns, us, ms, and s",
    }
    error = refused(lambda: write(client, bucket, "price p=1 1", "xs"))
    assert (error.status, error.json) == (400, expected)
    # The 1.x spellings are not v2 precisions.
    for legacy in ("n", "u", "h"):
        status, _, body = raw(
            server,
            "POST",
            "/api/v2/write",
            query={"org": ORG, "bucket": bucket, "precision": legacy},
            body=b"price p=1 1",
            headers=AUTH,
        )
        assert (status, json.loads(body)) == (400, expected)
    assert nothing_stored(server, bucket)


@services
def test_a_malformed_line_rejects_the_whole_batch(
    server: InfluxV2ContractServer, client: InfluxDBClient, bucket: str
) -> None:
    lines = [f"price p=1 {T0}", f"price p=oops {T0 + 1}", f"price p=3 {T0 + 2}"]
    error = refused(lambda: write(client, bucket, lines))
    assert error.status == 400
    assert error.json == {
        "code": "invalid",
        "message": f"unable to parse 'price p=oops {T0 + 1}': invalid boolean",
    }
    # InfluxDB 1.x would have stored the two good lines; InfluxDB 2 stores none.
    assert nothing_stored(server, bucket)
    assert server.writes[-1].lines == 0


@services
def test_empty_body_is_400_writing_requires_points(server: InfluxV2ContractServer, bucket: str) -> None:
    status, _, body = raw(server, "POST", "/api/v2/write", query={"org": ORG, "bucket": bucket}, headers=AUTH)
    assert (status, json.loads(body)) == (
        400,
        {"code": "invalid", "message": "writing requires points"},
    )


@services
def test_oversized_body_is_413(server: InfluxV2ContractServer, client: InfluxDBClient, bucket: str) -> None:
    server.max_body_bytes = 64  # the limit applies to the inflated body, as in InfluxDB 2
    error = refused(lambda: write(client, bucket, [f"price p={i} {T0 + i}" for i in range(10)]))
    assert (error.status, error.json) == (
        413,
        {"code": "request too large", "message": "unable to read data: points batch is too large"},
    )
    assert nothing_stored(server, bucket)


@services
def test_first_query_value_wins(server: InfluxV2ContractServer, bucket: str) -> None:
    other = server.buckets[1]
    target = f"/api/v2/write?org={ORG}&bucket={bucket}&bucket={other}&precision=ms"
    status, _, _ = raw(server, "POST", target, body=f"dup p=1 {T0}".encode(), headers=AUTH)
    assert status == 204
    assert len(stored(server, bucket, "dup")) == 1
    assert nothing_stored(server, other)


@services
def test_broken_gzip_bodies(server: InfluxV2ContractServer, bucket: str) -> None:
    query = {"org": ORG, "bucket": bucket}
    headers = {**AUTH, "Content-Encoding": "gzip"}
    packed = bytearray(gzip.compress(b"price p=1"))
    packed[-8] ^= 0xFF  # break the CRC32 trailer
    status, _, body = raw(server, "POST", "/api/v2/write", query=query, body=bytes(packed), headers=headers)
    assert (status, json.loads(body)) == (
        400,
        {"code": "invalid", "message": "unable to read data: gzip: invalid checksum"},
    )
    # A body that is not gzip at all fails in gzip.NewReader, whose plain Go error the error
    # handler hides behind a 500.
    status, _, body = raw(server, "POST", "/api/v2/write", query=query, body=b"price p=1", headers=headers)
    assert (status, json.loads(body)) == (
        500,
        {"code": "internal error", "message": "An internal error has occurred"},
    )
    assert nothing_stored(server, bucket)


@services
def test_field_type_conflict_is_422(server: InfluxV2ContractServer, client: InfluxDBClient, bucket: str) -> None:
    write(client, bucket, f"price p=1.5 {T0}")
    error = refused(lambda: write(client, bucket, f"price p=2i {T0 + 1}"))
    assert error.status == 422
    assert error.json["code"] == "unprocessable entity"
    assert error.json["message"].startswith("failure writing points to database: partial write: field type conflict")
    assert [r["p"] for r in stored(server, bucket, "price")] == [1.5]


# ------------------------------------------------------------------------ injected faults
@services
@pytest.mark.parametrize(("status", "code"), [(503, "unavailable"), (429, "too many requests")])
def test_injected_backpressure_reaches_the_client_with_retry_after(
    server: InfluxV2ContractServer,
    client: InfluxDBClient,
    bucket: str,
    status: int,
    code: str,
) -> None:
    server.fail_next(2, status, retry_after=7)
    for _ in range(2):
        error = refused(lambda: write(client, bucket, f"price p=1 {T0}"))
        assert error.status == status
        assert error.headers["Retry-After"] == "7"
        assert error.retry_after == "7"
        assert error.json["code"] == code
    assert nothing_stored(server, bucket)

    write(client, bucket, f"price p=1 {T0}")  # the third request is handled normally
    assert len(stored(server, bucket, "price")) == 1
    assert [(w.status, w.injected) for w in server.writes] == [
        (status, True),
        (status, True),
        (204, False),
    ]


@services
def test_injected_fault_can_look_like_a_proxy(
    server: InfluxV2ContractServer, client: InfluxDBClient, bucket: str
) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    server.fail_next(1, 502, body=page, content_type="text/html")
    error = refused(lambda: write(client, bucket, "price p=1"))
    assert (error.status, error.body) == (502, page)
    assert error.headers["Content-Type"] == "text/html"
    assert "Retry-After" not in error.headers


@services
def test_go_down_refuses_connections_and_come_back_restores(
    server: InfluxV2ContractServer, client: InfluxDBClient, bucket: str
) -> None:
    write(client, bucket, f"price p=1 {T0}")  # leaves a kept-alive connection in the pool
    url = server.url
    server.go_down()
    assert not server.is_up

    with pytest.raises((NewConnectionError, MaxRetryError)) as info:
        write(client, bucket, f"price p=2 {T0 + 1}")
    cause = info.value.reason if isinstance(info.value, MaxRetryError) else info.value
    assert isinstance(cause, NewConnectionError)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2).close()
    assert client.ping() is False

    server.come_back()
    assert server.url == url
    assert client.ping() is True
    write(client, bucket, f"price p=3 {T0 + 2}")
    assert sorted(r["p"] for r in stored(server, bucket, "price")) == [1, 3]


# ------------------------------------------------------------------------ other endpoints
@services
def test_ping_health_and_unknown_routes(server: InfluxV2ContractServer, client: InfluxDBClient) -> None:
    assert client.ping() is True
    assert client.version() == "v2.7.11"
    status, _, body = raw(server, "GET", "/health")
    health = json.loads(body)
    assert (status, health["name"], health["status"]) == (200, "influxdb", "pass")
    assert raw(server, "GET", "/ping")[0] == 204
    status, _, body = raw(server, "GET", "/api/v2/write", headers=AUTH)
    assert (status, json.loads(body)) == (
        405,
        {"code": "method not allowed", "message": "allow: POST"},
    )
    status, _, body = raw(server, "GET", "/api/v2/nothing-here", headers=AUTH)
    assert (status, json.loads(body)["message"]) == (404, "path not found")
    assert raw(server, "GET", "/api/v2/nothing-here")[0] == 401


# ------------------------------------------- the validator is never laxer than InfluxDB 1.x
DIFFERENTIAL = [
    *[line for line, _ in REFUSED],
    *ACCEPTED,
    "m f=1\r",
    "m\tf=1",
    "m,t=a\\ f=1",
    "m f=0x10",
    "m f=1_000",
    "m f=inf",
    "m f=1 -",
    "m f=.",
    "m f=5.",
    "m f=" + "1" * 30,
]


@services
def test_parser_agrees_with_influxdb1_parser(v1_url: str) -> None:
    """Every line judged here is also sent to InfluxDB 1.x's own parser, which shares its code
    lineage with InfluxDB 2's: a line we accept must parse there, a line we refuse must not."""
    db = f"cw_v2c_diff_{uuid.uuid4().hex[:8]}"

    def v1(statement: str, path: str = "/query", data: bytes = b"") -> tuple[int, str]:
        params = {"q": statement} if path == "/query" else {"db": db, "precision": "ms"}
        request = urllib.request.Request(f"{v1_url}{path}?{urllib.parse.urlencode(params)}", data=data, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    v1(f'CREATE DATABASE "{db}"')
    disagreements = []
    try:
        for line in DIFFERENTIAL:
            try:
                points = parse_line_protocol(line.encode(), "ms")
                ours, payload = True, b"\n".join(p.v1_text for p in points)
            except LineProtocolError:
                ours, payload = False, line.encode()
            _, answer = v1("", "/write", payload)
            theirs = "unable to parse" not in answer
            if ours != theirs:
                disagreements.append((line, ours, answer))
    finally:
        v1(f'DROP DATABASE "{db}"')
    assert disagreements == []
