"""Fixtures for tests that talk to the real Kafka and InfluxDB (see tests/support/services.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.services import Influx, Influx2, Services, real_services, unique


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
def influx2(services: Services) -> Influx2:
    return services.influx2


@pytest.fixture
def influx2_bucket(influx2: Influx2) -> Iterator[str]:
    """A fresh, empty bucket on the real InfluxDB 2 for one test (InfluxQL finds it by name)."""
    name = unique("test")
    influx2.create_bucket(name)
    yield name
    influx2.delete_bucket(name)


@pytest.fixture
def topics() -> dict[str, str]:
    """Topic names private to one test, so tests never see each other's messages."""
    tag = unique("t")
    return {"ticks": f"{tag}.ticks", "alerts": f"{tag}.alerts", "dlq": f"{tag}.ticks.dlq"}
