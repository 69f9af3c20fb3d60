"""Routing, whatever computes the logits: the decision record and the shared routing logic.

``BaseRouter`` turns logits into decisions (candidates, the cost term, ranking); a backend
supplies ``logits`` and ``embed``: ``core.routing.router.Router`` with torch and transformers, or an
exported router on ONNX Runtime. This module imports neither, so adapters and apps that only
route can import it at no cost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import RouterConfig
from ..errors import ConfigError, QueryError, QueryTypeError, RoutingError, UnknownLLMError
from .ood import DEFAULT_OOD_BACKOFF, QueryDistribution, back_off, check_backoff

if TYPE_CHECKING:
    from ..data.log import RoutingLog

# Characters kept from the end of a query before tokenising: far more than max_length tokens
# need, and it keeps a multi-megabyte query from stalling the tokenizer.
CHARS_PER_TOKEN_BOUND = 16


@dataclass(frozen=True)
class Decision:
    """Where a query goes.

    Attributes:
        llm: the chosen LLM.
        probabilities: p(t | x) over the LLMs that were candidates for this call (after the
            out-of-distribution back-off, when one applied; see :mod:`core.routing.ood`).
        ranking: those LLMs, best first (by probability, less the cost term when one is set);
            the order to fall back in when the chosen LLM fails.
        explored: True when exploration chose ``llm`` instead of the top of the ranking.
        propensity: the probability with which the routing rule picked ``llm`` (1 without
            exploration); None when the decision was not made by a stated rule.
        run_id: the call's id in the routing log it was written to (for ``record_outcome``);
            None when it was not logged.
        in_distribution: how typical of the training queries this query is, in [0, 1] (the
            share of held-out training queries less similar to the training data than it);
            None for a router saved without a training summary.
        backed_off: whether the back-off towards the best LLM over the training data changed
            the probabilities (``ood_backoff`` > 0 and ``in_distribution`` below it).
    """

    llm: str
    probabilities: dict[str, float]
    ranking: list[str] = field(default_factory=list)
    explored: bool = False
    propensity: float | None = None
    run_id: str | None = None
    in_distribution: float | None = None
    backed_off: bool = False

    @property
    def probability(self) -> float:
        """p(chosen LLM | query)."""
        return self.probabilities[self.llm]


class BaseRouter(ABC):
    """What every router offers: ``route``, ``route_batch``, ``rank``, ``probabilities``.

    Subclasses set ``config`` and ``max_tokens`` and implement :meth:`logits` and :meth:`embed`,
    batching with :func:`length_sorted_batches` (which checks ``batch_size``). A router trained
    by ``core.fit`` also has ``ood``, the summary of its training queries that gives each
    decision its ``in_distribution`` score, and ``ood_backoff``, the threshold of the back-off
    rule of :mod:`core.routing.ood` (each call may override it).
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

    def pooled(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """The encoder's pooled outputs ``(N, D)`` (what a routing log keeps instead of text).

        Raises:
            NotImplementedError: this kind of router cannot give them.
        """
        raise NotImplementedError(f"{type(self).__name__} does not expose its encoder's vectors")

    @property
    def encoding_key(self) -> tuple[str, str, int]:
        """(encoder, pooling, max tokens): which vectors :meth:`pooled` gives."""
        return (self.config.encoder, self.config.pooling, self.max_tokens)

    def logits_and_vectors(
        self, queries: Sequence[str], *, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``(N, T)`` and router vectors ``(N, D)``; backends override it to encode once."""
        logits = self.logits(queries, batch_size=batch_size)
        return logits, self.embed(queries, batch_size=batch_size)

    def in_distribution(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """In-distribution scores ``(N,)`` in [0, 1] (see :mod:`core.routing.ood`).

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
        """p(t | x) ``(N, T)`` over all LLMs.

        Raises:
            RoutingError: the logits of a query are NaN or infinite.
        """
        check_batch_size(batch_size)
        return _softmax(_finite(self.logits(queries, batch_size=batch_size)))

    # ------------------------------------------------------------------ routing

    def route(
        self,
        query: str,
        *,
        cost_weight: float = 0.0,
        costs: Mapping[str, float] | None = None,
        allowed: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        explore: float = 0.0,
        rng: np.random.Generator | None = None,
        log: RoutingLog | None = None,
        run_id: str | None = None,
        ood_backoff: float | None = None,
    ) -> Decision:
        """The best LLM for one query.

        Args:
            query: the text to route on.
            cost_weight: w in argmax_t p(t|x) - w * cost_t / max cost; 0 is plain RouterDC.
            costs: dollars per call of each LLM; defaults to the prices seen in training.
            allowed: route only among these LLMs.
            exclude: never route to these (an LLM that is down).
            explore: epsilon of :func:`explore`: the share of calls sent to another allowed
                LLM, so a routing log holds evidence about every LLM; 0 (the default) never.
            rng: the random source of exploration (a fresh unseeded one by default).
            log: write the decision to this :class:`~core.data.log.RoutingLog`.
            run_id: the call's id in the log (a LangChain run id, ...); a new uuid4 if None.
            ood_backoff: back off towards the best LLM over the training data as the query's
                in-distribution score falls below this threshold in [0, 1] (0: never); None
                keeps the router's ``ood_backoff``. The rule is in :mod:`core.routing.ood`.
        """
        if not isinstance(query, str):
            raise QueryTypeError(f"query: expected a string, got {type(query).__name__}")
        return self.route_batch(
            [query],
            cost_weight=cost_weight,
            costs=costs,
            allowed=allowed,
            exclude=exclude,
            explore=explore,
            rng=rng,
            log=log,
            run_ids=None if run_id is None else [run_id],
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
        explore: float = 0.0,
        rng: np.random.Generator | None = None,
        log: RoutingLog | None = None,
        run_ids: Sequence[str] | None = None,
    ) -> list[Decision]:
        """Route many queries with batched encoder passes; same options as :meth:`route`.

        With ``log``, every decision is written in one transaction (``run_ids``: one per query,
        new uuid4s if None).

        Raises:
            RoutingError: the logits of a query are NaN or infinite (a broken router): no
                decision is made from them.
        """
        if isinstance(queries, str):
            raise QueryTypeError("expected a list of queries, got a single string")
        check_batch_size(batch_size)
        queries = list(queries)
        candidates = self.candidates(allowed=allowed, exclude=exclude)
        penalty = self.cost_penalty(candidates, cost_weight, costs)
        check_epsilon(explore)
        threshold = self._backoff_threshold(ood_backoff)
        if run_ids is not None and len(run_ids) != len(queries):
            raise QueryError(f"run_ids: {len(run_ids)} ids for {len(queries)} queries")
        if len(queries) == 0:
            return []
        names = [self.config.llm_names[c] for c in candidates]
        scores: np.ndarray | None = None
        if self.ood is None:
            logits = _finite(self.logits(queries, batch_size=batch_size))
        else:
            logits, vectors = self.logits_and_vectors(queries, batch_size=batch_size)
            logits = _finite(logits)
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
                    propensity=1.0,
                    in_distribution=None if scores is None else float(scores[i]),
                    backed_off=bool(alpha[i] > 0),
                )
            )
        if explore > 0:
            generator = rng if rng is not None else np.random.default_rng()
            decisions = [_explore(d, explore, generator) for d in decisions]
        if log is not None:
            ids = log.record_batch(decisions, queries=queries, run_ids=run_ids, router=self)
            decisions = [replace(d, run_id=i) for d, i in zip(decisions, ids, strict=True)]
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


