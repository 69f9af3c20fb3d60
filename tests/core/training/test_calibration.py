"""calibrate: the cost weight that keeps a router within a budget, on the data it was found on."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import core
from core.training.calibration import _events, _sweep, calibrate
from core.training.metrics import accuracy

PRICES = {"math-llm": 0.01, "code-llm": 0.002, "chat-llm": 0.0005}


def routed(router: core.Router, data: core.RoutingData, **options: object) -> np.ndarray:
    """Column of the chosen LLM per query."""
    columns = {name: i for i, name in enumerate(data.llm_names)}
    return np.array([columns[d.llm] for d in router.route_batch(data.queries, **options)])


def mean_price(chosen: np.ndarray, data: core.RoutingData) -> float:
    return float(np.mean([PRICES[data.llm_names[c]] for c in chosen]))


def with_query_costs(data: core.RoutingData, seed: int = 0) -> core.RoutingData:
    """The data with per-query costs scattered around PRICES."""
    rng = np.random.default_rng(seed)
    flat = np.array([PRICES[n] for n in data.llm_names])
    costs = flat[None, :] * rng.uniform(0.5, 1.5, size=data.scores.shape)
    return core.RoutingData(
        queries=data.queries,
        llm_names=data.llm_names,
        scores=data.scores,
        costs=costs,
        tasks=data.tasks,
    )


def test_calibrated_weight_keeps_mean_cost_under_the_budget_on_the_calibration_data(
    tiny_router: core.Router, toy_data: core.RoutingData
) -> None:
    plain_cost = mean_price(routed(tiny_router, toy_data), toy_data)
    budget = plain_cost / 2

    calibration = calibrate(tiny_router, toy_data, budget=budget, costs=PRICES)

    chosen = routed(
        tiny_router, toy_data, cost_weight=calibration.cost_weight, costs=calibration.costs
    )
    assert calibration.cost_weight > 0
    assert mean_price(chosen, toy_data) <= budget
    assert calibration.expected_cost == pytest.approx(mean_price(chosen, toy_data))
    assert calibration.expected_accuracy == pytest.approx(accuracy(toy_data.scores, chosen))
    assert calibration.budget == budget and calibration.target_expensive_share is None
    assert calibration.most_expensive_llm == "math-llm"
    assert calibration.num_queries == len(toy_data)


def test_precomputed_probabilities_give_the_same_calibration(
    tiny_router: core.Router, toy_data: core.RoutingData
) -> None:
    budget = mean_price(routed(tiny_router, toy_data), toy_data) / 2
    fresh = calibrate(tiny_router, toy_data, budget=budget, costs=PRICES)
    given = tiny_router.probabilities(toy_data.queries)
    reused = calibrate(tiny_router, toy_data, budget=budget, costs=PRICES, probabilities=given)
    assert reused == fresh


def test_probabilities_of_the_wrong_shape_are_an_error_naming_the_shape(
    tiny_router: core.Router, toy_data: core.RoutingData
) -> None:
    wrong = tiny_router.probabilities(toy_data.queries)[:-1]
    with pytest.raises(core.DataError, match=r"probabilities has shape"):
        calibrate(tiny_router, toy_data, budget=0.001, costs=PRICES, probabilities=wrong)


def test_a_budget_above_the_plain_router_cost_loses_no_accuracy(
    tiny_router: core.Router, toy_data: core.RoutingData
) -> None:
    chosen = routed(tiny_router, toy_data)

    calibration = calibrate(tiny_router, toy_data, budget=1.0, costs=PRICES)

    assert calibration.expected_accuracy >= accuracy(toy_data.scores, chosen)


def test_expensive_share_target_caps_calls_to_the_most_expensive_llm(
    tiny_router: core.Router, toy_data: core.RoutingData
) -> None:
    calibration = calibrate(tiny_router, toy_data, expensive_share=0.1, costs=PRICES)

    chosen = routed(tiny_router, toy_data, cost_weight=calibration.cost_weight, costs=PRICES)
    share = float(np.mean([toy_data.llm_names[c] == "math-llm" for c in chosen]))
    assert share <= 0.1
    assert calibration.expensive_share == pytest.approx(share)
    assert calibration.target_expensive_share == 0.1 and calibration.budget is None


def test_per_query_costs_in_the_validation_data_measure_the_spending(
    tiny_router: core.Router, toy_data: core.RoutingData
) -> None:
    data = with_query_costs(toy_data)
    budget = 0.003

    calibration = calibrate(tiny_router, data, budget=budget)

    # The router has no training prices, so the data's mean prices drive the rule.
    assert calibration.costs == pytest.approx(data.mean_costs())
    chosen = routed(tiny_router, data, cost_weight=calibration.cost_weight, costs=calibration.costs)
    assert data.costs is not None
    spent = float(data.costs[np.arange(len(data)), chosen].mean())
    assert spent <= budget
    assert calibration.expected_cost == pytest.approx(spent)


def test_a_budget_below_the_cheapest_routing_is_an_error_naming_the_budget(
    tiny_router: core.Router, toy_data: core.RoutingData
) -> None:
    with pytest.raises(core.ConfigError, match=r"budget=0\.0001 cannot be met"):
        calibrate(tiny_router, toy_data, budget=0.0001, costs=PRICES)


@pytest.mark.parametrize(
    "targets",
    [{}, {"budget": 0.001, "expensive_share": 0.5}],
    ids=["neither", "both"],
)
def test_calibrate_needs_exactly_one_target(
    tiny_router: core.Router, toy_data: core.RoutingData, targets: dict[str, float]
) -> None:
    with pytest.raises(core.ConfigError, match="exactly one of budget= and expensive_share="):
        calibrate(tiny_router, toy_data, costs=PRICES, **targets)


@pytest.mark.parametrize(
    "targets",
    [{"budget": 0.0}, {"budget": -1.0}, {"budget": math.nan}, {"expensive_share": 1.5}],
    ids=["zero-budget", "negative-budget", "nan-budget", "share-above-one"],
)
def test_out_of_range_targets_are_errors_naming_the_value(
    tiny_router: core.Router, toy_data: core.RoutingData, targets: dict[str, float]
) -> None:
    ((name, value),) = targets.items()
    with pytest.raises(core.ConfigError, match=f"{name} must .* got {value!r}"):
        calibrate(tiny_router, toy_data, costs=PRICES, **targets)


def test_no_prices_anywhere_is_an_error_saying_how_to_give_them(
    tiny_router: core.Router, toy_data: core.RoutingData
) -> None:
    assert tiny_router.config.costs is None and toy_data.costs is None
    with pytest.raises(core.ConfigError, match=r"pass costs=\{llm: dollars\}"):
        calibrate(tiny_router, toy_data, budget=0.001)


def test_a_price_list_missing_an_llm_names_it(
    tiny_router: core.Router, toy_data: core.RoutingData
) -> None:
    prices = {k: v for k, v in PRICES.items() if k != "chat-llm"}
    with pytest.raises(core.UnknownLLMError, match="chat-llm"):
        calibrate(tiny_router, toy_data, budget=0.001, costs=prices)


def test_validation_data_without_an_llm_of_the_router_is_an_error_naming_it(
    tiny_router: core.Router, toy_data: core.RoutingData
) -> None:
    keep = [0, 1]
    partial = core.RoutingData(
        queries=toy_data.queries,
        llm_names=[toy_data.llm_names[i] for i in keep],
        scores=toy_data.scores[:, keep],
    )
    with pytest.raises(core.DataError, match=toy_data.llm_names[2]):
        calibrate(tiny_router, partial, budget=0.001, costs=PRICES)


def test_the_sweep_matches_the_routing_rule_at_every_weight_it_returns() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(4), size=50)  # (N, T)
    relative = np.array([1.0, 0.5, 0.1, 0.5])
    scores = rng.integers(0, 2, size=(50, 4)).astype(float)
    scores[3, 1] = np.nan
    spend = relative[None, :] * rng.uniform(0.5, 1.5, size=(50, 4))
    expensive = relative == 1.0

    reference = rng.integers(0, 4, size=50)

    start, events = _events(probabilities, relative)
    sweep = _sweep(start, events, scores, spend, expensive, reference=reference)

    assert sweep.weights[0] == 0 and np.all(np.diff(sweep.weights) > 0)
    assert sweep.shares[-1] == 0  # past the last switch every query goes to the cheapest LLM
    filled = np.nan_to_num(scores)
    rows = np.arange(50)
    for i, weight in enumerate(sweep.weights):
        chosen = np.argmax(probabilities - weight * relative[None, :], axis=1)
        assert sweep.costs[i] == pytest.approx(spend[rows, chosen].mean())
        assert sweep.accuracies[i] == pytest.approx(accuracy(scores, chosen, binary=False))
        assert sweep.shares[i] == pytest.approx(expensive[chosen].mean())
        difference = filled[rows, chosen] - filled[rows, reference]
        assert sweep.mean_difference[i] == pytest.approx(difference.mean())
        assert sweep.standard_error[i] == pytest.approx(difference.std() / np.sqrt(50))


def two_routings(llm_names: list[str], cheap_wins: int) -> tuple[core.RoutingData, np.ndarray]:
    """100 queries, each torn between the dearest LLM and the cheapest: its probability leads
    by i / 100 on query i, so a weight moves the queries to the cheap LLM one by one. The cheap
    LLM is right on all of them, the dear one on all but ``cheap_wins``."""
    dear, cheap = llm_names.index("math-llm"), llm_names.index("chat-llm")
    probabilities = np.full((100, len(llm_names)), 0.0)
    probabilities[:, dear] = 0.5 + np.arange(100) / 200
    probabilities[:, cheap] = 0.5 - np.arange(100) / 200
    scores = np.zeros((100, len(llm_names)))
    scores[:, cheap] = 1.0
    scores[:, dear] = 1.0
    scores[:cheap_wins, dear] = 0.0  # the queries the first weights move
    data = core.RoutingData(
        queries=[f"q{i}" for i in range(100)], llm_names=list(llm_names), scores=scores
    )
    return data, probabilities


def test_a_weight_tied_within_noise_spends_the_budget(tiny_router: core.Router) -> None:
    # Moving the first queries to the cheap LLM gains two right answers in 100: noise. Within a
    # budget that allows everything, the tie rule spends it; without it, the cheaper wins.
    data, probabilities = two_routings(tiny_router.llm_names, cheap_wins=2)
    options = {"budget": 1.0, "costs": PRICES, "probabilities": probabilities}

    tied = calibrate(tiny_router, data, **options)
    exact = calibrate(tiny_router, data, tie_standard_errors=0, **options)

    assert tied.cost_weight == 0 and tied.expected_cost == pytest.approx(PRICES["math-llm"])
    assert exact.expected_accuracy == 1.0 and exact.expected_cost < tied.expected_cost


def test_a_clearly_better_cheaper_weight_wins_over_spending(tiny_router: core.Router) -> None:
    data, probabilities = two_routings(tiny_router.llm_names, cheap_wins=30)
    calibration = calibrate(
        tiny_router, data, budget=1.0, costs=PRICES, probabilities=probabilities
    )
    # 30 right answers in 100 are no noise: the bulk of those queries move to the cheap LLM
    # (the last few, within two standard errors of the best, may stay: the tie rule).
    assert calibration.expensive_share <= 0.75
    assert calibration.expected_accuracy >= 0.95


@pytest.mark.parametrize("value", [-1.0, math.inf, "1", True])
def test_a_bad_tie_tolerance_is_an_error_naming_it(
    tiny_router: core.Router, toy_data: core.RoutingData, value: object
) -> None:
    with pytest.raises(core.ConfigError, match="tie_standard_errors"):
        calibrate(tiny_router, toy_data, budget=0.01, costs=PRICES, tie_standard_errors=value)  # type: ignore[arg-type]


def test_importing_calibration_leaves_the_training_stack_unloaded() -> None:
    code = (
        "import sys, core.training.calibration; "
        "print(sorted(m for m in ('sklearn', 'core.training.trainer', 'core.training.losses') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
