"""Neighbour-smoothed training scores: what the router can learn about *kinds* of queries.

One query's scores say which LLMs happened to answer it right; on multiple-choice tasks, where
most LLMs are right most of the time, that is mostly noise. Averaging each query's scores over
its ``k`` nearest training queries (cosine on the untrained encoder's outputs), within its task
(or k-means cluster), keeps what is true of a neighbourhood and drops what is true of one query.
Cross-validated on the paper's train files this is the largest single gain over the paper's
recipe (benchmarks/results/tuning.md).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.neighbors import NearestNeighbors

from core.errors import ConfigError

# Rows smoothed at a time: bounds the (rows, k, T) gather in memory.
_CHUNK = 2048


def smooth_scores(
    embeddings: np.ndarray, scores: np.ndarray, groups: np.ndarray, neighbours: int
) -> np.ndarray:
    """Each query's scores replaced by their mean over its nearest neighbours in its group.

    Args:
        embeddings: ``(N, D)`` query vectors.
        scores: ``(N, T)`` scores, NaN where unscored (left out of the means).
        groups: ``(N,)`` labels; neighbours are looked for among queries of the same label.
        neighbours: k, the query itself included; a group smaller than k uses all its queries.

    Returns:
        ``(N, T)`` smoothed scores; NaN only where no neighbour scored that LLM.
    """
    if not isinstance(neighbours, int) or isinstance(neighbours, bool) or neighbours < 1:
        raise ConfigError(f"smoothing_neighbours must be an integer >= 1, got {neighbours!r}")
    labels = np.asarray(groups)
    if labels.shape != (len(scores),) or len(embeddings) != len(scores):
        raise ValueError(
            f"smooth_scores: {len(embeddings)} embeddings, {labels.shape} groups "
            f"and {len(scores)} score rows must agree"
        )
    smoothed = np.empty(scores.shape, dtype=np.float64)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        index = NearestNeighbors(n_neighbors=min(neighbours, len(rows)), metric="cosine")
        index.fit(embeddings[rows])
        own = scores[rows]
        for start in range(0, len(rows), _CHUNK):
            part = slice(start, start + _CHUNK)
            nearest = index.kneighbors(embeddings[rows[part]], return_distance=False)  # (n, k)
            with warnings.catch_warnings():  # an LLM no neighbour scored stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                smoothed[rows[part]] = np.nanmean(own[nearest], axis=1)
    return smoothed


def choose_neighbours(
    embeddings: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    candidates: tuple[int, ...],
) -> tuple[int, dict[int, float]]:
    """The neighbour count whose neighbourhoods best predict each query's best LLM.

    Leave-one-out over the training queries themselves: for each candidate k, each query's
    LLMs are ranked by their mean score over its k nearest other queries of its group, and the
    query scores the top-ranked LLM's own score. No training, and every query counts, so the
    choice is far steadier than one made on a small validation split.

    Returns:
        The best k (the smallest on ties) and the mean score per candidate, averaged per group
        first (as accuracy is averaged over tasks).
    """
    labels = np.asarray(groups)
    largest = max(candidates)
    per_group: dict[int, list[float]] = {k: [] for k in candidates}
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) < 2:
            continue
        index = NearestNeighbors(n_neighbors=min(largest + 1, len(rows)), metric="cosine")
        index.fit(embeddings[rows])
        nearest = index.kneighbors(embeddings[rows], return_distance=False)[:, 1:]  # not itself
        own = scores[rows]
        for k in candidates:
            with warnings.catch_warnings():  # an LLM no neighbour scored: NaN, never chosen
                warnings.simplefilter("ignore", RuntimeWarning)
                predicted = np.nanmean(own[nearest[:, :k]], axis=1)  # (n, T)
            chosen = np.nan_to_num(predicted, nan=-np.inf).argmax(axis=1)
            reward = own[np.arange(len(rows)), chosen]  # NaN where the query left it unscored
            if not np.isnan(reward).all():  # as the metric: unscored choices are left out
                per_group[k].append(float(np.nanmean(reward)))
    results = {k: float(np.mean(v)) if v else 0.0 for k, v in per_group.items()}
    best = max(candidates, key=lambda k: (results[k], -k))
    return best, results
