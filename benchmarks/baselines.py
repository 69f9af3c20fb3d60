"""Comparison routers for the benchmarks (not product): kNN, linear and ZOOTER-style.

Each works on fixed query embeddings ``(N, D)`` and shares one interface, so a benchmark can
treat them alike and apply the same routing rule as RouterDC,
``argmax_t utility_t - w * cost_t / max cost``:

    router = KNNRouter().fit(train_embeddings, train_scores, val_embeddings, val_scores)
    utilities = router.utilities(test_embeddings)  # (N, T), higher is better

Scores are ``(N, T)`` with NaN where an LLM was not scored. Hyper-parameters are chosen on
the validation arrays only, by routing accuracy (:func:`core.training.metrics.accuracy`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from core.training.metrics import accuracy

KNN_NEIGHBOURS = (1, 3, 5, 10, 20, 40, 80)
LINEAR_C = (0.01, 0.1, 1.0, 10.0)  # larger C fits worse on validation and slowly
ZOOTER_TEMPERATURES = (0.1, 0.3, 1.0)


class BaselineRouter(Protocol):
    """What every comparison router offers."""

    name: str

    def fit(
        self,
        train_embeddings: np.ndarray,
        train_scores: np.ndarray,
        val_embeddings: np.ndarray,
        val_scores: np.ndarray,
    ) -> BaselineRouter: ...

    def utilities(self, embeddings: np.ndarray) -> np.ndarray: ...


def validation_accuracy(utilities: np.ndarray, scores: np.ndarray) -> float:
    """Routing accuracy of ``argmax_t utility_t`` (no cost term) on scored queries."""
    return accuracy(scores, utilities.argmax(axis=1))


# How a setting is judged on validation: utilities (N, T) and scores (N, T) -> higher is better.
Criterion = Callable[[np.ndarray, np.ndarray], float]


def _pick(results: dict[float, float], what: str) -> tuple[float, dict[str, float]]:
    """The setting with the best validation criterion (the first on ties), and the table."""
    best = max(results, key=lambda setting: results[setting])
    return best, {f"{what}={setting:g}": value for setting, value in results.items()}


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: for a layer this small, more threads only wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _normalise(embeddings: np.ndarray) -> np.ndarray:
    vectors = np.asarray(embeddings, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class KNNRouter:
    """Cosine kNN: each LLM's utility is its mean score over the ``k`` nearest training queries.

    Neighbours where an LLM is unscored are left out of its mean; an LLM unscored on all of
    them gets its mean over the whole training set.
    """

    name = "knn"

    def __init__(
        self, neighbours: Sequence[int] = KNN_NEIGHBOURS, *, criterion: Criterion | None = None
    ) -> None:
        self.neighbours = tuple(neighbours)
        self.criterion = criterion or validation_accuracy
        self.k: int | None = None
        self.validation: dict[str, float] = {}

    def fit(
        self,
        train_embeddings: np.ndarray,
        train_scores: np.ndarray,
        val_embeddings: np.ndarray,
        val_scores: np.ndarray,
    ) -> KNNRouter:
        self._keys = _normalise(train_embeddings)  # (M, D)
        self._scores = np.asarray(train_scores, dtype=np.float64)  # (M, T)
        with np.errstate(invalid="ignore"):
            self._fallback = np.nanmean(self._scores, axis=0)  # (T,)
        self._fallback = np.nan_to_num(self._fallback)
        order = self._neighbour_order(val_embeddings)
        results: dict[float, float] = {
            k: self.criterion(self._mean_scores(order, k), val_scores)
            for k in self.neighbours
            if k <= len(self._keys)
        }
        best, self.validation = _pick(results, "k")
        self.k = int(best)
        return self

    def utilities(self, embeddings: np.ndarray) -> np.ndarray:
        if self.k is None:
            raise RuntimeError("KNNRouter: call fit first")
        return self._mean_scores(self._neighbour_order(embeddings), self.k)

    def _neighbour_order(self, embeddings: np.ndarray) -> np.ndarray:
        """Training rows by decreasing cosine similarity ``(N, max k)``."""
        similarity = _normalise(embeddings) @ self._keys.T  # (N, M)
        width = min(max(self.neighbours), len(self._keys))
        return np.argsort(-similarity, axis=1, kind="stable")[:, :width]

    def _mean_scores(self, order: np.ndarray, k: int) -> np.ndarray:
        neighbour_scores = self._scores[order[:, :k]]  # (N, k, T)
        known = ~np.isnan(neighbour_scores)
        total = np.where(known, neighbour_scores, 0.0).sum(axis=1)
        count = known.sum(axis=1)
        return np.where(count > 0, total / np.maximum(count, 1), self._fallback[None, :])


def best_llm_labels(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, labels and weights for learning "the best LLM per query".

    A query where several LLMs tie for the best score gives one row per tied LLM, each of
    weight ``1 / ties``; a query where every scored LLM ties says nothing and is left out.
    """
    filled = np.where(np.isnan(scores), -np.inf, scores)  # (N, T)
    best = filled.max(axis=1, keepdims=True)
    is_best = filled == best
    informative = ~(is_best | np.isnan(scores)).all(axis=1)
    rows, labels = np.nonzero(is_best & informative[:, None])
    weights = 1.0 / is_best.sum(axis=1)[rows]
    return rows, labels, weights


