"""Cost-aware routing on RouterBench: test accuracy against mean dollars per query.

    python -m benchmarks.cost [--quick] [--seeds 0 1 2 3 4] [--encoding-cache FILE]

Reads ``../shared/data/routerbench/*.csv`` (11 LLMs with their per-query cost), splits the rows
into train, validation and test (seeded, stratified by task) and measures, on test:

- ``routerdc_routing_time``: one RouterDC router, routed with ``cost_weight`` w swept from 0;
- ``routerdc_retrained``: RouterDC retrained per cost rate c (``fit(..., cost_rate=c)``);
- ``knn``, ``linear``, ``zooter``: the baselines of :mod:`benchmarks.baselines` with the same
  rule ``argmax_t utility_t - w * cost_t / max cost`` (:func:`core.routing.base.cost_penalty`);
- ``zero_router``: RouterBench's zero router, any mix of single LLMs (their hull);
- ``oracle``: the true scores with the same rule (best possible at each price),
  and the cheapest-correct oracle and each single LLM as points;
- budget calibration: :func:`core.training.calibration.calibrate` on validation, then the
  realised test cost and accuracy against the budget asked for.

Every method sees the same frozen all-MiniLM-L6-v2 query vectors (mean pooled); RouterDC trains
its head and projection on them (``train_encoder=False``, the CPU recipe). The queries are
encoded once, into one :class:`core.training.trainer.EncodingCache` that every ``fit`` shares
(``--encoding-cache FILE`` keeps it across runs); the trained routers are scored by applying
their head to the cached vectors, and ``calibrate`` routes the validation queries through the
router itself. Every method's settings (RouterDC's temperature and K+, kNN's k, the linear C,
ZOOTER's temperature) are chosen by the AIQ of the curve they give on validation; RouterDC's
checkpoints by validation accuracy. Nothing is chosen on test. Prices in
the rule are the train split's mean cost per LLM; spending is the recorded per-query cost of
the chosen LLM; accuracy is the mean 0/1 score of the chosen LLM over all test queries.

AIQ (RouterBench, Hu et al. 2024): the area under the non-decreasing convex hull of
(cost, accuracy) points, divided by the width of the cost range, here from the cheapest to the
most expensive single LLM on test. Below a method's cheapest point its curve counts as 0; above
its most expensive point it stays at its best accuracy.

One 445-query test split decides orderings within about one AIQ point, so the benchmark runs
each seed (its own split, its own fits) and judges the targets on the mean over seeds; the
curves drawn and listed point by point are the first seed's.

Writes ``benchmarks/results/cost.json``, ``cost.md`` and ``cost.png``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

import core
from benchmarks.baselines import KNNRouter, LinearRouter, ZooterRouter
from benchmarks.common import (
    RESULTS,
    ROUTERBENCH_DATA,
    add_cache_option,
    open_cache,
    provenance,
    require_data,
    write_results,
)
from core.config import TrainConfig
from core.routing.base import cost_penalty
from core.training.calibration import calibrate
from core.training.metrics import accuracy
from core.training.trainer import EncodingCache

logger = logging.getLogger("benchmarks.cost")

GPT4 = "gpt-4-1106-preview"
SEEDS = (0, 1, 2, 3, 4)
BASELINES = ("knn", "linear", "zooter", "zero_router")
ROUTERDC = ("routerdc_routing_time", "routerdc_retrained")
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.2  # of all rows
BUDGETS = (0.0003, 0.0005, 0.001, 0.0015, 0.002)  # dollars per query
EXPENSIVE_SHARE = 0.2
# w in argmax p - w * cost / max cost. RouterDC's probabilities (softmax of cosines) are flat,
# the baselines' are not, so the grid spans six decades.
WEIGHTS = (0.0, *np.geomspace(1e-4, 1e2, 61).tolist())
QUICK_WEIGHTS = (0.0, *np.geomspace(1e-4, 1e2, 19).tolist())
# c in score - c * cost / max cost. The sample-LLM loss only looks at the order of the scores
# (top-K positives scoring > 0, bottom-K negatives scoring <= 0.5), and with 0/1 scores any
# 0 < c < 0.5 gives the same order; the order changes as 1 - c * relative price crosses 0.5
# and 0 for the expensive LLMs (relative prices 0.7 to 1), hence the grid.
COST_RATES = (0.0, 0.1, 0.55, 0.7, 0.8, 0.9, 1.05, 1.2, 1.4, 2.0, 5.0)
QUICK_COST_RATES = (0.0, 0.1, 0.8, 1.2)
# RouterDC's settings for cost-aware routing, chosen by the AIQ of their validation curve: tau of
# p(t|x) = softmax(cos / tau), K+ and the smoothing neighbours (None: fit's own choice). The
# defaults tune for accuracy alone, and the cost rule also needs p(t|x) to rank the LLMs after
# the best one, per query: heavy smoothing blurs that.
CANDIDATES: tuple[dict[str, Any], ...] = tuple(
    {"temperature": t, "top_k_positive": k, "smoothing_neighbours": n}
    for n in (None, 10)
    for k in (1, 3)
    for t in (1.0, 0.3, 0.1)
)


# ---------------------------------------------------------------------- AIQ


def non_decreasing_hull(points: np.ndarray) -> np.ndarray:
    """The upper convex hull of ``(cost, quality)`` points ``(K, 2)``, up to its best quality.

    Any point on it is reachable by routing each query to one of two configurations at random
    (RouterBench's argument); spending more never has to lower quality, so the hull stops at
    its highest point. Returns ``(M, 2)``, sorted by cost.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0:
        raise ValueError("no points to take the hull of")
    # The best quality at each cost, by cost.
    order = np.lexsort((-points[:, 1], points[:, 0]))
    points = points[order]
    points = points[np.r_[True, np.diff(points[:, 0]) > 0]]
    hull: list[np.ndarray] = []
    for point in points:
        # Drop the last hull point while it lies on or under the chord to the new point.
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (point[1] - y1) - (y2 - y1) * (point[0] - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(point)
    upper = np.array(hull)
    return upper[: int(np.argmax(upper[:, 1])) + 1]


def aiq(points: np.ndarray, cost_range: tuple[float, float]) -> float:
    """RouterBench's AIQ: mean height of the non-decreasing hull over ``cost_range``.

    The hull counts as 0 below its cheapest point and stays at its best quality beyond its
    most expensive one.
    """
    low, high = cost_range
    if not high > low:
        raise ValueError(f"cost_range must be increasing, got {cost_range!r}")
    hull = non_decreasing_hull(points)
    start = max(low, hull[0, 0])
    if start >= high:
        return 0.0
    inside = hull[(hull[:, 0] > start) & (hull[:, 0] < high), 0]
    xs = np.concatenate([[start], inside, [high]])
    ys = np.interp(xs, hull[:, 0], hull[:, 1])
    area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2))
    return area / (high - low)


