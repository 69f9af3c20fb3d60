"""Query clusters for the sample-sample loss."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from core.training.clustering import cluster_queries, labels_to_ids


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated directions, 20 noisy points each, and the true blob of each point."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 8) * 5.0
    truth = np.repeat(np.arange(3), 20)
    return centres[truth] + rng.normal(scale=0.3, size=(60, 8)), truth


def test_cluster_queries_gives_the_same_labels_for_the_same_seed() -> None:
    embeddings, _ = blobs()
    noisy = embeddings + np.random.default_rng(1).normal(scale=3.0, size=embeddings.shape)
    first = cluster_queries(noisy, 5, seed=3)
    assert np.array_equal(first, cluster_queries(noisy, 5, seed=3))
    assert first.dtype == np.int64
    assert first.shape == (60,)


def test_cluster_queries_recovers_well_separated_groups() -> None:
    embeddings, truth = blobs()
    labels = cluster_queries(embeddings, 3, seed=0)
    # The same partition up to renaming: each true blob maps to exactly one label.
    assert len(set(zip(truth.tolist(), labels.tolist(), strict=True))) == 3
    assert len(set(labels.tolist())) == 3


def test_cluster_queries_clusters_by_direction_not_length() -> None:
    embeddings, truth = blobs()
    scaled = embeddings * np.where(np.arange(60) % 2 == 0, 1.0, 10.0)[:, None]
    labels = cluster_queries(scaled, 3, seed=0)
    assert len(set(zip(truth.tolist(), labels.tolist(), strict=True))) == 3


def test_cluster_queries_uses_fewer_clusters_when_there_are_fewer_distinct_queries() -> None:
    embeddings = np.repeat(np.eye(2, 4), 5, axis=0)  # two distinct points, five times each
    labels = cluster_queries(embeddings, 5, seed=0)
    assert sorted(set(labels.tolist())) == [0, 1]


@pytest.mark.parametrize("bad", [0, -2, 2.5, True])
def test_cluster_queries_rejects_a_bad_cluster_count(bad: object) -> None:
    with pytest.raises(ConfigError, match="num_clusters"):
        cluster_queries(np.eye(4), bad)  # type: ignore[arg-type]


def test_labels_to_ids_numbers_labels_in_order_of_first_appearance() -> None:
    ids = labels_to_ids(["math", "code", "math", "chat", "code"])
    assert ids.tolist() == [0, 1, 0, 2, 1]
    assert ids.dtype == np.int64


def test_labels_to_ids_accepts_integer_labels_and_renumbers_them() -> None:
    assert labels_to_ids([7, 7, 3, 9]).tolist() == [0, 0, 1, 2]
    assert labels_to_ids([]).tolist() == []
