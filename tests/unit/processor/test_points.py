"""The line-protocol formatter equals influxdb-client's Point byte for byte, for any input."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from processor.points import _line

names = st.text(min_size=1, max_size=12)


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.none(),
    st.integers(-(10**6), 10**6).map(float),
)


def reference(measurement: str, tags: dict[str, str], fields: dict[str, Any], time_ms: int) -> str:
    point = Point(measurement)
    for k, v in tags.items():
        point.tag(k, v)
    for k, v in fields.items():
        point.field(k, v)
    point.time(time_ms, WritePrecision.MS)
    return str(point.to_line_protocol())


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["price", "change", "a b,c"]),
    st.dictionaries(names, st.text(max_size=10), max_size=4),
    st.dictionaries(names, values, min_size=1, max_size=5),
    st.integers(0, 4_102_444_800_000),
)
def test_same_bytes_as_influxdb_client_point(
    measurement: str, tags: dict[str, str], fields: dict[str, Any], time_ms: int
) -> None:
    assert _line(measurement, tags, fields, time_ms) == reference(measurement, tags, fields, time_ms)