def hull_value(points: np.ndarray, cost: float) -> float:
    """Quality of the hull at ``cost`` (0 below its cheapest point)."""
    hull = non_decreasing_hull(points)
    return 0.0 if cost < hull[0, 0] else float(np.interp(cost, hull[:, 0], hull[:, 1]))


# ---------------------------------------------------------------------- frozen routers


@torch.inference_mode()
def head_probabilities(router: core.Router, vectors: torch.Tensor) -> np.ndarray:
    """p(t|x) ``(N, T)`` of a frozen-encoder router from its encoder's cached outputs ``(N, D)``.

    The same numbers as ``router.probabilities(queries)``, without running the encoder again.
    """
    router.model.eval()
    logits, _ = router.model.head(vectors.to(router.device))
    return torch.softmax(logits.float(), dim=1).cpu().numpy()


# ---------------------------------------------------------------------- measuring


class TestSplit:
    """Test scores and costs, and what a choice of LLM per query gives on them."""

    def __init__(self, data: core.RoutingData, prices: Mapping[str, float]) -> None:
        assert data.costs is not None
        self.data = data
        self.names = list(data.llm_names)
        self.prices = dict(prices)
        flat = np.array([prices[n] for n in self.names])
        self.spend = np.where(np.isnan(data.costs), flat[None, :], data.costs)  # (N, T)

    @property
    def cost_range(self) -> tuple[float, float]:
        """Mean cost per query of the cheapest and of the dearest single LLM: AIQ's range."""
        per_llm = self.spend.mean(axis=0)
        return float(per_llm.min()), float(per_llm.max())

    def point(self, chosen: np.ndarray, **setting: float) -> dict[str, float]:
        rows = np.arange(len(chosen))
        return {
            **setting,
            "cost": float(self.spend[rows, chosen].mean()),
            "accuracy": 100 * accuracy(self.data.scores, chosen),
        }

    def route(self, utilities: np.ndarray, cost_weight: float) -> np.ndarray:
        penalty = cost_penalty(self.names, cost_weight, self.prices)
        return np.argmax(utilities - penalty[None, :], axis=1)

    def sweep(self, utilities: np.ndarray, weights: Sequence[float]) -> list[dict[str, float]]:
        return [self.point(self.route(utilities, w), cost_weight=w) for w in weights]


