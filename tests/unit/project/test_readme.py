"""The README's promises that code can check: its config reference and its two commands."""

from __future__ import annotations

from crypto_watcher.reference import reference
from tests.support.paths import ROOT


def test_config_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- config-reference:start -->\n") + len("<!-- config-reference:start -->\n")
    end = readme.index("\n<!-- config-reference:end -->")
    assert readme[start:end] == reference(), "README config reference is stale: python -m crypto_watcher.reference"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "```sh\nbash scripts/test.sh\n```" in readme
    assert "exec bash scripts/test.sh" in (ROOT / ".ci/run").read_text()
    assert "```sh\nbash scripts/run-local.sh\n```" in readme
