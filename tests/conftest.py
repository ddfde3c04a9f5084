"""Fixtures for tests that talk to the real Kafka and InfluxDB (see tests/support/services.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.services import Influx, Services, real_services, unique


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    try:
        with real_services() as found:
            yield found
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def influx(services: Services) -> Influx:
    return Influx(services.influx_url)


@pytest.fixture
def influx_db(influx: Influx) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = unique("test")
    yield name
    influx.drop(name)


@pytest.fixture
def topics() -> dict[str, str]:
    """Topic names private to one test, so tests never see each other's messages."""
    tag = unique("t")
    return {"ticks": f"{tag}.ticks", "alerts": f"{tag}.alerts", "dlq": f"{tag}.ticks.dlq"}