def curve_entry(
    points: Sequence[Mapping[str, Any]], cost_range: tuple[float, float]
) -> dict[str, Any]:
    xy = np.array([[p["cost"], p["accuracy"]] for p in points])
    return {
        "aiq": aiq(xy, cost_range),
        "points": points,
        "hull": non_decreasing_hull(xy).tolist(),
        "best_accuracy": float(xy[:, 1].max()),
    }


def split_rows(data: core.RoutingData, seed: int) -> dict[str, np.ndarray]:
    rest, test = data.split_indices(TEST_FRACTION, seed=seed)
    rest_data = data.subset(rest)
    train, validation = rest_data.split_indices(
        VALIDATION_FRACTION / (1 - TEST_FRACTION), seed=seed
    )
    return {"train": rest[train], "validation": rest[validation], "test": test}


def run(data: core.RoutingData, *, quick: bool, seed: int, cache: EncodingCache) -> dict[str, Any]:
    """One seed: its split, every method's fits and curves, the calibration and the targets."""
    started = time.perf_counter()
    rows = split_rows(data, seed)
    train, validation, test = (data.subset(rows[k]) for k in ("train", "validation", "test"))
    tasks = data.tasks or [""] * len(data)
    split = {
        "seed": seed,
        "fractions": {
            "train": 1 - TEST_FRACTION - VALIDATION_FRACTION,
            "validation": VALIDATION_FRACTION,
            "test": TEST_FRACTION,
        },
        "stratified_by": "task (eval_name)",
        "queries": {
            name: {t: int(sum(tasks[i] == t for i in idx)) for t in dict.fromkeys(tasks)}
            | {"total": len(idx)}
            for name, idx in rows.items()
        },
    }
    logger.info("split: %s", split["queries"])
    steps = 300 if quick else TrainConfig().steps
    weights = QUICK_WEIGHTS if quick else WEIGHTS
    cost_rates = QUICK_COST_RATES if quick else COST_RATES
    prices = train.mean_costs()
    assert prices is not None
    measure = TestSplit(test, prices)
    single = {name: measure.point(np.full(len(test), i)) for i, name in enumerate(measure.names)}
    cost_range = measure.cost_range

    recipe = TrainConfig(train_encoder=False, steps=steps, seed=seed)
    options: dict[str, Any] = {
        "config": recipe,
        "validation": validation,
        "encoding_cache": cache,
        "progress": False,
    }
    # RouterDC's settings are chosen on validation, as the baselines' settings are.
    candidates = [core.fit(train, **c, **options) for c in CANDIDATES]
    first = candidates[0]
    assert first.config.costs == prices
    parts = {"train": train, "validation": validation, "test": test}
    vectors = {name: cache.encode(first, part.queries, recipe) for name, part in parts.items()}
    on_validation = TestSplit(validation, prices)

    def validation_aiq(utilities: np.ndarray, scores: np.ndarray | None = None) -> float:
        """AIQ of the curve ``utilities`` give on validation: how every setting is chosen."""
        points = on_validation.sweep(utilities, weights)
        return curve_entry(points, on_validation.cost_range)["aiq"]

    aiqs = [validation_aiq(head_probabilities(f, vectors["validation"])) for f in candidates]
    chosen_by = {
        ", ".join(f"{k}={v}" for k, v in c.items()): a
        for c, a in zip(CANDIDATES, aiqs, strict=True)
    }
    best = int(np.argmax(aiqs))  # the first on ties
    settings_chosen, router = CANDIDATES[best], candidates[best]
    logger.info("RouterDC %s (validation AIQ %s)", settings_chosen, chosen_by)
    test_probabilities = head_probabilities(router, vectors["test"])

    methods: dict[str, dict[str, Any]] = {}
    methods["routerdc_routing_time"] = curve_entry(
        measure.sweep(test_probabilities, weights), cost_range
    )
    methods["routerdc_routing_time"]["settings"] = {
        "steps": steps,
        "cost_rate": 0.0,
        **settings_chosen,
        "validation_aiq": chosen_by,
    }

    retrained = []
    for rate in cost_rates:
        # Validation accuracy ignores cost, so picking the checkpoint by it would undo the
        # cost rate: keep the last step instead (validate only there).
        fitted = core.fit(train, cost_rate=rate, eval_every=steps, **settings_chosen, **options)
        chosen = head_probabilities(fitted, vectors["test"]).argmax(axis=1)
        retrained.append(measure.point(chosen, cost_rate=rate))
        logger.info("retrained with cost_rate %g: %s", rate, retrained[-1])
    methods["routerdc_retrained"] = curve_entry(retrained, cost_range)
    methods["routerdc_retrained"]["settings"] = {
        "steps": steps,
        **settings_chosen,
        "checkpoint": "last step",
    }

    arrays = {name: v.numpy() for name, v in vectors.items()}
    baselines = (
        KNNRouter(criterion=validation_aiq),
        LinearRouter(criterion=validation_aiq),
        ZooterRouter(seed=seed, criterion=validation_aiq),
    )
    for baseline in baselines:
        baseline.fit(arrays["train"], train.scores, arrays["validation"], validation.scores)
        entry = curve_entry(measure.sweep(baseline.utilities(arrays["test"]), weights), cost_range)
        entry["settings"] = {"validation_accuracy": baseline.validation}
        methods[baseline.name] = entry
        logger.info("%s: AIQ %.2f", baseline.name, entry["aiq"])

    methods["zero_router"] = curve_entry(
        [{**p, "llm": name} for name, p in single.items()], cost_range
    )
    truth = np.nan_to_num(test.scores, nan=-1.0)
    methods["oracle"] = curve_entry(measure.sweep(truth, weights), cost_range)
    best = truth.max(axis=1, keepdims=True)
    cheapest_correct = np.argmin(np.where(truth == best, measure.spend, np.inf), axis=1)
    oracle_points = {"cheapest_correct_oracle": measure.point(cheapest_correct)}

    calibration = calibrate_on_validation(router, validation, test_probabilities, measure)
    targets = check_targets(methods, single, calibration)
    settings = {
        "quick": quick,
        "seed": seed,
        "steps": steps,
        "torch_threads": torch.get_num_threads(),
        "recipe": {k: v for k, v in vars(recipe.resolved("cpu")).items() if k != "device"},
        "cost_weights": list(weights),
        "cost_rates": list(cost_rates),
        "budgets": list(BUDGETS),
        "expensive_share": EXPENSIVE_SHARE,
        "encoder": router.config.encoder,
        "accuracy": "mean 0/1 score of the chosen LLM over all test queries, in %",
        "cost": "mean recorded dollars per test query of the chosen LLM",
        "rule_prices": prices,
    }
    return {
        "provenance": provenance(settings),
        "split": split,
        "cost_range": list(cost_range),
        "methods": methods,
        "single_llms": single,
        "oracles": oracle_points,
        "calibration": calibration,
        "targets": targets,
        "seconds": time.perf_counter() - started,
    }