def check_batch_size(batch_size: object) -> None:
    """Raise ConfigError unless ``batch_size`` is an integer >= 1."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def explore(decision: Decision, epsilon: float, rng: np.random.Generator) -> Decision:
    """Epsilon-greedy exploration over a decision's candidates, with the propensity recorded.

    The rule: with probability ``1 - epsilon`` keep the top of the ranking; with probability
    ``epsilon`` pick uniformly among the *other* C - 1 candidates (C = ``len(ranking)``). So the
    greedy LLM is chosen with propensity ``1 - epsilon`` and each other one with
    ``epsilon / (C - 1)``; with one candidate there is nothing to explore (propensity 1). An
    explored call's fallback order is the chosen LLM, then the rest of the ranking.

    Args:
        decision: what the router chose (its ``ranking`` holds the candidates).
        epsilon: the share of calls that explore, in [0, 1].
        rng: the random source.

    Returns:
        A new :class:`Decision` with ``explored`` and ``propensity`` set.

    Example:
        >>> d = Decision("a", {"a": 0.7, "b": 0.2, "c": 0.1}, ["a", "b", "c"])
        >>> explore(d, 0.0, np.random.default_rng(0)).propensity
        1.0
    """
    check_epsilon(epsilon)
    ranking = decision.ranking or [decision.llm]
    others = ranking[1:]
    if not others or rng.random() >= epsilon:
        return replace(decision, explored=False, propensity=1.0 - epsilon if others else 1.0)
    chosen = others[int(rng.integers(len(others)))]
    return replace(
        decision,
        llm=chosen,
        ranking=[chosen, *(n for n in ranking if n != chosen)],
        explored=True,
        propensity=epsilon / len(others),
    )


# route_batch's ``explore`` argument hides the function there.
_explore = explore


def check_epsilon(epsilon: float) -> None:
    """Raise :class:`ConfigError` unless ``epsilon`` is a number in [0, 1]."""
    if not _is_number(epsilon) or not 0.0 <= float(epsilon) <= 1.0:
        raise ConfigError(f"explore must be a number in [0, 1], got {epsilon!r}")


def length_sorted_batches(queries: Sequence[str], batch_size: int) -> list[list[int]]:
    """Indices of ``queries`` in batches of similar length, so each batch pads little.

    Raises:
        ConfigError: ``batch_size`` is not an integer >= 1.
    """
    check_batch_size(batch_size)
    batch_size = int(batch_size)
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


def _finite(logits: np.ndarray) -> np.ndarray:
    """``logits``, or RoutingError naming the queries whose logits are NaN or infinite."""
    bad = ~np.isfinite(logits).all(axis=-1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise RoutingError(
            f"the router computed NaN or infinite logits for {rows.size} of {len(logits)} "
            f"queries (first: query {int(rows[0])}); its weights or temperature are broken, "
            "so no decision is made"
        )
    return logits


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
