"""Neighbour-smoothed training scores: what the router can learn about *kinds* of queries.

One query's scores say which LLMs happened to answer it right; on multiple-choice tasks, where
most LLMs are right most of the time, that is mostly noise. Averaging each query's scores over
its ``k`` nearest training queries (cosine on the untrained encoder's outputs), within its task
(or k-means cluster), keeps what is true of a neighbourhood and drops what is true of one query.
How far to look differs by task: on the paper's HumanEval ten neighbours predict a held-out
query best, on its MMLU the whole task does; :func:`choose_neighbours` picks ``k`` per group.
Cross-validated on the paper's train files this is the largest single gain over the paper's
recipe (benchmarks/results/tuning.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

from .errors import ConfigError

# Elements gathered at a time, (rows, k, T): bounds the memory of the neighbour means.
_CHUNK_ELEMENTS = 1 << 23

Neighbours = int | Mapping[Hashable, int]


@dataclass(frozen=True)
class NeighbourChoice:
    """What :func:`choose_neighbours` found.

    Attributes:
        per_group: the chosen neighbour count of each group label.
        accuracy: per group label, the leave-one-out mean score of each candidate count.
    """

    per_group: dict[Hashable, int]
    accuracy: dict[Hashable, dict[int, float]]


def smooth_scores(
    embeddings: np.ndarray, scores: np.ndarray, groups: np.ndarray, neighbours: Neighbours
) -> np.ndarray:
    """Each query's scores replaced by their mean over its nearest neighbours in its group.

    Args:
        embeddings: ``(N, D)`` query vectors.
        scores: ``(N, T)`` scores, NaN where unscored (left out of the means).
        groups: ``(N,)`` labels; neighbours are looked for among queries of the same label.
        neighbours: k, the query itself included, for every group or per group label (as
            :attr:`NeighbourChoice.per_group`); a group smaller than k uses all its queries.

    Returns:
        ``(N, T)`` smoothed scores; NaN only where no neighbour scored that LLM.
    """
    labels = np.asarray(groups)
    if labels.shape != (len(scores),) or len(embeddings) != len(scores):
        raise ValueError(
            f"smooth_scores: {len(embeddings)} embeddings, {labels.shape} groups "
            f"and {len(scores)} score rows must agree"
        )
    per_group = _counts_per_group(neighbours, np.unique(labels))
    smoothed = np.empty(scores.shape, dtype=np.float64)
    for label, k in per_group.items():
        rows = np.flatnonzero(labels == label)
        own = scores[rows]
        if k >= len(rows):  # the whole group: no search needed
            smoothed[rows] = _nanmean(own, axis=0)[None, :]
            continue
        index = NearestNeighbors(n_neighbors=k, metric="cosine").fit(embeddings[rows])
        for part in _chunks(len(rows), k * scores.shape[1]):
            nearest = index.kneighbors(embeddings[rows[part]], return_distance=False)  # (n, k)
            smoothed[rows[part]] = _nanmean(own[nearest], axis=1)
    return smoothed


def choose_neighbours(
    embeddings: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    candidates: tuple[int, ...],
) -> NeighbourChoice:
    """Per group, the neighbour count whose neighbourhoods best predict each query's best LLM.

    Leave-one-out over the training queries themselves: for each candidate k, each query's
    LLMs are ranked by their mean score over its k nearest other queries of its group, and the
    query scores the top-ranked LLM's own score. No training, and every query counts, so the
    choice is far steadier than one made on a small validation split. A group of one query
    has nothing to learn from and keeps the smallest candidate.

    Returns:
        The best k of each group (the smallest on ties) and every candidate's mean score.
    """
    labels = np.asarray(groups)
    per_group: dict[Hashable, int] = {}
    accuracy: dict[Hashable, dict[int, float]] = {}
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        key = label.item() if isinstance(label, np.generic) else label
        results = _leave_one_out(embeddings[rows], scores[rows], candidates)
        per_group[key] = max(candidates, key=lambda k: (results.get(k, 0.0), -k))
        accuracy[key] = results
    return NeighbourChoice(per_group, accuracy)


def _leave_one_out(
    embeddings: np.ndarray, scores: np.ndarray, candidates: tuple[int, ...]
) -> dict[int, float]:
    """Mean score of each candidate's choice over one group's queries, each left out in turn.

    One neighbour search serves every candidate: running sums over the neighbours, nearest
    first, give each k's means at once. Choices the query never scored are left out, as the
    metric leaves them out; a candidate with no scored choice is missing from the result.
    """
    n, llms = scores.shape
    if n < 2:
        return {}
    # Counts past the group's size all mean "every other query": search once, up to that.
    ks = sorted({min(k, n - 1) for k in candidates})
    index = NearestNeighbors(n_neighbors=ks[-1] + 1, metric="cosine").fit(embeddings)
    known = ~np.isnan(scores)
    values = np.where(known, scores, 0.0)
    totals = {k: 0.0 for k in ks}
    counted = dict.fromkeys(ks, 0)
    for part in _chunks(n, (ks[-1] + 1) * llms):
        nearest = index.kneighbors(embeddings[part], return_distance=False)
        # Drop each query itself (not always in column 0: equal vectors tie at distance 0).
        itself = nearest == np.arange(part.start, part.stop)[:, None]
        keep = np.argsort(itself, axis=1, kind="stable")[:, : ks[-1]]
        others = np.take_along_axis(nearest, keep, axis=1)  # (rows, K)
        sums = np.cumsum(values[others], axis=1)  # (rows, K, T)
        counts = np.cumsum(known[others], axis=1)
        own = scores[part]
        for k in ks:
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = sums[:, k - 1] / counts[:, k - 1]
            predicted = np.where(counts[:, k - 1] > 0, mean, -np.inf)  # unscored: never chosen
            reward = own[np.arange(len(own)), predicted.argmax(axis=1)]
            scored = ~np.isnan(reward)
            totals[k] += float(reward[scored].sum())
            counted[k] += int(scored.sum())
    return {
        k: totals[min(k, n - 1)] / counted[min(k, n - 1)]
        for k in candidates
        if counted[min(k, n - 1)]
    }


def _counts_per_group(neighbours: Neighbours, labels: np.ndarray) -> dict[Hashable, int]:
    """``{label: k}`` for every label, from one count or a mapping; bad counts named."""
    if isinstance(neighbours, Mapping):
        keys = [label.item() if isinstance(label, np.generic) else label for label in labels]
        missing = [key for key in keys if key not in neighbours]
        if missing:
            raise ConfigError(f"smoothing_neighbours: no count for groups {missing}")
        counts = {label: neighbours[key] for label, key in zip(labels, keys, strict=True)}
    else:
        counts = dict.fromkeys(labels, neighbours)
    for k in counts.values():
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"smoothing_neighbours must be an integer >= 1, got {k!r}")
    return counts


def _chunks(rows: int, elements_per_row: int) -> Iterator[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(1, elements_per_row))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():  # an LLM no neighbour scored stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)
