"""What the repository says about itself stays true: cited files exist, no path names the machine a
file was written on, and no server version is claimed that the tests do not run.

A fresh clone is all a reader has: a docstring citing a file that is not there, or a result file
recording the home folder of whoever ran it, sends them looking for something that never existed for them.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import ROOT

SKIP_DIRS = {".git", ".venv", ".cache", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
TEXT_SUFFIXES = {".py", ".md", ".sh", ".yaml", ".yml", ".json", ".toml", ".txt", ".tpl", ".ini", ".cfg"}
GENERATED = {"docs/coingecko/openapi-demo.json", "docs/coingecko/openapi-pro.json"}
"""CoinGecko's own specifications, kept as published."""


def text_files() -> Iterator[tuple[str, str]]:
    """(repo-relative path, text) of every text file of the repository (not the caches)."""
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix not in TEXT_SUFFIXES and path.name not in ("Dockerfile", ".env.example"):
            continue
        if rel.as_posix() in GENERATED:
            continue
        yield rel.as_posix(), path.read_text(errors="replace")


def test_every_cited_docs_file_exists() -> None:
    cited = re.compile(r"(?<![\w/.-])(docs/[\w./-]+\.md)")
    missing = [
        f"{name}: {ref}" for name, text in text_files() for ref in cited.findall(text) if not (ROOT / ref).is_file()
    ]
    assert not missing, "cited but not in the repository:\n" + "\n".join(missing)


MACHINE_PATH = re.compile(r"(?<![\w.~$}-])/(?:work|home|Users|root|mnt)/[\w.-]+")


def test_no_file_names_a_path_outside_the_repository() -> None:
    found = [f"{name}: {m}" for name, text in text_files() for m in MACHINE_PATH.findall(text)]
    assert not found, "absolute paths of some machine:\n" + "\n".join(found)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("result", sorted((ROOT / "bench" / "results").glob("*.json")), ids=lambda p: p.name)
def test_bench_results_hold_repo_relative_paths(result: Path) -> None:
    absolute = [s for s in strings(json.loads(result.read_text())) if s.startswith("/") and "/" in s[1:]]
    assert not absolute, absolute


def test_bench_writers_store_repo_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import common  # bench/common.py, as the bench scripts import it

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    assert common.repo_path(ROOT / "processor") == "processor"
    assert common.repo_path(Path("/opt/elsewhere/processor")) == "/opt/elsewhere/processor"
    runs = [{"processor_code": str(ROOT / "processor"), "profile": str(ROOT / ".cache" / "bench" / "p.pstats")}]
    path = common.save_results("x", "python bench/x.py", {"runs": runs, "outside": "/opt/elsewhere"})
    saved = json.loads(path.read_text())
    assert saved["runs"] == [{"processor_code": "processor", "profile": ".cache/bench/p.pstats"}]
    assert saved["outside"] == "/opt/elsewhere"  # not the repository's: left as it is
    sys.modules.pop("common", None)


# Only what the tests run against may be claimed: InfluxDB 1.x (scripts/influxdb.sh) and 2.x
# (scripts/influxdb2.sh). No InfluxDB 3.x server can be had here, so none is claimed.
INFLUX_3 = re.compile(r"(?i)influx\w*[^\n]{0,60}?\b3\.x|2\.x/3\.x|2\.x, 3\.x|3\.x likewise")


def test_only_tested_influxdb_versions_are_claimed() -> None:
    claims = [
        f"{name}: {m.group(0)}"
        for name, text in text_files()
        if name != Path(__file__).relative_to(ROOT).as_posix()
        for m in INFLUX_3.finditer(text)
    ]
    assert not claims, "InfluxDB 3.x is not tested here:\n" + "\n".join(claims)
