"""benchmarks.cost's report over seeds: means, counts and the Markdown, on hand-made runs."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.cost import (
    BASELINES,
    BUDGETS,
    GPT4,
    ROUTERDC,
    aggregate,
    check_targets,
    markdown,
)

SINGLE = {GPT4: {"cost": 0.005, "accuracy": 88.0}, "cheap": {"cost": 0.0001, "accuracy": 55.0}}


def one_run(seed: int, aiqs: dict[str, float], over_budget: float) -> dict[str, Any]:
    """A run whose every method has one point at half of gpt-4's cost, 85% accurate."""
    methods = {
        name: {"aiq": value, "points": [{"cost": 0.002, "accuracy": 85.0}], "hull": [[0.002, 85.0]]}
        for name, value in aiqs.items()
    }
    for name in ROUTERDC:
        methods[name]["settings"] = {
            "temperature": 0.1,
            "top_k_positive": 1,
            "smoothing_neighbours": None,
        }
    calibration = [
        {
            "budget": b,
            "cost_weight": 0.5,
            "validation_cost": b,
            "test_cost": b * (1 + over_budget),
            "test_cost_over_budget": over_budget,
            "test_accuracy": 80.0,
            "test_expensive_share": 0.1,
        }
        for b in BUDGETS
    ]
    return {
        "provenance": {"settings": {"seed": seed, "quick": True, "steps": 5, "encoder": "e"}},
        "split": {"seed": seed, "queries": {"train": {"a": 1, "total": 1}}},
        "cost_range": [0.0001, 0.005],
        "methods": methods,
        "single_llms": SINGLE,
        "oracles": {},
        "calibration": calibration,
        "targets": check_targets(methods, SINGLE, calibration),
        "seconds": 1.0,
    }


def test_targets_are_judged_on_the_means_over_seeds() -> None:
    names = (*ROUTERDC, *BASELINES)
    # RouterDC loses to kNN on seed 0 and wins by more on seed 1: ahead on the mean.
    first = dict.fromkeys(names, 80.0) | {"routerdc_routing_time": 83.0, "knn": 84.0}
    second = dict.fromkeys(names, 80.0) | {"routerdc_routing_time": 87.0, "knn": 84.0}
    result = aggregate([one_run(0, first, 0.05), one_run(1, second, 0.15)], seconds=2.0)

    entry = result["methods"]["routerdc_routing_time"]
    assert entry["aiq"] == pytest.approx(85.0) and entry["aiq_std"] == pytest.approx(2.0)
    assert entry["aiq_per_seed"] == [83.0, 87.0]
    targets = result["targets"]
    assert targets["best_routerdc_aiq_above_every_baseline"]
    assert targets["seeds_where_routerdc_beats_every_baseline"] == 1
    assert targets["mean_gap_to_gpt4_at_cost_target"]["knn"] == pytest.approx(-3.0)
    assert not targets["routerdc_matches_gpt4_at_cost_target"]
    budget = targets["calibration"][str(BUDGETS[0])]
    assert budget["seeds_within_10_percent"] == 1 and budget["seeds"] == 2
    assert budget["mean_test_cost_over_budget"] == pytest.approx(0.10)
    assert targets["calibration_within_10_percent_share"] == pytest.approx(0.5)
    assert len(result["calibration"]) == 2 * len(BUDGETS)
    assert result["provenance"]["settings"]["seeds"] == [0, 1]

    report = markdown(result)
    assert "| routerdc_routing_time | 85.00 ± 2.00 | 83.00 | 87.00 |" in report
    assert "on 1 of 2 seeds one RouterDC curve beats every baseline" in report
