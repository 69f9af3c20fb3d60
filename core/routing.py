"""Routing, whatever computes the logits: the decision record and the shared routing logic.

``BaseRouter`` turns logits into decisions (candidates, the cost term, ranking); a backend
supplies ``logits`` and ``embed``: ``core.router.Router`` with torch and transformers, or an
exported router on ONNX Runtime. This module imports neither, so adapters and apps that only
route can import it at no cost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import RouterConfig
from .errors import ConfigError, QueryError, QueryTypeError, UnknownLLMError
from .ood import DEFAULT_OOD_BACKOFF, QueryDistribution, back_off, check_backoff

# Characters kept from the end of a query before tokenising: far more than max_length tokens
# need, and it keeps a multi-megabyte query from stalling the tokenizer.
CHARS_PER_TOKEN_BOUND = 16


@dataclass(frozen=True)
class Decision:
    """Where a query goes.

    Attributes:
        llm: the chosen LLM.
        probabilities: p(t | x) over the LLMs that were candidates for this call (after the
            out-of-distribution back-off, when one applied; see :mod:`core.ood`).
        ranking: those LLMs, best first (by probability, less the cost term when one is set);
            the order to fall back in when the chosen LLM fails.
        in_distribution: how typical of the training queries this query is, in [0, 1] (the
            share of held-out training queries less similar to the training data than it);
            None for a router saved without a training summary.
        backed_off: whether the back-off towards the best LLM over the training data changed
            the probabilities (``ood_backoff`` > 0 and ``in_distribution`` below it).
    """

    llm: str
    probabilities: dict[str, float]
    ranking: list[str] = field(default_factory=list)
    in_distribution: float | None = None
    backed_off: bool = False

    @property
    def probability(self) -> float:
        """p(chosen LLM | query)."""
        return self.probabilities[self.llm]


class BaseRouter(ABC):
    """What every router offers: ``route``, ``route_batch``, ``rank``, ``probabilities``.

    Subclasses set ``config`` and ``max_tokens`` and implement :meth:`logits` and :meth:`embed`.
    A router trained by ``core.fit`` also has ``ood``, the summary of its training queries that
    gives each decision its ``in_distribution`` score, and ``ood_backoff``, the threshold of the
    back-off rule of :mod:`core.ood` (each call may override it).
    """

    config: RouterConfig
    max_tokens: int
    ood: QueryDistribution | None = None
    ood_backoff: float = DEFAULT_OOD_BACKOFF

    @property
    def llm_names(self) -> list[str]:
        return list(self.config.llm_names)

    @abstractmethod
    def logits(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Cosine logits ``(N, T)`` for each query and LLM, in ``llm_names`` order."""

    @abstractmethod
    def embed(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """The router's query vectors ``(N, D)``."""

    def logits_and_vectors(
        self, queries: Sequence[str], *, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``(N, T)`` and router vectors ``(N, D)``; backends override it to encode once."""
        logits = self.logits(queries, batch_size=batch_size)
        return logits, self.embed(queries, batch_size=batch_size)

    def in_distribution(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """In-distribution scores ``(N,)`` in [0, 1] (see :mod:`core.ood`).

        Raises:
            ConfigError: the router has no training summary (saved before it existed).
        """
        if self.ood is None:
            raise ConfigError("this router has no training-query summary: retrain it with fit")
        return self.ood.score(self.embed(queries, batch_size=batch_size))

    def check_queries(self, queries: Sequence[object]) -> list[str]:
        """The queries, checked; each keeps its last max_tokens * CHARS_PER_TOKEN_BOUND chars."""
        if isinstance(queries, str):
            raise QueryTypeError("expected a list of queries, got a single string")
        checked = []
        limit = self.max_tokens * CHARS_PER_TOKEN_BOUND
        for i, query in enumerate(queries):
            if not isinstance(query, str):
                raise QueryTypeError(f"query {i}: expected a string, got {type(query).__name__}")
            if not query.strip():
                raise QueryError(f"query {i}: the query is empty")
            checked.append(query[-limit:])
        return checked

    def probabilities(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """p(t | x) ``(N, T)`` over all LLMs."""
        return _softmax(self.logits(queries, batch_size=batch_size))

    # ------------------------------------------------------------------ routing

    def route(
        self,
        query: str,
        *,
        cost_weight: float = 0.0,
        costs: Mapping[str, float] | None = None,
        allowed: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        ood_backoff: float | None = None,
    ) -> Decision:
        """The best LLM for one query.

        Args:
            query: the text to route on.
            cost_weight: w in argmax_t p(t|x) - w * cost_t / max cost; 0 is plain RouterDC.
            costs: dollars per call of each LLM; defaults to the prices seen in training.
            allowed: route only among these LLMs.
            exclude: never route to these (an LLM that is down).
            ood_backoff: back off towards the best LLM over the training data as the query's
                in-distribution score falls below this threshold in [0, 1] (0: never); None
                keeps the router's ``ood_backoff``. The rule is in :mod:`core.ood`.
        """
        if not isinstance(query, str):
            raise QueryTypeError(f"query: expected a string, got {type(query).__name__}")
        return self.route_batch(
            [query],
            cost_weight=cost_weight,
            costs=costs,
            allowed=allowed,
            exclude=exclude,
            ood_backoff=ood_backoff,
        )[0]

    def route_batch(
        self,
        queries: Iterable[str],
        *,
        cost_weight: float = 0.0,
        costs: Mapping[str, float] | None = None,
        allowed: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        ood_backoff: float | None = None,
        batch_size: int = 64,
    ) -> list[Decision]:
        """Route many queries with batched encoder passes; same options as :meth:`route`."""
        if isinstance(queries, str):
            raise QueryTypeError("expected a list of queries, got a single string")
        queries = list(queries)
        candidates = self.candidates(allowed=allowed, exclude=exclude)
        penalty = self.cost_penalty(candidates, cost_weight, costs)
        threshold = self._backoff_threshold(ood_backoff)
        if len(queries) == 0:
            return []
        names = [self.config.llm_names[c] for c in candidates]
        scores: np.ndarray | None = None
        if self.ood is None:
            logits = self.logits(queries, batch_size=batch_size)
        else:
            logits, vectors = self.logits_and_vectors(queries, batch_size=batch_size)
            scores = self.ood.score(vectors)  # (N,)
        probs = _softmax(logits[:, candidates])  # (N, C)
        alpha = np.zeros(len(queries))
        if scores is not None and self.ood is not None:
            target = names.index(self.ood.fallback_among(names))
            probs, alpha = back_off(probs, scores, threshold, target)
        utility = probs - penalty[None, :]
        decisions = []
        for i, (row_probs, row_utility) in enumerate(zip(probs, utility, strict=True)):
            order = np.argsort(-row_utility, kind="stable")
            ranking = [names[j] for j in order]
            decisions.append(
                Decision(
                    llm=ranking[0],
                    probabilities={n: float(p) for n, p in zip(names, row_probs, strict=True)},
                    ranking=ranking,
                    in_distribution=None if scores is None else float(scores[i]),
                    backed_off=bool(alpha[i] > 0),
                )
            )
        return decisions

    def _backoff_threshold(self, ood_backoff: float | None) -> float:
        """The call's back-off threshold, checked; a positive one needs a training summary."""
        if ood_backoff is None:
            return check_backoff(self.ood_backoff)
        threshold = check_backoff(ood_backoff)
        if threshold > 0 and self.ood is None:
            raise ConfigError(
                f"ood_backoff={ood_backoff!r} needs the router's training-query summary, and this "
                "router has none (saved before routerdc had it): retrain it with fit"
            )
        return threshold

    def rank(self, query: str, **options: Any) -> list[tuple[str, float]]:
        """All candidate LLMs for ``query``, best first, with their probabilities."""
        decision = self.route(query, **options)
        return [(name, decision.probabilities[name]) for name in decision.ranking]

    def candidates(
        self, *, allowed: Sequence[str] | None = None, exclude: Sequence[str] | None = None
    ) -> list[int]:
        """Column indices of the LLMs a call may route to."""
        names = self.config.llm_names
        for option, given in (("allowed", allowed), ("exclude", exclude)):
            if isinstance(given, str):
                raise QueryTypeError(f"{option}: expected a list of LLM names, got a string")
            unknown = [n for n in given or () if n not in names]
            if unknown:
                raise UnknownLLMError(f"{option}: unknown LLMs {unknown}; the router knows {names}")
        keep = set(allowed) if allowed is not None else set(names)
        keep -= set(exclude or ())
        if not keep:
            raise ConfigError(f"no LLM left to route to (allowed={allowed!r}, exclude={exclude!r})")
        return [i for i, n in enumerate(names) if n in keep]

    def cost_penalty(
        self, candidates: list[int], cost_weight: float, costs: Mapping[str, float] | None
    ) -> np.ndarray:
        """The cost term over the candidates, with the prices seen in training by default."""
        names = [self.config.llm_names[c] for c in candidates]
        return cost_penalty(names, cost_weight, costs if costs is not None else self.config.costs)


def length_sorted_batches(queries: Sequence[str], batch_size: int) -> list[list[int]]:
    """Indices of ``queries`` in batches of similar length, so each batch pads little."""
    order = sorted(range(len(queries)), key=lambda i: len(queries[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def cost_penalty(
    llm_names: Sequence[str], cost_weight: float, costs: Mapping[str, float] | None
) -> np.ndarray:
    """The routing-time cost term ``w * cost_t / max_t cost_t`` for each of ``llm_names``.

    A router picks ``argmax_t utility_t - penalty_t``; dividing by the largest price makes
    ``w`` mean the same for any price list (in dollars, cents or per million tokens).

    Args:
        llm_names: the LLMs, in column order.
        cost_weight: w >= 0; 0 gives zeros whatever the prices.
        costs: dollars per call of each LLM; may be None when ``cost_weight`` is 0.

    Raises:
        ConfigError: w is negative or not finite, a price is, or w > 0 and no prices.
        UnknownLLMError: an LLM has no price.
    """
    if not _is_number(cost_weight) or not np.isfinite(cost_weight) or cost_weight < 0:
        raise ConfigError(f"cost_weight must be a finite number >= 0, got {cost_weight!r}")
    if cost_weight == 0:
        return np.zeros(len(llm_names))
    if costs is None:
        raise ConfigError(
            "cost_weight is set but no prices are known: pass costs={llm: dollars} "
            "or train on data with costs"
        )
    missing = [n for n in llm_names if n not in costs]
    if missing:
        raise UnknownLLMError(f"costs: no price for LLMs {missing}")
    if not all(_is_number(costs[n]) for n in llm_names):
        raise ConfigError(f"costs must be finite numbers >= 0, got {dict(costs)}")
    values = np.array([float(costs[n]) for n in llm_names])
    if not np.isfinite(values).all() or (values < 0).any():
        given = dict(zip(llm_names, values.tolist(), strict=True))
        raise ConfigError(f"costs must be finite numbers >= 0, got {given}")
    top = values.max()
    return cost_weight * values / top if top > 0 else np.zeros(len(llm_names))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
