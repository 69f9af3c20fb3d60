"""benchmarks.onboarding's draws and summary, on hand-made rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.onboarding import draw_across_tasks, markdown, summarise


def test_draws_spread_over_tasks_and_stay_in_the_rows_given() -> None:
    tasks = ["a"] * 50 + ["b"] * 50 + ["c"] * 4
    rows = np.arange(2, 104)  # rows 0 and 1 are held out
    drawn = draw_across_tasks(tasks, rows, 25, np.random.default_rng(0))
    assert len(drawn) == len(set(drawn.tolist())) == 25
    assert set(drawn.tolist()) <= set(rows.tolist())
    per_task = {t: sum(tasks[r] == t for r in drawn) for t in "abc"}
    assert per_task["c"] == 4  # a short task gives all it has; the others make up the rest
    assert per_task["a"] >= 8 and per_task["b"] >= 8


def results(six: dict[str, float], added: dict[str, list[float]]) -> dict[str, Any]:
    return {
        "full": 60.0,
        "full_validation": 61.0,
        "per_llm": {
            llm: {
                "six": six[llm],
                "six_validation": 0.0,
                "added": {"50": added[llm]},
                "added_new_scores_only": {"50": [six[llm]]},
            }
            for llm in six
        },
    }


def test_recovered_counts_only_llms_whose_removal_costs_accuracy() -> None:
    # a: gap 2, recovers 1.5 and 2.5 of it (mean 1.0); b: gap 4, recovers 2 (0.5); c: no gap.
    rows = results({"a": 58.0, "b": 56.0, "c": 60.5}, {"a": [59.5, 60.5], "b": [58.0], "c": [50.0]})
    summary = summarise(rows, [50])
    assert summary["llms_whose_removal_costs"] == ["a", "b"]
    assert summary["recovered"]["50"] == pytest.approx(0.75)
    assert summary["recovered_pooled"]["50"] == pytest.approx((2.0 + 2.0) / (2.0 + 4.0))
    assert summary["recovered_per_llm"]["a"]["50"] == pytest.approx(1.0)
    assert summary["recovered_new_only"]["50"] == pytest.approx(0.0)


def test_markdown_reports_the_target_verdict() -> None:
    rows = results({"a": 58.0}, {"a": [60.0]})
    payload = {
        "results": rows,
        "summary": summarise(rows, [50]),
        "settings": {"sizes": [50], "draws": 1, "add_llm": {}},
        "add_seconds": {"50": 1.5},
        "add_seconds_note": "an upper bound",
    }
    text = markdown(payload)
    assert "Target recovered(50) >= 0.8: met." in text
    assert "| seconds | 1.50 |" in text
