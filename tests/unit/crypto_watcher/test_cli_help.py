"""Every service's --help reads as plain text: no reStructuredText quotes from the docstrings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from notifier.cli import main as notifier_main
from processor.cli import main as processor_main
from producer.cli import main as producer_main

MAINS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "crypto-producer": producer_main,
    "crypto-processor": processor_main,
    "crypto-notifier": notifier_main,
}


@pytest.mark.parametrize("prog", sorted(MAINS))
def test_help_has_no_rst_quotes(prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        MAINS[prog](["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: {prog}") and "``" not in text
