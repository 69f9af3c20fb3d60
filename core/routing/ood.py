"""How far a query is from the training data, and backing off when it is far.

A router is only as good as the queries it was trained on. At fit time :mod:`core.training.trainer`
keeps a compact summary of the training queries' router vectors (a seeded sample of at most
``MAX_REFERENCE`` of them, unit length) and calibrates it on training queries the model never
trained on (its validation split):

- similarity of a query: the mean cosine similarity of its router vector to its
  ``neighbours`` nearest reference vectors;
- ``in_distribution`` score: the share of held-out training queries whose similarity is at
  most the query's (the empirical CDF, at mid-rank: ``(rank + 0.5) / (M + 1)`` for M of them).
  A query as typical as the training data scores about uniformly in [0, 1]; one less similar
  than every held-out training query scores ``0.5 / (M + 1)``, about 0.001 on the paper's data.

The back-off rule, with threshold ``t = ood_backoff`` in [0, 1]::

    alpha = clip(1 - in_distribution / t, 0, 1)         (0 everywhere when t = 0)
    p'(llm | x) = (1 - alpha) * p(llm | x) + alpha * [llm == fallback]

where the fallback is the candidate LLM with the best accuracy over all training data (task
by task, then averaged over tasks). A query scoring at or above ``t`` routes as before; one
far from every training query goes to the fallback; in between the two are mixed linearly.

This module imports numpy and safetensors only: routers without torch use it too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from ..errors import ConfigError, DataError, RouterFileError

OOD_FILE = "ood.safetensors"
# Training queries kept as the reference: enough to cover every task of the paper's data
# (5,935 queries) densely, small enough to score a batch in one matrix product (~6 MB).
MAX_REFERENCE = 4096
# Held-out similarities kept for the calibration: the score's resolution is 1 / this.
MAX_CALIBRATION = 2048
# Nearest reference vectors averaged into the similarity (as k-NN out-of-distribution
# detection does; one neighbour alone is noisy where a task repeats near-duplicates).
DEFAULT_NEIGHBOURS = 10
# Back-off threshold a router starts with, chosen by the leave-one-task-out measure of
# ``python -m benchmarks.tuning`` (benchmarks/results/tuning.md): on RouterBench's tasks any
# threshold from 0.02 up turns a 3-point loss against the best single LLM into a tie; on the
# paper's, 0.05 adds 0.4 points; the in-task CV moves by less than the folds do (-0.08).
DEFAULT_OOD_BACKOFF = 0.05
# Share of the training queries held out for the calibration when fit has no validation split.
HELD_OUT_FRACTION = 0.1


@dataclass(frozen=True)
class QueryDistribution:
    """A summary of the training queries' router vectors and its calibration.

    Attributes:
        reference: ``(R, D)`` unit router vectors of (a sample of) the training queries.
        calibration: ``(M,)`` sorted similarities of held-out training queries.
        fallback: the LLMs, best first by accuracy over all training data; the back-off
            target is the first of them a call may route to.
        neighbours: nearest reference vectors averaged into a similarity.
    """

    reference: np.ndarray
    calibration: np.ndarray
    fallback: list[str]
    neighbours: int = DEFAULT_NEIGHBOURS

    def __post_init__(self) -> None:
        if self.reference.ndim != 2 or len(self.reference) == 0:
            raise DataError(
                f"reference must be a non-empty (R, D) array, got {self.reference.shape}"
            )
        if self.calibration.ndim != 1 or len(self.calibration) == 0:
            raise DataError(
                f"calibration must be a non-empty (M,) array, got {self.calibration.shape}"
            )
        if not isinstance(self.neighbours, int) or self.neighbours < 1:
            raise ConfigError(f"neighbours must be an integer >= 1, got {self.neighbours!r}")
        if not self.fallback:
            raise DataError("fallback must name at least one LLM")

    @classmethod
    def from_vectors(
        cls,
        train: np.ndarray,
        held_out: np.ndarray | None,
        fallback: Sequence[str],
        *,
        neighbours: int = DEFAULT_NEIGHBOURS,
        seed: int = 0,
    ) -> QueryDistribution:
        """Summarise training vectors ``(N, D)``, calibrated on held-out ones ``(M, D)``.

        Without held-out vectors, ``HELD_OUT_FRACTION`` of ``train`` is held out (seeded).

        Raises:
            DataError: fewer than two vectors to summarise and calibrate on.
        """
        rng = np.random.default_rng(seed)
        train = np.asarray(train, dtype=np.float32)
        if held_out is None or len(held_out) == 0:
            if len(train) < 2:
                raise DataError(f"need at least 2 training vectors to calibrate, got {len(train)}")
            order = rng.permutation(len(train))
            cut = max(1, round(HELD_OUT_FRACTION * len(train)))
            train, held_out = train[order[cut:]], train[order[:cut]]
        if len(train) > MAX_REFERENCE:
            train = train[rng.choice(len(train), MAX_REFERENCE, replace=False)]
        held_out = np.asarray(held_out, dtype=np.float32)
        if len(held_out) > MAX_CALIBRATION:
            held_out = held_out[rng.choice(len(held_out), MAX_CALIBRATION, replace=False)]
        reference = _unit(train)
        summary = cls(reference, np.zeros(1, dtype=np.float32), list(fallback), neighbours)
        calibration = np.sort(summary.similarity(held_out)).astype(np.float32)
        return cls(reference, calibration, list(fallback), neighbours)

    def similarity(self, vectors: np.ndarray) -> np.ndarray:
        """Mean cosine similarity ``(N,)`` of each vector ``(N, D)`` to its nearest references."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.reference.shape[1]:
            raise DataError(f"vectors must be (N, {self.reference.shape[1]}), got {vectors.shape}")
        k = min(self.neighbours, len(self.reference))
        out = np.empty(len(vectors), dtype=np.float32)
        for start in range(0, len(vectors), 1024):  # bounds the (n, R) product's memory
            sims = _unit(vectors[start : start + 1024]) @ self.reference.T  # (n, R)
            nearest = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]  # (n, k)
            out[start : start + len(sims)] = nearest.mean(axis=1)
        return out

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """In-distribution scores ``(N,)`` in (0, 1): the share of held-out training queries
        at most as similar to the training data as each vector, ``(rank + 0.5) / (M + 1)``."""
        similarity = self.similarity(vectors)
        rank = np.searchsorted(self.calibration, similarity, side="right")  # (N,)
        # Mid-rank plotting position: with few held-out queries (M), a typical query still
        # falls below all of them 1 time in M + 1; it must not be taken for a far one.
        return (rank + 0.5) / (len(self.calibration) + 1)

    def fallback_among(self, names: Sequence[str]) -> str:
        """The best LLM over the training data among ``names`` (the back-off target)."""
        for name in self.fallback:
            if name in names:
                return name
        return names[0]  # an LLM the summary never ranked (cannot happen for fit's routers)

    def save(self, path: str | Path, *, backoff: float = DEFAULT_OOD_BACKOFF) -> None:
        """Write the summary (and the router's back-off threshold) to a safetensors file."""
        tensors = {
            "reference": np.ascontiguousarray(self.reference, dtype=np.float32),
            "calibration": np.ascontiguousarray(self.calibration, dtype=np.float32),
        }
        metadata = {
            "fallback": json.dumps(self.fallback),
            "neighbours": str(self.neighbours),
            "ood_backoff": repr(float(backoff)),
        }
        save_file(tensors, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> tuple[QueryDistribution, float]:
        """The summary written by :meth:`save` and the back-off threshold saved with it.

        Raises:
            RouterFileError: the file is unreadable or lacks a part.
        """
        try:
            tensors = load_file(str(path))
            with safe_open(str(path), framework="numpy") as stored:
                metadata = stored.metadata() or {}
            summary = cls(
                tensors["reference"],
                tensors["calibration"],
                list(json.loads(metadata["fallback"])),
                int(metadata["neighbours"]),
            )
            backoff = check_backoff(float(metadata.get("ood_backoff", DEFAULT_OOD_BACKOFF)))
        except (SafetensorError, OSError, KeyError, ValueError, DataError, ConfigError) as err:
            raise RouterFileError(
                f"{path}: unreadable out-of-distribution summary ({err})"
            ) from err
        return summary, backoff


def check_backoff(ood_backoff: float) -> float:
    """``ood_backoff`` as a float, checked to lie in [0, 1].

    Raises:
        ConfigError: it is not a number in [0, 1].
    """
    is_number = isinstance(ood_backoff, (int, float, np.integer, np.floating))
    # NaN fails the range check too.
    if isinstance(ood_backoff, bool) or not is_number or not 0.0 <= ood_backoff <= 1.0:
        raise ConfigError(f"ood_backoff must be a number in [0, 1], got {ood_backoff!r}")
    return float(ood_backoff)


def backoff_weight(in_distribution: np.ndarray, ood_backoff: float) -> np.ndarray:
    """alpha ``(N,)`` = clip(1 - in_distribution / ood_backoff, 0, 1); zeros when it is 0."""
    scores = np.asarray(in_distribution, dtype=np.float64)
    threshold = check_backoff(ood_backoff)
    if threshold == 0:
        return np.zeros_like(scores)
    return np.clip(1.0 - scores / threshold, 0.0, 1.0)


def back_off(
    probabilities: np.ndarray, in_distribution: np.ndarray, ood_backoff: float, target: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mix p(t | x) ``(N, C)`` with a one-hot on column ``target`` by the back-off weight.

    Returns:
        The mixed probabilities ``(N, C)`` (rows still sum to 1) and the weights ``(N,)``.
    """
    alpha = backoff_weight(in_distribution, ood_backoff)  # (N,)
    mixed = (1.0 - alpha)[:, None] * probabilities
    mixed[:, target] += alpha
    return mixed, alpha


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