class LinearRouter:
    """Multinomial logistic regression on the best LLM per query (the paper's CosineClassifier).

    Embeddings are L2-normalised (a cosine classifier); the inverse regularisation ``C`` is
    chosen on validation. Utilities are the predicted probabilities of each LLM being best.
    """

    name = "linear"

    def __init__(
        self,
        inverse_regularisation: Sequence[float] = LINEAR_C,
        *,
        criterion: Criterion | None = None,
    ) -> None:
        self.grid = tuple(inverse_regularisation)
        self.criterion = criterion or validation_accuracy
        self.C: float | None = None
        self.validation: dict[str, float] = {}

    def fit(
        self,
        train_embeddings: np.ndarray,
        train_scores: np.ndarray,
        val_embeddings: np.ndarray,
        val_scores: np.ndarray,
    ) -> LinearRouter:
        rows, labels, weights = best_llm_labels(np.asarray(train_scores, dtype=np.float64))
        if len(np.unique(labels)) < 2:
            raise ValueError("LinearRouter: the training scores name fewer than two best LLMs")
        self._num_llms = train_scores.shape[1]
        features = _normalise(train_embeddings)[rows]
        models = {c: self._train(features, labels, weights, c) for c in self.grid}
        results = {}
        for c, model in models.items():
            self._model = model
            results[c] = self.criterion(self.utilities(val_embeddings), val_scores)
        self.C, self.validation = _pick(results, "C")
        self._model = models[self.C]
        return self

    @staticmethod
    def _train(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, c: float) -> Any:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=c, max_iter=5000)
        return model.fit(features, labels, sample_weight=weights)

    def utilities(self, embeddings: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_model"):
            raise RuntimeError("LinearRouter: call fit first")
        out = np.zeros((len(embeddings), self._num_llms))
        # An LLM that was never the best has no class: probability 0.
        out[:, self._model.classes_] = self._model.predict_proba(_normalise(embeddings))
        return out


class ZooterRouter:
    """ZOOTER-style: a linear softmax layer distilled from each query's normalised scores.

    The target is ``softmax(scores / temperature)`` over the scored LLMs (unscored ones get 0),
    the loss KL(target || prediction), trained full-batch with Adam for a fixed number of
    epochs; the temperature is chosen on validation.
    """

    name = "zooter"

    def __init__(
        self,
        temperatures: Sequence[float] = ZOOTER_TEMPERATURES,
        *,
        epochs: int = 300,
        learning_rate: float = 1e-2,
        weight_decay: float = 1e-4,
        seed: int = 0,
        criterion: Criterion | None = None,
    ) -> None:
        self.temperatures = tuple(temperatures)
        self.criterion = criterion or validation_accuracy
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.seed = seed
        self.temperature: float | None = None
        self.validation: dict[str, float] = {}

    def fit(
        self,
        train_embeddings: np.ndarray,
        train_scores: np.ndarray,
        val_embeddings: np.ndarray,
        val_scores: np.ndarray,
    ) -> ZooterRouter:
        features = torch.tensor(_normalise(train_embeddings), dtype=torch.float32)
        scores = torch.tensor(np.asarray(train_scores, dtype=np.float64), dtype=torch.float32)
        with _one_thread():
            layers = {t: self._train(features, scores, t) for t in self.temperatures}
        results = {}
        for t, layer in layers.items():
            self._layer = layer
            results[t] = self.criterion(self.utilities(val_embeddings), val_scores)
        self.temperature, self.validation = _pick(results, "temperature")
        self._layer = layers[self.temperature]
        return self

    def _train(
        self, features: torch.Tensor, scores: torch.Tensor, temperature: float
    ) -> torch.nn.Linear:
        generator = torch.Generator().manual_seed(self.seed)
        layer = torch.nn.Linear(features.shape[1], scores.shape[1])
        with torch.no_grad():
            bound = 1 / features.shape[1] ** 0.5
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.zero_()
        unscored = torch.isnan(scores)
        logits = scores.nan_to_num(0.0).masked_fill(unscored, -torch.inf) / temperature
        target = torch.softmax(logits, dim=1)  # (M, T), 0 where unscored
        optimizer = torch.optim.Adam(
            layer.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        for _ in range(self.epochs):
            log_probs = F.log_softmax(layer(features), dim=1)  # (M, T)
            loss = F.kl_div(log_probs, target, reduction="batchmean")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return layer.eval()

    @torch.inference_mode()
    def utilities(self, embeddings: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_layer"):
            raise RuntimeError("ZooterRouter: call fit first")
        features = torch.tensor(_normalise(embeddings), dtype=torch.float32)
        return torch.softmax(self._layer(features), dim=1).double().numpy()


BASELINES: dict[str, type[KNNRouter] | type[LinearRouter] | type[ZooterRouter]] = {
    "knn": KNNRouter,
    "linear": LinearRouter,
    "zooter": ZooterRouter,
}
