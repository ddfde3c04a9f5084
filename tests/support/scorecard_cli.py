"""``crypto-processor scorecard`` run in-process by the tests, as a user types it.

Shared by the scorecard's own tests and the Grafana scorecard dashboard's, which both need a real
scorecard run (its JSON card, and the points it wrote) from a module-scoped fixture, where
pytest's ``capsys`` is not available: stdout and stderr are captured by redirecting them.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from processor.cli import main
from tests.support.root_logging import restored_root_logging


def scorecard_args(from_ms: int, to_ms: int, target: Sequence[str], state: Path) -> list[str]:
    """The scorecard over ``[from_ms, to_ms)`` into ``target`` (``--influx-db X`` or
    ``--influx-bucket X``), its card printed as JSON."""
    return [
        "scorecard",
        *("--from", str(from_ms), "--to", str(to_ms)),
        *target,
        *("--state-dir", str(state)),
        "--no-progress",
        "--json",
    ]


def run_scorecard(env: Mapping[str, str], argv: Sequence[str]) -> dict[str, Any]:
    """Runs the CLI with ``env`` set (and unset again after); it must exit 0. Returns the card."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with restored_root_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    assert code == 0, err.getvalue()
    return dict(json.loads(out.getvalue()))
