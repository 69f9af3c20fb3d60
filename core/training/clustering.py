"""Query clusters for the sample-sample loss: k-means on the untrained encoder's embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.cluster import KMeans

from ..errors import ConfigError


def cluster_queries(embeddings: np.ndarray, num_clusters: int, *, seed: int = 0) -> np.ndarray:
    """K-means cluster ids ``(N,)`` for query embeddings ``(N, D)``, seeded.

    Embeddings are L2-normalised first, so distances follow cosine similarity, the measure
    the loss uses. With fewer distinct queries than clusters, the cluster count shrinks.
    """
    if not isinstance(num_clusters, int) or isinstance(num_clusters, bool) or num_clusters < 1:
        raise ConfigError(f"num_clusters must be an integer >= 1, got {num_clusters!r}")
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    distinct = len(np.unique(unit.round(6), axis=0))
    k = max(1, min(num_clusters, distinct))
    kmeans = KMeans(n_clusters=k, n_init=10, random_state=seed)
    return kmeans.fit_predict(unit.astype(np.float64)).astype(np.int64)


def labels_to_ids(labels: Sequence[object]) -> np.ndarray:
    """Integer ids ``(N,)`` for arbitrary labels (task names, given cluster ids)."""
    index: dict[object, int] = {}
    return np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.int64)
