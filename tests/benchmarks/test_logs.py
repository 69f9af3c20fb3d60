"""benchmarks.logs: hiding scores as an app's log lacks them, and the report."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.logs import hide_scores, report
from core import RoutingData


def full_data(rows: int = 400, llms: int = 7) -> RoutingData:
    rng = np.random.default_rng(0)
    return RoutingData(
        queries=[f"q{i}" for i in range(rows)],
        llm_names=[f"llm{j}" for j in range(llms)],
        scores=rng.random((rows, llms)),
        tasks=["t"] * rows,
    )


def test_hiding_keeps_one_score_per_query_and_hides_about_the_share() -> None:
    data = full_data()
    hidden = hide_scores(data, 0.9, seed=0)
    known = ~np.isnan(hidden.scores)
    assert known.sum(axis=1).min() >= 1
    # 90% drawn hidden, but a query's last score is always kept: a little under 90%.
    assert 0.8 < 1 - known.mean() < 0.9
    np.testing.assert_array_equal(hidden.scores[known], data.scores[known])
    assert hidden.tasks == data.tasks


def test_hiding_is_seeded_and_hides_nothing_at_zero() -> None:
    data = full_data()
    np.testing.assert_array_equal(
        hide_scores(data, 0.5, seed=3).scores, hide_scores(data, 0.5, seed=3).scores
    )
    assert not np.array_equal(
        np.isnan(hide_scores(data, 0.5, seed=3).scores),
        np.isnan(hide_scores(data, 0.5, seed=4).scores),
    )
    np.testing.assert_array_equal(hide_scores(data, 0.0, seed=0).scores, data.scores)


def test_a_share_outside_zero_to_one_is_refused_by_value() -> None:
    with pytest.raises(ValueError, match=r"share must lie in \[0, 1\), got 1\.0"):
        hide_scores(full_data(), 1.0, seed=0)


def test_report_has_a_row_per_condition_and_the_best_single_llm() -> None:
    row = {
        "hidden_share": 0.7,
        "task_labels": False,
        "mean": 56.5,
        "std": 0.25,
        "files": {"mmlu_test.json": 60.0, "gsm8k_test.json": 53.0},
    }
    best = {
        "average": 54.56,
        "llm": "d",
        "files": {"mmlu_test.json": 59.0, "gsm8k_test.json": 50.1},
    }
    lines = report({"70% hidden, no task labels": row}, best, [0, 1])
    assert "| scores hidden | task labels | mmlu | gsm8k | average | spread |" in lines.splitlines()
    assert "| 70% | no | 60.00 | 53.00 | 56.50 | ± 0.25 |" in lines.splitlines()
    assert "| best single LLM (d) | | 59.00 | 50.10 | 54.56 | |" in lines.splitlines()
