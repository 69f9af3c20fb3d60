"""The tuning report over several fold assignments: means, spread and paired gains."""

from __future__ import annotations

from benchmarks.tuning import folds_of, mean_over_assignments, report


def run(a: float, b: float) -> dict[str, float]:
    return {"task_a": a, "task_b": b, "average": (a + b) / 2}


def test_mean_over_assignments_keeps_each_assignments_average() -> None:
    row = mean_over_assignments([run(60.0, 40.0), run(62.0, 44.0)])

    assert row == {
        "task_a": 61.0,
        "task_b": 42.0,
        "average": 51.5,
        "average_per_assignment": [50.0, 53.0],
    }


def test_report_gives_the_paired_difference_from_the_default_and_the_wins() -> None:
    results = {
        "default": mean_over_assignments([run(60.0, 40.0), run(62.0, 44.0)]),
        "variant": mean_over_assignments([run(61.0, 41.0), run(61.0, 43.0)]),
    }

    lines = report(results, folds=5, fold_seeds=[0, 1]).splitlines()

    assert "| variant | task_a | task_b | average | spread | vs default |" in lines
    # variant: averages 51 and 52 against the default's 50 and 53 -> +1 and -1, one above.
    assert "| variant | 61.00 | 42.00 | 51.50 | ± 0.50 | +0.00 (1/2 above) |" in lines
    assert "| default | 61.00 | 42.00 | 51.50 | ± 1.50 | +0.00 (0/2 above) |" in lines


def test_one_fold_assignment_reports_no_spread() -> None:
    results = {"default": mean_over_assignments([run(60.0, 40.0)])}

    lines = report(results, 5, [0]).splitlines()

    assert "| variant | task_a | task_b | average |" in lines
    assert "| default | 60.00 | 40.00 | 50.00 |" in lines


def test_folds_are_stratified_by_task_and_differ_by_seed() -> None:
    tasks = ["a"] * 10 + ["b"] * 5

    fold = folds_of(tasks, 5, seed=0)

    assert sorted(fold[:10].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert sorted(fold[10:].tolist()) == [0, 1, 2, 3, 4]
    assert (folds_of(tasks, 5, seed=1) != fold).any()
