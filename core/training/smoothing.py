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

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

from ..errors import ConfigError

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
    """Each query's scores replaced, LLM by LLM, by the mean of its nearest observed scores.

    For each LLM, the mean is over the ``k`` nearest queries of the query's group on which
    that LLM was scored (the query itself included when it was). A log where each query was
    answered by one or two LLMs thus gets every LLM's score imputed from ``k`` real
    observations nearby, never from a missing score counted as 0; with every score present
    this is the mean over the query's ``k`` nearest neighbours.

    Args:
        embeddings: ``(N, D)`` query vectors.
        scores: ``(N, T)`` scores, NaN where unscored (left out of the means).
        groups: ``(N,)`` labels; neighbours are looked for among queries of the same label.
        neighbours: k, for every group or per group label (as
            :attr:`NeighbourChoice.per_group`); an LLM scored on fewer than k queries of a
            group takes the mean of all of them.

    Returns:
        ``(N, T)`` smoothed scores; NaN only where no query of the group scored that LLM.
    """
    labels = np.asarray(groups)
    if labels.shape != (len(scores),) or len(embeddings) != len(scores):
        raise ValueError(
            f"smooth_scores: {len(embeddings)} embeddings, {labels.shape} groups "
            f"and {len(scores)} score rows must agree"
        )
    per_group = _counts_per_group(neighbours, np.unique(labels))
    smoothed = np.full(scores.shape, np.nan)
    for label, k in per_group.items():
        rows = np.flatnonzero(labels == label)
        for llm in range(scores.shape[1]):
            observed = rows[~np.isnan(scores[rows, llm])]  # queries that scored this LLM
            if len(observed) == 0:
                continue
            values = scores[observed, llm]  # (M,)
            if k >= len(observed):  # all of them: no search needed
                smoothed[rows, llm] = values.mean()
                continue
            index = NearestNeighbors(n_neighbors=k, metric="cosine").fit(embeddings[observed])
            for part in _chunks(len(rows), k):
                nearest = index.kneighbors(embeddings[rows[part]], return_distance=False)
                smoothed[rows[part], llm] = values[nearest].mean(axis=1)  # (n, k) -> (n,)
    return smoothed


def choose_neighbours(
    embeddings: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    candidates: tuple[int, ...],
) -> NeighbourChoice:
    """Per group, the neighbour count whose neighbourhoods best predict each query's best LLM.

    Leave-one-out over the training queries themselves: for each candidate k, each query's
    LLMs are ranked by their mean over the k nearest other queries of its group that scored
    them (as :func:`smooth_scores` averages), and the query scores the top-ranked LLM's own
    score. No training, and every query counts, so the choice is far steadier than one made
    on a small validation split. Of the counts the estimates cannot tell apart, the widest
    is taken (the one-standard-error rule; see :func:`_widest_within_one_standard_error`).
    A group of one query has nothing to learn from and keeps the smallest candidate.

    Returns:
        The chosen k of each group and every candidate's mean score.
    """
    labels = np.asarray(groups)
    per_group: dict[Hashable, int] = {}
    accuracy: dict[Hashable, dict[int, float]] = {}
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        key = label.item() if isinstance(label, np.generic) else label
        results = _leave_one_out(embeddings[rows], scores[rows], candidates)
        per_group[key] = _widest_within_one_standard_error(results, candidates)
        accuracy[key] = {k: mean for k, (mean, _) in results.items()}
    return NeighbourChoice(per_group, accuracy)


def _leave_one_out(
    embeddings: np.ndarray, scores: np.ndarray, candidates: tuple[int, ...]
) -> dict[int, tuple[float, float]]:
    """Mean score of each candidate's choice over one group's queries, each left out in turn,
    and its standard error.

    One neighbour search per LLM serves every candidate: running sums over the queries that
    scored it, nearest first, give each k's means at once. Choices the query never scored
    are left out, as the metric leaves them out; a candidate with no scored choice is
    missing from the result.
    """
    n, llms = scores.shape
    if n < 2:
        return {}
    # Counts past the group's size all mean "every other query": search once, up to that.
    ks = sorted({min(k, n - 1) for k in candidates})
    known = ~np.isnan(scores)
    totals = dict.fromkeys(ks, 0.0)
    squares = dict.fromkeys(ks, 0.0)
    counted = dict.fromkeys(ks, 0)
    for part in _chunks(n, (ks[-1] + 1) * llms):
        sums = np.zeros((part.stop - part.start, len(ks), llms))  # (rows, K, T)
        counts = np.zeros_like(sums)
        for llm in range(llms):
            observed = np.flatnonzero(known[:, llm])
            if len(observed) == 0:
                continue
            reach = min(ks[-1] + 1, len(observed))
            index = NearestNeighbors(n_neighbors=reach, metric="cosine").fit(embeddings[observed])
            nearest = observed[index.kneighbors(embeddings[part], return_distance=False)]
            # Each query itself (when it scored this LLM) moved last and not counted; not
            # always in column 0, as equal vectors tie at distance 0.
            itself = nearest == np.arange(part.start, part.stop)[:, None]  # (rows, reach)
            order = np.argsort(itself, axis=1, kind="stable")
            others = np.take_along_axis(nearest, order, axis=1)
            valid = ~np.take_along_axis(itself, order, axis=1)
            running = np.cumsum(np.where(valid, scores[others, llm], 0.0), axis=1)
            seen = np.cumsum(valid, axis=1)
            columns = [min(k, reach) - 1 for k in ks]
            sums[:, :, llm] = running[:, columns]
            counts[:, :, llm] = seen[:, columns]
        own = scores[part]
        for j, k in enumerate(ks):
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = sums[:, j] / counts[:, j]
            predicted = np.where(counts[:, j] > 0, mean, -np.inf)  # unscored: never chosen
            reward = own[np.arange(len(own)), predicted.argmax(axis=1)]
            scored = ~np.isnan(reward)
            totals[k] += float(reward[scored].sum())
            squares[k] += float((reward[scored] ** 2).sum())
            counted[k] += int(scored.sum())
    results: dict[int, tuple[float, float]] = {}
    for k in candidates:
        c = min(k, n - 1)
        if counted[c]:
            average = totals[c] / counted[c]
            variance = max(squares[c] / counted[c] - average**2, 0.0)
            results[k] = (average, float(np.sqrt(variance / counted[c])))
    return results


def _widest_within_one_standard_error(
    results: Mapping[int, tuple[float, float]], candidates: tuple[int, ...]
) -> int:
    """The largest count whose mean is within one standard error of the best mean.

    The one-standard-error rule of cross-validation: with most scores missing, few queries
    count towards each estimate, and the best of eight noisy estimates is most often a small
    count that fitted the noise; among counts the data cannot tell apart, the smoothest wins.
    With no estimate at all, the smallest candidate.
    """
    if not results:
        return min(candidates)
    best = max(results, key=lambda k: (results[k][0], -k))
    mean, error = results[best]
    return max(k for k, (value, _) in results.items() if value >= mean - error)


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