def calibrate_on_validation(
    router: core.Router,
    validation: core.RoutingData,
    test_probabilities: np.ndarray,
    measure: TestSplit,
) -> list[dict[str, Any]]:
    """Calibrate on validation for each target, then route the test queries with the weight.

    The validation queries are encoded through the router once, for every target; the test
    routing applies the router's rule to its probabilities ``(N, T)`` on test.
    """
    out = []
    probabilities = router.probabilities(validation.queries)
    targets = [{"budget": b} for b in BUDGETS] + [{"expensive_share": EXPENSIVE_SHARE}]
    for target in targets:
        found = calibrate(
            router,
            validation,
            budget=target.get("budget"),
            expensive_share=target.get("expensive_share"),
            probabilities=probabilities,
        )
        assert found.costs == measure.prices and router.llm_names == measure.names
        chosen = measure.route(test_probabilities, found.cost_weight)
        realised = measure.point(chosen)
        expensive = measure.names.index(found.most_expensive_llm)
        row = {
            **target,
            "cost_weight": found.cost_weight,
            "validation_cost": found.expected_cost,
            "validation_accuracy": 100 * found.expected_accuracy,
            "validation_expensive_share": found.expensive_share,
            "test_cost": realised["cost"],
            "test_accuracy": realised["accuracy"],
            "test_expensive_share": float(np.mean(chosen == expensive)),
        }
        if "budget" in target:
            row["test_cost_over_budget"] = realised["cost"] / target["budget"] - 1
        logger.info("calibration %s", row)
        out.append(row)
    return out


