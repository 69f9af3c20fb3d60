"""Leave-one-task-out in benchmarks.tuning: the reference, the summary and the report."""

from __future__ import annotations

import numpy as np

import core
from benchmarks.tuning import (
    across_report,
    across_summary,
    best_single_llm,
    leave_one_task_out_reference,
    loto_summary,
)


def three_tasks() -> core.RoutingData:
    """LLM "a" is best on tasks x and y, "b" on z; "c" is second everywhere but on y."""
    records = []
    for task, scores in {
        "x": {"a": 1.0, "b": 0.0, "c": 0.6},
        "y": {"a": 1.0, "b": 0.5, "c": 0.2},
        "z": {"a": 0.0, "b": 1.0, "c": 0.6},
    }.items():
        records += [{"query": f"{task} {i}", "scores": scores, "task": task} for i in range(4)]
    return core.RoutingData.from_records(records)


def test_the_best_single_llm_is_the_best_by_mean_accuracy_over_tasks() -> None:
    data = three_tasks()

    assert data.llm_names[best_single_llm(data)] == "a"  # 2 / 3 against 1.5 / 3 and 1.4 / 3


def test_the_reference_calls_the_best_llm_of_the_other_tasks_on_each_left_out_one() -> None:
    reference = leave_one_task_out_reference(three_tasks())

    # Without x: b (0.75) beats a (0.5) and c (0.4); without y: c (0.6); without z: a (1).
    assert reference["llm"] == {"x": "b", "y": "c", "z": "a"}
    assert reference["per_task"] == {"x": 0.0, "y": 20.0, "z": 0.0}
    assert reference["average"] == np.mean([0.0, 20.0, 0.0])


def test_the_summary_gives_gains_over_the_reference_and_their_spread_over_folds() -> None:
    row = loto_summary({"x": 60.0, "y": 50.0}, {"x": 50.0, "y": 50.0})

    assert row["gain"] == {"x": 10.0, "y": 0.0}
    assert row["mean_gain"] == 5.0 and row["spread"] == 5.0 and row["average"] == 55.0


def test_the_results_file_and_table_show_in_task_and_across_task_figures_side_by_side() -> None:
    reference = {"per_task": {"x": 50.0, "y": 50.0}, "average": 50.0, "llm": {"x": "a", "y": "b"}}
    rows = {
        "default": loto_summary({"x": 60.0, "y": 50.0}, reference["per_task"]),
        "variant": loto_summary({"x": 40.0, "y": 50.0}, reference["per_task"]),
    }
    results = {"default": {"average": 59.9}, "variant": {"average": 61.0}}

    summary = across_summary(rows, reference)
    lines = across_report(results, {"loto": rows}, {"loto": reference}).splitlines()

    assert summary["default"] == 55.0 and summary["best_single"] == 50.0
    expected_x = {"default": 60.0, "best_single": 50.0, "best_single_llm": "a"}
    assert summary["per_task"]["x"] == expected_x
    assert "| default | 59.90 | 55.00 | +5.00 (± 5.00) |" in lines
    assert "| variant | 61.00 | 45.00 | -5.00 (± 5.00) |" in lines
    assert "| always the best single LLM of the training tasks | — | 50.00 | — |" in lines
