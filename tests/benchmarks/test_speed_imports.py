"""The speed benchmark's import timing runs each statement in a fresh interpreter."""

from __future__ import annotations

import pytest

from benchmarks.speed import HEAVY_MODULES, _import_section, import_seconds


def test_import_seconds_times_each_statement_in_a_fresh_interpreter_and_names_heavy_imports() -> (
    None
):
    figures = import_seconds({"json": "import json", "core": "import core"}, repeats=2)
    assert set(figures) == {"json", "core"}
    for row in figures.values():
        assert len(row["runs"]) == 2 and row["first"] == row["runs"][0] > 0
        assert row["median"] == pytest.approx(sum(row["runs"]) / 2)
        assert set(row["imported"]) == set(HEAVY_MODULES)
    # A fresh interpreter each time: this test's process has torch loaded, the children not.
    assert not any(figures["core"]["imported"].values())


def test_import_seconds_reports_a_failing_import_with_its_error() -> None:
    with pytest.raises(RuntimeError, match="no_such_module"):
        import_seconds({"missing": "import no_such_module"}, repeats=1)


def test_the_import_section_lists_each_statement_with_the_heavy_modules_it_imported() -> None:
    detail = {
        "core": {"median": 0.2, "first": 0.3, "runs": [0.3, 0.2], "imported": {"torch": False}},
        "x": {"median": 5.0, "first": 6.0, "runs": [6.0, 5.0], "imported": {"torch": True}},
    }
    lines = _import_section({"import_detail": detail})
    assert "| `import core` | 0.20 | 0.30 | none |" in lines
    assert "| `x` | 5.00 | 6.00 | torch |" in lines
