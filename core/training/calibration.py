"""Calibrating the routing-time cost weight to a budget: ``calibrate(router, validation, ...)``.

A router picks ``argmax_t p(t|x) - w * cost_t / max cost`` (see
:func:`core.routing.base.cost_penalty`). As ``w`` grows, each query can only move to a cheaper
LLM, so its choice changes at no more than ``T - 1`` values of ``w``. :func:`calibrate` computes
``p(t|x)`` on the validation queries once, finds every such change point, and measures the mean
cost, the accuracy and the share of calls to the most expensive LLM between each pair of them: an
exact search, with no grid to tune. Of the weights within the target it keeps the best validation
accuracy, save that a weight spending more whose accuracy trails it by less than two standard
errors (paired, query by query) counts as tied and is preferred: such a gap is noise of the
validation sample, and the budget is what the user chose to spend.

Example:
    >>> calibration = core.calibrate(router, validation, budget=0.001)  # doctest: +SKIP
    >>> router.route(query, cost_weight=calibration.cost_weight,        # doctest: +SKIP
    ...              costs=calibration.costs)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..data.dataset import RoutingData
from ..errors import ConfigError, DataError, UnknownLLMError
from ..routing.base import cost_penalty
from .metrics import accuracy, metric_scores

if TYPE_CHECKING:
    from ..routing.base import BaseRouter

logger = logging.getLogger(__name__)

__all__ = ["Calibration", "calibrate"]


@dataclass(frozen=True)
class Calibration:
    """The cost weight that meets a target, and what it gave on the validation queries.

    Attributes:
        cost_weight: the ``w`` to route with.
        costs: the prices the weight was found with; pass them to ``route`` along with it
            (they are the router's own training prices unless others were given).
        expected_cost: mean dollars per query on the validation queries.
        expected_accuracy: accuracy on the validation queries, in [0, 1].
        expensive_share: share of validation queries sent to ``most_expensive_llm``.
        most_expensive_llm: the LLM with the highest price.
        budget: the budget asked for (dollars per query), or None.
        target_expensive_share: the share asked for, or None.
        num_queries: validation queries the estimates come from.
    """

    cost_weight: float
    costs: dict[str, float]
    expected_cost: float
    expected_accuracy: float
    expensive_share: float
    most_expensive_llm: str
    budget: float | None
    target_expensive_share: float | None
    num_queries: int


def calibrate(
    router: BaseRouter,
    validation: RoutingData,
    *,
    budget: float | None = None,
    expensive_share: float | None = None,
    costs: Mapping[str, float] | None = None,
    binary: bool | None = None,
    probabilities: np.ndarray | None = None,
    tie_standard_errors: float = 2.0,
) -> Calibration:
    """The cost weight with the best validation accuracy that stays within a target.

    Args:
        router: a trained router.
        validation: queries the router did not train on, scored for every LLM it routes to.
        budget: mean dollars per query not to exceed.
        expensive_share: share of calls to the most expensive LLM not to exceed, in [0, 1].
            Give exactly one of ``budget`` and ``expensive_share``.
        costs: dollars per call of each LLM. Default: the per-query costs in ``validation``
            measure the spending and the router's training prices drive the rule (the prices
            ``route`` uses by default); else the router's training prices for both.
        binary: how accuracy counts scores; see :mod:`core.training.metrics`.
        probabilities: ``router.probabilities(validation.queries)`` when already computed,
            ``(N, T)`` in the router's LLM order; saves encoding the validation queries again
            when calibrating for several targets.
        tie_standard_errors: a weight whose validation accuracy trails the best within the
            target by less than this many standard errors of the paired difference (per
            query, its score less the best weight's) counts as tied with it; of the tied
            weights the one that spends the most of the budget is kept. A difference that
            small is noise of the validation sample, and the budget is what the user chose
            to spend. 0 keeps the best validation accuracy exactly.

    Returns:
        The weight, the prices it goes with, and the validation cost, accuracy and share.

    Raises:
        ConfigError: not exactly one target, a target out of range, no prices, or a budget
            below the cost of always routing to the cheapest LLM.
        DataError: ``validation`` lacks scores for an LLM of the router.
        UnknownLLMError: ``costs`` lacks a price for an LLM of the router.
    """
    _check_target(budget, expensive_share)
    if not (_is_number(tie_standard_errors) and 0 <= tie_standard_errors < math.inf):
        raise ConfigError(
            f"tie_standard_errors must be a finite number >= 0, got {tie_standard_errors!r}"
        )
    names = router.llm_names
    columns = _columns(names, validation)
    scores = metric_scores(validation.scores[:, columns], binary)  # (N, T), NaN where unscored
    prices, spend = _prices(router, validation, columns, costs)  # dict, (N, T) dollars
    relative = cost_penalty(names, 1.0, prices)  # (T,) cost_t / max cost
    if relative.max() <= 0:
        raise ConfigError(f"every LLM costs 0 ({prices}): a cost weight changes nothing")
    expensive = relative == relative.max()  # (T,) the most expensive LLM(s)

    if probabilities is None:
        probabilities = router.probabilities(validation.queries)
    probabilities = np.asarray(probabilities, dtype=np.float64)  # (N, T)
    if probabilities.shape != scores.shape:
        raise DataError(
            f"probabilities has shape {probabilities.shape}; expected {scores.shape} "
            "(one row per validation query, one column per LLM of the router)"
        )
    start, events = _events(probabilities, relative)
    sweep = _sweep(start, events, scores, spend, expensive)
    if budget is not None:
        feasible = sweep.costs <= budget * (1 + 1e-9)
        what, asked, floor = "budget", budget, sweep.costs.min()
    else:
        assert expensive_share is not None
        feasible = sweep.shares <= expensive_share + 1e-12
        what, asked, floor = "expensive_share", expensive_share, sweep.shares.min()
    if not feasible.any():
        raise ConfigError(
            f"{what}={asked!r} cannot be met on the validation data: the lowest any cost "
            f"weight reaches is {floor:.6g} (every query to the cheapest LLM)"
        )
    best = int(np.argmax(np.where(feasible, sweep.accuracies, -np.inf)))  # first: smallest w
    if tie_standard_errors > 0:
        # Against the best weight's own choices, query by query: the paired difference.
        reference = _choices(probabilities, relative, float(sweep.weights[best]))
        paired = _sweep(start, events, scores, spend, expensive, reference=reference)
        tied = feasible & (paired.mean_difference >= -tie_standard_errors * paired.standard_error)
        best = int(np.argmax(np.where(tied, sweep.costs, -np.inf)))
    weight = float(sweep.weights[best])

    # Report what the rule itself does at that weight, not the sweep's bookkeeping.
    chosen = _choices(probabilities, relative, weight)
    rows = np.arange(len(chosen))
    result = Calibration(
        cost_weight=weight,
        costs=dict(prices),
        expected_cost=float(spend[rows, chosen].mean()),
        expected_accuracy=accuracy(scores, chosen, binary=False),
        expensive_share=float(expensive[chosen].mean()),
        most_expensive_llm=names[int(np.argmax(relative))],
        budget=budget,
        target_expensive_share=expensive_share,
        num_queries=len(validation),
    )
    logger.info(
        "calibrated cost_weight=%.4g: $%.6f per query, accuracy %.4f, %.1f%% to %s",
        result.cost_weight,
        result.expected_cost,
        result.expected_accuracy,
        100 * result.expensive_share,
        result.most_expensive_llm,
    )
    return result


def _check_target(budget: float | None, expensive_share: float | None) -> None:
    if (budget is None) == (expensive_share is None):
        raise ConfigError(
            f"pass exactly one of budget= and expensive_share=, got budget={budget!r}, "
            f"expensive_share={expensive_share!r}"
        )
    if budget is not None and not (_is_number(budget) and math.isfinite(budget) and budget > 0):
        raise ConfigError(f"budget must be a finite number of dollars > 0, got {budget!r}")
    if expensive_share is not None and not (
        _is_number(expensive_share) and 0.0 <= expensive_share <= 1.0
    ):
        raise ConfigError(f"expensive_share must lie in [0, 1], got {expensive_share!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _columns(names: Sequence[str], validation: RoutingData) -> np.ndarray:
    """Column of each router LLM in the validation data."""
    known = {name: col for col, name in enumerate(validation.llm_names)}
    missing = [n for n in names if n not in known]
    if missing:
        raise DataError(
            f"validation data has no scores for LLMs {missing}; it needs every LLM the router "
            f"routes to (it has {list(validation.llm_names)})"
        )
    return np.array([known[n] for n in names])


def _prices(
    router: BaseRouter,
    validation: RoutingData,
    columns: np.ndarray,
    costs: Mapping[str, float] | None,
) -> tuple[dict[str, float], np.ndarray]:
    """Prices for the rule, and dollars spent per (query, LLM) ``(N, T)``."""
    names = router.llm_names
    rule = costs if costs is not None else router.config.costs
    if rule is None and validation.costs is not None:
        rule = validation.mean_costs()
    if rule is None:
        raise ConfigError(
            "calibrate needs prices and none are known: pass costs={llm: dollars}, give "
            "validation data with costs ('<llm>|total_cost' columns or a 'costs' field), or "
            "use a router trained on data with costs"
        )
    missing = [n for n in names if n not in rule]
    if missing:
        source = "costs" if costs is not None else "the router's training prices"
        raise UnknownLLMError(f"{source}: no price for LLMs {missing}; pass costs={{llm: dollars}}")
    prices = {n: float(rule[n]) for n in names}
    flat = np.array([prices[n] for n in names])  # (T,)
    if costs is not None or validation.costs is None:
        spend = np.broadcast_to(flat, (len(validation), len(names))).copy()
    else:
        observed = validation.costs[:, columns]
        spend = np.where(np.isnan(observed), flat[None, :], observed)
    return prices, spend


@dataclass(frozen=True)
class _Sweep:
    """One entry per interval of ``w`` over which no validation query changes its choice."""

    weights: np.ndarray  # a weight inside each interval (the first is 0)
    costs: np.ndarray  # mean dollars per query
    accuracies: np.ndarray
    shares: np.ndarray  # share of queries to the most expensive LLM(s)
    mean_difference: np.ndarray  # per query, score less the reference choice's score: mean
    standard_error: np.ndarray  # and its standard error


def _events(
    probabilities: np.ndarray, relative: np.ndarray
) -> tuple[np.ndarray, list[tuple[float, int, int]]]:
    """The choices at ``w = 0`` ``(N,)``, and every switch ``(w, query, LLM)`` as ``w`` grows."""
    start = probabilities.argmax(axis=1)
    events = sorted(
        (switch, row, to)
        for row in range(len(probabilities))
        for switch, to in _switches(probabilities[row], relative, int(start[row]))
    )
    return start, events


def _sweep(
    start: np.ndarray,
    events: list[tuple[float, int, int]],
    scores: np.ndarray,
    spend: np.ndarray,
    expensive: np.ndarray,
    reference: np.ndarray | None = None,
) -> _Sweep:
    """Every distinct routing of the validation queries as ``w`` grows from 0, from
    :func:`_events`.

    Each weight lies inside its interval, so routing with it reproduces that interval's choices
    without depending on how ties are broken. With ``reference`` (a choice per query), each
    routing is also compared with it query by query (unscored scores count as 0 there).
    """
    rows = np.arange(len(start))
    chosen = start.copy()  # (N,) updated one switch at a time
    known = ~np.isnan(scores)
    filled = np.where(known, scores, 0.0)
    baseline = filled[rows, reference] if reference is not None else np.zeros(len(rows))
    difference = filled[rows, chosen] - baseline  # (N,)
    # Running sums over the queries, updated one switch at a time.
    cost_sum = float(spend[rows, chosen].sum())
    score_sum = float(filled[rows, chosen].sum())
    scored = int(known[rows, chosen].sum())
    expensive_count = int(expensive[chosen].sum())
    difference_sum, squares_sum = float(difference.sum()), float((difference**2).sum())
    table = [(0.0, cost_sum, score_sum, scored, expensive_count, difference_sum, squares_sum)]
    for i, (switch, row, to) in enumerate(events):
        was = chosen[row]
        cost_sum += spend[row, to] - spend[row, was]
        score_sum += filled[row, to] - filled[row, was]
        scored += int(known[row, to]) - int(known[row, was])
        expensive_count += int(expensive[to]) - int(expensive[was])
        new_difference = filled[row, to] - baseline[row]
        difference_sum += new_difference - difference[row]
        squares_sum += new_difference**2 - difference[row] ** 2
        difference[row] = new_difference
        chosen[row] = to
        following = events[i + 1][0] if i + 1 < len(events) else None
        if following == switch:
            continue  # more switches at this very weight
        if following is None:
            following = 2 * switch if switch > 0 else 1.0
        table.append(
            (
                (switch + following) / 2,
                cost_sum,
                score_sum,
                scored,
                expensive_count,
                difference_sum,
                squares_sum,
            )
        )
    weights, costs, score_sums, scored_counts, expensive_counts, sums, squares = np.array(table).T
    n = len(rows)
    accuracies = np.divide(
        score_sums, scored_counts, out=np.zeros_like(score_sums), where=scored_counts > 0
    )
    mean = sums / n
    variance = np.maximum(squares / n - mean**2, 0.0)
    return _Sweep(weights, costs / n, accuracies, expensive_counts / n, mean, np.sqrt(variance / n))


def _choices(probabilities: np.ndarray, relative: np.ndarray, weight: float) -> np.ndarray:
    """``(N,)``: the LLM each query goes to at cost weight ``weight``."""
    return np.argmax(probabilities - weight * relative[None, :], axis=1)


def _switches(row: np.ndarray, relative: np.ndarray, start: int) -> list[tuple[float, int]]:
    """``(w, llm)``: where one query's choice moves to a cheaper LLM, in increasing ``w``.

    The chosen LLM ``c`` loses to a cheaper ``t`` once ``p_c - w r_c < p_t - w r_t``, that is
    for ``w > (p_c - p_t) / (r_c - r_t)``; of those that cross first the cheapest wins after.
    """
    out: list[tuple[float, int]] = []
    current, weight = start, 0.0
    while True:
        cheaper = np.flatnonzero(relative < relative[current])
        if cheaper.size == 0:
            return out
        crossing = (row[current] - row[cheaper]) / (relative[current] - relative[cheaper])
        first = crossing.min()
        tied = cheaper[crossing == first]
        current = int(tied[np.argmin(relative[tied])])
        weight = max(weight, float(first))
        out.append((weight, current))
