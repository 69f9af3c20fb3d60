"""Routing accuracy as the paper measures it, and the reference rows it is compared with.

Accuracy is the score of the chosen LLM, averaged over queries. For files whose scores are
probabilities of the right multiple-choice answer (MMLU, CMMLU, ARC: scores that are not
multiples of 0.1) a score above 0 counts as 1; ``binary`` overrides the detection.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.dataset import RoutingData
from ..errors import DataError

if TYPE_CHECKING:
    from ..routing.base import BaseRouter


def is_probability_scored(scores: np.ndarray) -> bool:
    """True when some known score is not a multiple of 0.1 (a probability-of-choice file)."""
    return bool(probability_scored_rows(scores).any())


def probability_scored_rows(scores: np.ndarray) -> np.ndarray:
    """``(N,)``: True for each query with a known score that is not a multiple of 0.1.

    The value pattern says what a query's scores are, whatever task it came from: a graded
    score (a fraction of 10 samples, a pass or fail) is a multiple of 0.1, the probability of
    a multiple-choice answer almost never is. A query whose known scores are all 0 reads as
    graded; binarising it would change nothing.
    """
    known = np.where(np.isnan(scores), 0.0, scores)
    return np.any(np.abs(known * 10 - np.round(known * 10)) > 1e-6, axis=-1)


def metric_scores(scores: np.ndarray, binary: bool | None = None) -> np.ndarray:
    """Scores as the metric counts them: binarised (> 0 -> 1) for probability-scored files."""
    binary = is_probability_scored(scores) if binary is None else binary
    return np.where(np.isnan(scores), np.nan, scores > 0).astype(float) if binary else scores


def training_view(data: RoutingData, binary: bool | None = None) -> np.ndarray:
    """``(N, T)`` scores as the metric sees them (binarised where probabilities).

    With task labels, each task is detected as a whole, as the metric detects a file. Without
    them (an app's log), each query is detected on its own: over the whole data, one
    multiple-choice query would binarise every graded score too.
    """
    if data.tasks is None:
        if binary is not None:
            return metric_scores(data.scores, binary)
        rows = probability_scored_rows(data.scores)
        view = data.scores.copy()
        view[rows] = metric_scores(data.scores[rows], True)
        return view
    tasks = np.array(data.tasks)
    view = data.scores.copy()
    for task in dict.fromkeys(tasks.tolist()):
        rows = tasks == task
        view[rows] = metric_scores(data.scores[rows], binary)
    return view


def best_llm_per_task(data: RoutingData) -> dict[str, int]:
    """Column of each task's best LLM on ``data``, by the metric (the per-task reference)."""
    view = training_view(data)
    tasks = np.array(data.tasks if data.tasks is not None else [""] * len(data))
    return {
        task: int(np.nanmean(view[tasks == task], axis=0).argmax())
        for task in dict.fromkeys(tasks.tolist())
    }


def accuracy(
    scores: np.ndarray, chosen: Sequence[int] | np.ndarray, binary: bool | None = None
) -> float:
    """Mean metric score of the chosen LLM per query, in [0, 1] (unscored choices ignored)."""
    counted = metric_scores(scores, binary)
    picked = counted[np.arange(len(counted)), np.asarray(chosen, dtype=np.int64)]
    return float(np.nanmean(picked)) if not np.isnan(picked).all() else 0.0


def reference_rows(
    scores: np.ndarray, llm_names: Sequence[str], binary: bool | None = None
) -> dict[str, Any]:
    """Each single LLM's accuracy, the best single LLM and the oracle (best LLM per query)."""
    counted = metric_scores(scores, binary)
    with warnings.catch_warnings():  # an LLM never scored in a file has no accuracy: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        per_llm = {name: float(np.nanmean(counted[:, i])) for i, name in enumerate(llm_names)}
        oracle = float(np.nanmean(np.nanmax(counted, axis=1)))
    best = max(per_llm, key=lambda n: -1.0 if np.isnan(per_llm[n]) else per_llm[n])
    return {
        "llms": per_llm,
        "best_single": per_llm[best],
        "best_single_llm": best,
        "oracle": oracle,
    }


def task_mean_accuracy(data: RoutingData, chosen: Sequence[int] | np.ndarray) -> float:
    """Accuracy averaged over tasks (each with its own metric), as the paper averages.

    Without task labels, the mean over queries of :func:`training_view`'s score of the chosen
    LLM (unscored choices ignored): each query counted by its own value pattern.
    """
    chosen = np.asarray(chosen)
    if data.tasks is None:
        picked = training_view(data)[np.arange(len(data)), chosen.astype(np.int64)]
        return float(np.nanmean(picked)) if not np.isnan(picked).all() else 0.0
    values = []
    for task in dict.fromkeys(data.tasks):
        rows = np.array([i for i, t in enumerate(data.tasks) if t == task])
        values.append(accuracy(data.scores[rows], chosen[rows]))
    return float(np.mean(values))


def evaluate(
    router: BaseRouter,
    datasets: Mapping[str, RoutingData],
    *,
    binary: bool | None = None,
    **routing: Any,
) -> dict[str, Any]:
    """Router accuracy per data set beside each single LLM, the best single LLM and the oracle.

    Returns ``{"files": {name: {"router", "best_single", "oracle", "llms"}}, "average": {...}}``
    with accuracies in %; averages are over data sets, as the paper averages over tasks.
    """
    if not datasets:
        raise DataError("nothing to evaluate: no data sets given")
    chosen: dict[str, list[int]] = {}
    for name, data in datasets.items():
        decisions = router.route_batch(data.queries, **routing)
        columns = {llm: i for i, llm in enumerate(data.llm_names)}
        unknown = sorted({d.llm for d in decisions} - set(columns))
        if unknown:
            raise ValueError(f"{name}: the router chose LLMs with no score in the file: {unknown}")
        chosen[name] = [columns[d.llm] for d in decisions]
    return score_choices(datasets, chosen, binary=binary)


def score_choices(
    datasets: Mapping[str, RoutingData],
    chosen: Mapping[str, Sequence[int] | np.ndarray],
    *,
    binary: bool | None = None,
) -> dict[str, Any]:
    """:func:`evaluate`'s results for given choices: ``chosen[name]`` holds a score column per
    query of ``datasets[name]``."""
    if not datasets:
        raise DataError("nothing to evaluate: no data sets given")
    files: dict[str, Any] = {}
    for name, data in datasets.items():
        refs = reference_rows(data.scores, data.llm_names, binary)
        files[name] = {
            "router": 100 * accuracy(data.scores, chosen[name], binary),
            "best_single": 100 * refs["best_single"],
            "best_single_llm": refs["best_single_llm"],
            "oracle": 100 * refs["oracle"],
            "llms": {llm: 100 * v for llm, v in refs["llms"].items()},
            "queries": len(data),
            "binary_metric": is_probability_scored(data.scores) if binary is None else binary,
        }
    average: dict[str, Any] = {
        key: float(np.mean([f[key] for f in files.values()]))
        for key in ("router", "best_single", "oracle")
    }
    # The best single LLM over all files: one LLM for every file, as a user without a router has.
    names = list(next(iter(files.values()))["llms"]) if files else []
    overall = {n: float(np.mean([f["llms"].get(n, np.nan) for f in files.values()])) for n in names}
    if overall:
        best = max(overall, key=lambda n: -1.0 if np.isnan(overall[n]) else overall[n])
        average["best_single"] = overall[best]
        average["best_single_llm"] = best
    return {"files": files, "average": average}