def aiq_comparison(methods: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each RouterDC curve's AIQ against each baseline's, and whether the better one beats all."""
    best_routerdc = max(methods[m]["aiq"] for m in ROUTERDC)
    return {
        "aiq_above_every_baseline": {
            m: {b: methods[m]["aiq"] > methods[b]["aiq"] for b in BASELINES} for m in ROUTERDC
        },
        "best_routerdc_aiq_above_every_baseline": all(
            best_routerdc > methods[b]["aiq"] for b in BASELINES
        ),
    }


def check_targets(
    methods: Mapping[str, Mapping[str, Any]],
    single: Mapping[str, Mapping[str, float]],
    calibration: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The issue's three targets on one seed's test split."""
    gpt4 = single[GPT4]
    close = {n: p for n, p in single.items() if n != GPT4 and p["accuracy"] >= gpt4["accuracy"] - 2}
    if close:
        reference = min(close, key=lambda n: close[n]["cost"])
        cost_target, why = close[reference]["cost"], f"cost of {reference}"
    else:
        cost_target, why = gpt4["cost"] / 2, f"half of {GPT4}'s cost (no other LLM within 2 points)"
    at_target = {}
    for name in (*ROUTERDC, *BASELINES[:3]):
        points = methods[name]["points"]
        affordable = [p["accuracy"] for p in points if p["cost"] <= cost_target]
        xy = np.array([[p["cost"], p["accuracy"]] for p in points])
        best_point = max(affordable) if affordable else None
        at_target[name] = {
            "best_point_accuracy": best_point,
            "hull_accuracy": hull_value(xy, cost_target),
            "gap_to_gpt4": None if best_point is None else best_point - gpt4["accuracy"],
        }
    budgets = [row for row in calibration if "budget" in row]
    return {
        **aiq_comparison(methods),
        "gpt4_accuracy": gpt4["accuracy"],
        "gpt4_cost": gpt4["cost"],
        "cost_target": cost_target,
        "cost_target_is": why,
        "accuracy_at_cost_target": at_target,
        "routerdc_matches_gpt4_at_cost_target": any(
            gap is not None and gap >= 0 for gap in (at_target[m]["gap_to_gpt4"] for m in ROUTERDC)
        ),
        "calibration_within_10_percent": {
            str(row["budget"]): abs(row["test_cost_over_budget"]) <= 0.10 for row in budgets
        },
    }


def aggregate(runs: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Every seed's run in one result: AIQ and targets as means over seeds, the first seed's
    curves and points, every seed's calibration rows and settings."""
    first = runs[0]
    seeds = [r["split"]["seed"] for r in runs]
    methods = {}
    for name, entry in first["methods"].items():
        per_seed = [r["methods"][name]["aiq"] for r in runs]
        methods[name] = {
            **entry,
            "aiq": float(np.mean(per_seed)),
            "aiq_std": float(np.std(per_seed)),
            "aiq_per_seed": per_seed,
            "curve_of_seed": seeds[0],
        }
    settings = {k: v for k, v in first["provenance"]["settings"].items() if k != "seed"}
    return {
        "provenance": provenance(settings | {"seeds": seeds}),
        "seeds": seeds,
        "split": first["split"],
        "cost_range": first["cost_range"],
        "methods": methods,
        "single_llms": first["single_llms"],
        "oracles": first["oracles"],
        "calibration": [
            row | {"seed": seed}
            for seed, r in zip(seeds, runs, strict=True)
            for row in r["calibration"]
        ],
        "targets": mean_targets(methods, runs),
        "per_seed": [
            {
                "seed": seed,
                "aiq": {name: m["aiq"] for name, m in r["methods"].items()},
                "settings": {name: m.get("settings") for name, m in r["methods"].items()},
                "targets": r["targets"],
                "seconds": r["seconds"],
            }
            for seed, r in zip(seeds, runs, strict=True)
        ],
        "seconds": seconds,
    }


def mean_targets(
    methods: Mapping[str, Mapping[str, Any]], runs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The targets judged on means over seeds, with how many seeds met each."""
    gaps: dict[str, float | None] = {}
    for name in (*ROUTERDC, *BASELINES[:3]):
        per_seed = [r["targets"]["accuracy_at_cost_target"][name]["gap_to_gpt4"] for r in runs]
        gaps[name] = None if None in per_seed else float(np.mean(per_seed))
    calibration: dict[str, dict[str, Any]] = {}
    for budget in BUDGETS:
        over = [
            row["test_cost_over_budget"]
            for r in runs
            for row in r["calibration"]
            if row.get("budget") == budget
        ]
        calibration[str(budget)] = {
            "mean_test_cost_over_budget": float(np.mean(over)),
            "mean_abs_test_cost_over_budget": float(np.mean(np.abs(over))),
            "seeds_within_10_percent": int(np.sum(np.abs(over) <= 0.10)),
            "seeds": len(over),
        }
    return {
        **aiq_comparison(methods),
        "seeds_where_routerdc_beats_every_baseline": int(
            sum(r["targets"]["best_routerdc_aiq_above_every_baseline"] for r in runs)
        ),
        "cost_target_is": runs[0]["targets"]["cost_target_is"],
        "mean_gap_to_gpt4_at_cost_target": gaps,
        "routerdc_matches_gpt4_at_cost_target": any(
            (gap := gaps[m]) is not None and gap >= 0 for m in ROUTERDC
        ),
        "calibration": calibration,
        "calibration_within_10_percent_share": float(
            np.mean([c["seeds_within_10_percent"] / c["seeds"] for c in calibration.values()])
        ),
    }


# ---------------------------------------------------------------------- report


def markdown(result: dict[str, Any]) -> str:
    settings = result["provenance"]["settings"]
    seeds = result["seeds"]
    lines = [
        "# Cost-aware routing on RouterBench",
        "",
        f"Test accuracy against mean cost per query, {len(result['single_llms'])} LLMs, "
        f"seeds {seeds}, each its own split and fits{' (quick run)' if settings['quick'] else ''}. "
        f"Every router sees frozen {settings['encoder']} query vectors; RouterDC trains its "
        f"head ({settings['steps']} steps). AIQ: area under the non-decreasing convex hull of "
        f"(cost, accuracy), normalised over the single LLMs' cost range on each test split "
        f"(seed {seeds[0]}: ${result['cost_range'][0]:.6f} to ${result['cost_range'][1]:.6f}).",
        "",
        f"## Split of seed {seeds[0]} (stratified by task; every seed's has the same sizes)",
        "",
        "| split | " + " | ".join(next(iter(result["split"]["queries"].values()))) + " |",
        "|---|" + "---:|" * len(next(iter(result["split"]["queries"].values()))),
    ]
    for name, counts in result["split"]["queries"].items():
        lines.append(f"| {name} | " + " | ".join(str(v) for v in counts.values()) + " |")
    lines += [
        "",
        "## AIQ per method (test, %)",
        "",
        "| method | mean ± std over seeds | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---:|" + "---:|" * len(seeds),
    ]
    for name, entry in sorted(result["methods"].items(), key=lambda kv: -kv[1]["aiq"]):
        cells = " | ".join(f"{a:.2f}" for a in entry["aiq_per_seed"])
        lines.append(f"| {name} | {entry['aiq']:.2f} ± {entry['aiq_std']:.2f} | {cells} |")
    chosen = [r["settings"]["routerdc_routing_time"] for r in result["per_seed"]]
    lines += [
        "",
        "RouterDC's settings chosen by validation AIQ, per seed: "
        + "; ".join(
            f"seed {r['seed']}: tau {c['temperature']}, K+ {c['top_k_positive']}, "
            f"smoothing {c['smoothing_neighbours'] or 'chosen per task'}"
            for r, c in zip(result["per_seed"], chosen, strict=True)
        )
        + ".",
        "",
        f"## Single LLMs and oracles (test, seed {seeds[0]})",
        "",
        "| | cost ($/query) | accuracy (%) |",
        "|---|---:|---:|",
    ]
    points = {**result["single_llms"], **result["oracles"]}
    for name, p in sorted(points.items(), key=lambda kv: kv[1]["cost"]):
        lines.append(f"| {name} | {p['cost']:.6f} | {p['accuracy']:.2f} |")
    targets = result["targets"]
    means = {name: entry["aiq"] for name, entry in result["methods"].items()}
    lines += [
        "",
        "## Targets (means over seeds)",
        "",
        f"- RouterDC's AIQ above every baseline's: "
        f"**{targets['best_routerdc_aiq_above_every_baseline']}** ("
        + "; ".join(
            f"{name} {means[name]:.2f} beats "
            + ", ".join(f"{b} {means[b]:.2f}: {'yes' if won else 'no'}" for b, won in wins.items())
            for name, wins in targets["aiq_above_every_baseline"].items()
        )
        + f"); on {targets['seeds_where_routerdc_beats_every_baseline']} of {len(seeds)} "
        "seeds one RouterDC curve beats every baseline.",
        f"- gpt-4's accuracy at the cost target ({targets['cost_target_is']}): RouterDC matches "
        f"it: **{targets['routerdc_matches_gpt4_at_cost_target']}**. Mean gap of the best point "
        "within the target to gpt-4, in points: "
        + ", ".join(
            f"{name} {'-' if gap is None else f'{gap:+.2f}'}"
            for name, gap in targets["mean_gap_to_gpt4_at_cost_target"].items()
        )
        + ".",
        f"- Budget calibration within 10% on test: "
        f"{targets['calibration_within_10_percent_share']:.0%} of (budget, seed) pairs.",
        "",
        "| budget ($/query) | seeds within 10% | mean test vs budget | mean abs. deviation |",
        "|---:|---:|---:|---:|",
    ]
    for budget, row in targets["calibration"].items():
        lines.append(
            f"| {float(budget):.4f} | {row['seeds_within_10_percent']} of {row['seeds']} | "
            f"{row['mean_test_cost_over_budget']:+.1%} | "
            f"{row['mean_abs_test_cost_over_budget']:.1%} |"
        )
    lines += [
        "",
        f"## Budget calibration of seed {seeds[0]} (found on validation, measured on test)",
        "",
        "| target | cost weight | validation $/query | test $/query | test vs budget | "
        "test accuracy (%) | share to gpt-4 (test) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["calibration"]:
        if row["seed"] != seeds[0]:
            continue
        target = (
            f"budget ${row['budget']:.4f}"
            if "budget" in row
            else f"expensive share {row['expensive_share']:.0%}"
        )
        versus = f"{row['test_cost_over_budget']:+.1%}" if "budget" in row else "-"
        lines.append(
            f"| {target} | {row['cost_weight']:.4g} | {row['validation_cost']:.6f} | "
            f"{row['test_cost']:.6f} | {versus} | {row['test_accuracy']:.2f} | "
            f"{row['test_expensive_share']:.1%} |"
        )
    lines += [
        "",
        f"Run time: {result['seconds']:.0f} s for {len(seeds)} seeds. Plot: `cost.png` "
        f"(seed {seeds[0]}'s curves, mean AIQ in the legend).",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, budgets) = plt.subplots(1, 2, figsize=(14, 6), width_ratios=(2, 1))
    styles = {
        "routerdc_routing_time": ("tab:red", "-"),
        "routerdc_retrained": ("tab:orange", "-"),
        "knn": ("tab:blue", "--"),
        "linear": ("tab:green", "--"),
        "zooter": ("tab:purple", "--"),
        "zero_router": ("tab:gray", ":"),
        "oracle": ("black", ":"),
    }
    for name, entry in result["methods"].items():
        color, line = styles.get(name, (None, "-"))
        xy = np.array(sorted((p["cost"], p["accuracy"]) for p in entry["points"]))
        hull = np.array(entry["hull"])
        # The hull is linear in cost; draw it densely so the log axis shows its true shape.
        dense = np.geomspace(hull[0, 0], max(hull[-1, 0], hull[0, 0] * 1.0001), 200)
        hull = np.column_stack([dense, np.interp(dense, hull[:, 0], hull[:, 1])])
        curves.plot(
            hull[:, 0], hull[:, 1], line, color=color, label=f"{name} (AIQ {entry['aiq']:.1f})"
        )
        curves.plot(xy[:, 0], xy[:, 1], ".", color=color, alpha=0.5, markersize=4)
    for name, p in result["single_llms"].items():
        curves.plot(p["cost"], p["accuracy"], "o", color="tab:gray")
        curves.annotate(name.split("/")[-1], (p["cost"], p["accuracy"]), fontsize=7)
    for name, p in result["oracles"].items():
        curves.plot(p["cost"], p["accuracy"], "*", color="black", markersize=10, label=name)
    curves.set_xscale("log")
    curves.set_xlabel("mean cost per query ($, log scale)")
    curves.set_ylabel("test accuracy (%)")
    curves.set_title("RouterBench: accuracy against cost (hull lines, raw points dotted)")
    curves.legend(fontsize=8, loc="lower right")
    curves.grid(alpha=0.3)

    rows = [r for r in result["calibration"] if "budget" in r]
    asked = np.array(BUDGETS)
    for field, color, mark, label in (
        ("test_cost", "tab:red", "o", "test"),
        ("validation_cost", "tab:orange", "x", "validation"),
    ):
        spent = [[r[field] for r in rows if r["budget"] == b] for b in BUDGETS]
        budgets.plot(
            [b for b, got in zip(asked, spent, strict=True) for _ in got],
            [x for got in spent for x in got],
            mark,
            color=color,
            alpha=0.4,
        )
        budgets.plot(
            asked, [np.mean(got) for got in spent], "-", color=color, label=f"{label} (mean)"
        )
    budgets.plot(asked, asked, ":", color="black", label="budget")
    budgets.fill_between(asked, asked * 0.9, asked * 1.1, color="gray", alpha=0.2, label="±10%")
    budgets.tick_params(axis="x", labelrotation=30)
    budgets.set_xlabel("budget asked ($ per query)")
    budgets.set_ylabel("realised mean cost ($ per query)")
    budgets.set_title("calibrate(..., budget=...), every seed")
    budgets.legend(fontsize=8)
    budgets.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer points and training steps")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help="one run per seed, each seeding its split and every fit (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the head's small steps gain nothing from more, and on "
        "a shared CPU more threads only wait on each other)",
    )
    add_cache_option(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cache = open_cache(args.encoding_cache)
    logger.info("%d encoded queries in the cache at the start", len(cache))
    data = core.RoutingData.from_files(sorted(require_data(ROUTERBENCH_DATA).glob("*.csv")))
    runs = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        runs.append(run(data, quick=args.quick, seed=seed, cache=cache))
        if args.encoding_cache is not None:
            cache.save(args.encoding_cache)
    result = aggregate(runs, time.perf_counter() - started)
    json_path, md_path = write_results("cost", result, markdown(result))
    plot(result, RESULTS / "cost.png")
    logger.info("wrote %s, %s and %s", json_path, md_path, RESULTS / "cost.png")


if __name__ == "__main__":
    main()
