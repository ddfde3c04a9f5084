"""The test extra installs what the testcontainers fallback of tests/support/services.py imports.

On a Docker host with no local services the fallback starts InfluxDB through
``testcontainers.influxdb``, whose module imports both InfluxDB clients; without testcontainers'
``influxdb`` extra that import fails before any container starts.
"""

from __future__ import annotations

import importlib
import re
import tomllib

from tests.support.paths import ROOT


def test_test_extra_asks_for_testcontainers_with_its_influxdb_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [r for r in project["optional-dependencies"]["test"] if re.match(r"testcontainers\b", r)]
    assert len(wanted) == 1, wanted
    extras = re.match(r"testcontainers\[([^\]]*)\]", wanted[0])
    assert extras is not None and "influxdb" in {e.strip() for e in extras.group(1).split(",")}, wanted[0]


def test_the_modules_the_fallback_imports_import() -> None:
    for module in ("testcontainers.influxdb", "testcontainers.community.influxdb", "testcontainers.kafka"):
        importlib.import_module(module)
