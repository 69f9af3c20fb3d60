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
