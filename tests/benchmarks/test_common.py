"""What every results file records about the run that wrote it."""

from __future__ import annotations

import sys

import pytest

from benchmarks.common import provenance


def test_the_recorded_command_pastes_back_as_it_was_run(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["/usr/bin/python3", "-m", "benchmarks.tuning", "--only", "K+ 3", "default"]
    monkeypatch.setattr(sys, "orig_argv", argv)

    record = provenance({"folds": 5})

    assert record["command"] == "python -m benchmarks.tuning --only 'K+ 3' default"
    assert record["settings"] == {"folds": 5}
    assert record["git_commit"]
