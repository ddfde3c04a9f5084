"""A service that starts with a warning from someone else's library trains its users to ignore stderr.

quixstreams imports authlib, whose httpx integration warns on import (authlib 1.9.10: "The httpx
module is deprecated"); crypto_watcher silences that one warning before anything imports quixstreams.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.paths import ROOT


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "processor", "--help"],
        ["-m", "producer", "--help"],
        ["-m", "notifier", "--help"],
        ["bench/processor_throughput.py", "--help"],  # imports quixstreams before the processor
    ],
    ids=["processor", "producer", "notifier", "bench"],
)
def test_help_writes_nothing_to_stderr(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
    assert done.stderr == ""
