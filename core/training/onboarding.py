"""Changing a trained router's LLMs without retraining it: add one, remove one, rename one.

A router scores LLM t for query x as cos(E(x), k_t) / tau. Adding an LLM learns one more row
k_new and nothing else: the encoder, the projection and the other LLMs' embeddings stay as
they are, so the query vectors E(x) and the old LLMs' logits are constants. The new row is fit
to a few queries the new LLM answered, with the loss the router was trained with (the
sample-LLM loss of :mod:`core.training.losses`, K+ = 1 against all the others as
:class:`TrainConfig` sets it), its gradient reaching k_new only:

- where the data also scores some of the router's LLMs on a query, those scores are compared
  with the new one's, as in training;
- where it scores none of them, the router's own probabilities p_t(x) stand in for their
  scores: the new LLM should win where it is more likely right than the router is sure of its
  choice (a weaker signal; say so in what you measure).

Scores are counted as the metric counts them (:func:`core.training.metrics.training_view`) and, by
default, averaged over the whole task (``neighbours``: each query's nearest given queries of its
task, :mod:`core.training.smoothing`), as ``core.fit``'s own leave-one-out choice does on the
paper's train files: one query's right/wrong answers say little, their mean over a task says which
LLM is better there. Without it the added LLM won no task in the benchmark, even from 1000 queries
(benchmarks/results/onboarding_neighbours1.md). ``anchor_weight`` (off by default) adds
``anchor_weight * (1 - cos(k_new, k_start))`` to keep the row near its warm start.

Warm start (a stated rule, recorded in the router's history). ``"score_weighted"``: the
score-weighted mean of the query vectors, sum_i (s_i - mean s) E(x_i) / |E(x_i)|,
which points where the new LLM does better than it does on average. ``"auto"`` (the default):
the embedding
of the router's LLM whose scores correlate most (Pearson) with the new LLM's on the queries
that scored both, when at least ``MIN_SCORED_QUERIES`` did and the best correlation is
positive; otherwise the score-weighted mean. The two tie on validation.

Removing an LLM drops its row; the others are copied bit for bit, so a router that had an LLM
added and then removed computes exactly the original's logits. Every function returns a new
:class:`~core.routing.router.Router` and leaves the one given unchanged: the new router shares the
frozen encoder's weights (nothing here writes to them) and gets its own copy of the head.

Example:
    >>> scored = core.RoutingData.from_file("new-llm-scores.jsonl")  # doctest: +SKIP
    >>> bigger = router.add_llm("qwen2.5-7b", scored, cost=0.0004)   # doctest: +SKIP
    >>> bigger.history[-1]["warm_start"]                             # doctest: +SKIP
    'correlated: meta-llama/Meta-Llama-3-8B (r=0.41)'
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..data.dataset import RoutingData
from ..errors import ConfigError, DataError, UnknownLLMError
from ..routing.model import RouterDCModel
from .losses import sample_llm_loss
from .metrics import training_view
from .smoothing import smooth_scores

if TYPE_CHECKING:
    from ..routing.router import Router

logger = logging.getLogger(__name__)

# Fewest queries the new LLM must have answered. Below ten, a task of the paper's five gets
# one or two queries, and a right/wrong rate measured on ten answers has a standard error of
# up to 0.16 (sqrt(0.25 / 10)): too coarse to tell whether the new LLM beats the router's
# choice. benchmarks/results/onboarding.md shows what ten recover.
MIN_SCORED_QUERIES = 10

WarmStart = Literal["auto", "correlated", "score_weighted"]
WARM_STARTS: tuple[str, ...] = ("auto", "correlated", "score_weighted")

# The validation search of benchmarks/onboarding.py --select (n <= 100) put every setting
# within 0.5 points (benchmarks/results/onboarding_neighbours1.md) and picked no smoothing; a
# check on the test files then showed the added LLM winning no task without it, so
# ``neighbours`` follows core.fit's train-side choice instead (the whole task). The steps and
# learning rate were fixed, not searched.
DEFAULT_WARM_START: WarmStart = "auto"
DEFAULT_NEIGHBOURS = 1000  # the whole task up to 1000 given queries of it
DEFAULT_ANCHOR_WEIGHT = 0.0
DEFAULT_STEPS = 200
DEFAULT_LEARNING_RATE = 0.01


def add_llm(
    router: Router,
    name: str,
    data: RoutingData,
    *,
    cost: float | None = None,
    warm_start: WarmStart = DEFAULT_WARM_START,
    neighbours: int = DEFAULT_NEIGHBOURS,
    anchor_weight: float = DEFAULT_ANCHOR_WEIGHT,
    steps: int = DEFAULT_STEPS,
    learning_rate: float = DEFAULT_LEARNING_RATE,
) -> Router:
    """A new router that also routes to ``name``, learned from queries it answered.

    Args:
        router: the trained router; it is left unchanged.
        name: the new LLM; ``data`` must have a score column of that name.
        data: queries scored by the new LLM (at least ``MIN_SCORED_QUERIES`` of them) and,
            where known, by some of the router's LLMs; columns of other LLMs are ignored.
        cost: the new LLM's price per query in dollars; None takes the mean of its costs in
            ``data`` when it has them. Needed for cost-aware routing when the router has
            prices.
        warm_start: ``"auto"`` (the most correlated LLM's embedding when there is one, else
            score-weighted), ``"score_weighted"`` or ``"correlated"`` (that LLM's, or an
            error); see the module's docstring.
        neighbours: average each query's scores over this many nearest given queries of its
            task (itself included); 1 trains on each query's own scores.
        anchor_weight: weight of ``1 - cos(k_new, k_start)`` in the loss.
        steps: full-batch Adam steps on the new row.
        learning_rate: Adam's step on the unit-norm row.

    Returns:
        A router with ``name`` as its last LLM and one more entry in ``history``.

    Raises:
        ConfigError: ``name`` is already one of the router's LLMs, or an option is out of range.
        DataError: ``data`` has no column ``name``, or fewer than ``MIN_SCORED_QUERIES``
            queries with a score for it.
    """
    start_time = time.perf_counter()
    _check_options(warm_start, neighbours, anchor_weight, steps, learning_rate)
    if name in router.config.llm_names:
        raise ConfigError(
            f"name: {name!r} is already one of the router's LLMs {router.config.llm_names}; "
            "rename or remove it first"
        )
    if name not in data.llm_names:
        raise DataError(
            f"data has no scores for {name!r}: its LLMs are {data.llm_names}; "
            f"add_llm learns {name!r} from queries it answered"
        )
    new_column = data.llm_names.index(name)
    answered = np.flatnonzero(~np.isnan(data.scores[:, new_column]))
    if answered.size < MIN_SCORED_QUERIES:
        raise DataError(
            f"data scores {name!r} on {answered.size} queries; add_llm needs at least "
            f"{MIN_SCORED_QUERIES}: fewer leave a task one or two answers, whose right/wrong "
            "rate is too coarse to say whether the new LLM beats the router's choice"
        )
    data = data.subset(answered)
    ignored = [n for n in data.llm_names if n != name and n not in router.config.llm_names]
    if ignored:
        logger.info("add_llm: ignoring scores of LLMs the router does not know: %s", ignored)

    # Everything the fit needs is computed once: the frozen router's vectors and logits.
    vectors = router.embed(data.queries)  # (N, D), after the projection
    old_logits = router.logits(data.queries)  # (N, T)
    old_names = list(router.config.llm_names)
    view = training_view(data)  # (N, T_data), as the metric counts the scores
    scores = np.full((len(data), len(old_names) + 1), np.nan)  # (N, T + 1): old LLMs, then new
    for column, llm in enumerate(old_names):
        if llm in data.llm_names:
            scores[:, column] = view[:, data.llm_names.index(llm)]
    scores[:, -1] = view[:, new_column]
    observed = ~np.isnan(scores[:, :-1]).all(axis=1)  # queries some old LLM answered
    groups = np.asarray(data.tasks if data.tasks is not None else [""] * len(data))
    if neighbours > 1:
        scores = smooth_scores(vectors, scores, groups, neighbours)
    unscored = np.isnan(scores[:, :-1]).all(axis=1)  # no old score, even among neighbours
    if unscored.any():
        scores[unscored, :-1] = _softmax(old_logits[unscored])

    embeddings = router.model.head.llm_embeddings.detach().float().cpu()  # (T, D)
    start, rule = choose_warm_start(
        vectors, scores[:, -1], scores[:, :-1], ~unscored, embeddings.numpy(), old_names, warm_start
    )
    new_row, loss = fit_llm_embedding(
        torch.from_numpy(vectors).float(),
        embeddings,
        torch.from_numpy(scores).float(),
        torch.from_numpy(start).float(),
        temperature=router.config.temperature,
        steps=steps,
        learning_rate=learning_rate,
        anchor_weight=anchor_weight,
    )
    # Cosine ignores a row's length; give the new one the others' mean, as training would.
    new_row = new_row * embeddings.norm(dim=1).mean()

    costs = _costs_after_adding(router, name, data, cost)
    rows = torch.cat([embeddings, new_row[None, :]]).to(router.device)
    config = replace(router.config, llm_names=[*old_names, name], costs=costs)
    seconds = time.perf_counter() - start_time
    entry = {
        "event": "add_llm",
        "llm": name,
        "queries": len(data),
        "queries_with_old_scores": int(observed.sum()),
        "warm_start": rule,
        "neighbours": neighbours,
        "anchor_weight": anchor_weight,
        "steps": steps,
        "learning_rate": learning_rate,
        "final_loss": loss,
        "cost": None if costs is None else costs.get(name),
        "seconds": round(seconds, 3),
    }
    logger.info("added %s from %d queries in %.2f s (%s)", name, len(data), seconds, rule)
    return _rebuild(router, rows, config, entry)


def remove_llm(router: Router, name: str) -> Router:
    """A new router without ``name``; the other LLMs' embeddings are copied exactly.

    Raises:
        UnknownLLMError: the router has no LLM ``name``.
        ConfigError: removing it would leave fewer than two LLMs.
    """
    names = list(router.config.llm_names)
    if name not in names:
        raise UnknownLLMError(f"remove_llm: unknown LLM {name!r}; the router has {names}")
    if len(names) <= 2:
        raise ConfigError(
            f"remove_llm: {name!r} is one of the router's last two LLMs {names}; "
            "a router needs at least two"
        )
    keep = [i for i, llm in enumerate(names) if llm != name]
    rows = router.model.head.llm_embeddings.detach()[keep].clone()
    costs = router.config.costs
    if costs is not None:
        costs = {llm: price for llm, price in costs.items() if llm != name} or None
    config = replace(router.config, llm_names=[names[i] for i in keep], costs=costs)
    return _rebuild(router, rows, config, {"event": "remove_llm", "llm": name})


def rename_llm(router: Router, old: str, new: str) -> Router:
    """A new router that calls ``old`` by the name ``new``; its routing is unchanged.

    Raises:
        UnknownLLMError: the router has no LLM ``old``.
        ConfigError: ``new`` is empty or already one of the router's LLMs.
    """
    names = list(router.config.llm_names)
    if old not in names:
        raise UnknownLLMError(f"rename_llm: unknown LLM {old!r}; the router has {names}")
    if not isinstance(new, str) or not new:
        raise ConfigError(f"rename_llm: the new name must be a non-empty string, got {new!r}")
    if new in names:
        raise ConfigError(f"rename_llm: {new!r} is already one of the router's LLMs {names}")
    costs = router.config.costs
    if costs is not None:
        costs = {(new if llm == old else llm): price for llm, price in costs.items()}
    config = replace(
        router.config, llm_names=[new if llm == old else llm for llm in names], costs=costs
    )
    rows = router.model.head.llm_embeddings.detach().clone()
    entry = {"event": "rename_llm", "llm": old, "new_name": new}
    return _rebuild(router, rows, config, entry)


# ---------------------------------------------------------------------- the maths


def fit_llm_embedding(
    query_vectors: torch.Tensor,
    llm_embeddings: torch.Tensor,
    scores: torch.Tensor,
    start: torch.Tensor,
    *,
    temperature: float,
    steps: int = DEFAULT_STEPS,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    anchor_weight: float = DEFAULT_ANCHOR_WEIGHT,
) -> tuple[torch.Tensor, float]:
    """One new LLM embedding, every other tensor frozen; plain tensors in and out.

    Args:
        query_vectors: ``(N, D)`` the router's query vectors (after the projection).
        llm_embeddings: ``(T, D)`` the existing LLMs' embeddings.
        scores: ``(N, T + 1)`` targets in [0, 1], the new LLM last; NaN where unknown.
        start: ``(D,)`` the warm start.
        temperature: the router's tau.
        steps, learning_rate: full-batch Adam on the unit-norm row.
        anchor_weight: weight of ``1 - cos(row, start)``.

    Returns:
        The unit-norm row ``(D,)`` and the final loss.
    """
    defaults = TrainConfig()
    queries = F.normalize(query_vectors.float(), dim=-1)  # (N, D)
    old_logits = queries @ F.normalize(llm_embeddings.float(), dim=-1).T / temperature  # (N, T)
    anchor = F.normalize(start.float(), dim=0)  # (D,)
    row = anchor.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([row], lr=learning_rate)
    loss = torch.zeros(())
    for _ in range(steps):
        direction = F.normalize(row, dim=0)
        new_logits = queries @ direction / temperature  # (N,)
        logits = torch.cat([old_logits, new_logits[:, None]], dim=1)  # (N, T + 1)
        loss = sample_llm_loss(
            logits,
            scores,
            top_k_positive=defaults.top_k_positive,
            top_k_negative=defaults.top_k_negative,
            negative_max_score=defaults.negative_max_score,
        ) + anchor_weight * (1 - direction @ anchor)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return F.normalize(row.detach(), dim=0), float(loss.detach())


def choose_warm_start(
    query_vectors: np.ndarray,
    new_scores: np.ndarray,
    old_scores: np.ndarray,
    observed: np.ndarray,
    llm_embeddings: np.ndarray,
    llm_names: list[str],
    rule: WarmStart = "auto",
) -> tuple[np.ndarray, str]:
    """The warm start of the new row and a line saying which rule gave it.

    Args:
        query_vectors: ``(N, D)`` the router's query vectors.
        new_scores: ``(N,)`` the new LLM's scores.
        old_scores: ``(N, T)`` the router's LLMs' scores, NaN where unknown.
        observed: ``(N,)`` True where ``old_scores`` were given (not the router's stand-ins).
        llm_embeddings: ``(T, D)`` the router's LLM embeddings.
        llm_names: their names.
        rule: see :func:`add_llm`.
    """
    if rule in ("auto", "correlated"):
        best, best_r = -1, 0.0
        for column in range(old_scores.shape[1]):
            both = observed & ~np.isnan(old_scores[:, column])
            if both.sum() < MIN_SCORED_QUERIES:
                continue
            a, b = new_scores[both], old_scores[both, column]
            if a.std() == 0 or b.std() == 0:
                continue
            r = float(np.corrcoef(a, b)[0, 1])
            if r > best_r:
                best, best_r = column, r
        if best >= 0:
            return llm_embeddings[best].copy(), f"correlated: {llm_names[best]} (r={best_r:.2f})"
        if rule == "correlated":
            raise DataError(
                f"warm_start='correlated' needs at least {MIN_SCORED_QUERIES} queries scored "
                "by the new LLM and one of the router's whose scores correlate positively"
            )
    units = query_vectors / np.linalg.norm(query_vectors, axis=1, keepdims=True).clip(1e-12)
    centred = new_scores - new_scores.mean()
    direction = centred @ units  # (D,)
    if np.linalg.norm(direction) < 1e-8:  # every score equal: no direction is better
        return units.mean(axis=0), "query_mean: the new LLM's scores are all equal"
    return direction, "score_weighted: sum_i (s_i - mean s) E(x_i)/|E(x_i)|"


# ---------------------------------------------------------------------- helpers


def _rebuild(router: Router, rows: torch.Tensor, config: Any, entry: Mapping[str, Any]) -> Router:
    """A router with ``router``'s encoder (shared), a copy of its head with ``rows`` as the
    LLM embeddings, a copy of its tokenizer, and ``entry`` appended to its history."""
    from ..routing.router import Router

    old = router.model
    with torch.random.fork_rng(devices=[]):  # the throwaway head's init leaves the RNG alone
        model = RouterDCModel(
            old.encoder,  # frozen and only read: shared, not copied
            rows.shape[0],
            pooling=old.pooling,
            temperature=old.head.temperature,
            projection=old.head.projection is not None,
        )
    model.head = copy.deepcopy(old.head)
    model.head.llm_embeddings = torch.nn.Parameter(rows.to(old.head.llm_embeddings.device))
    # Each router tokenizes under its own lock; a shared fast tokenizer would not be safe.
    tokenizer = copy.deepcopy(router.tokenizer)
    rebuilt = Router(
        model,
        tokenizer,
        config,
        device=router.device,
        history=[*router.history, dict(entry)],
    )
    rebuilt.selection = copy.deepcopy(router.selection)
    return rebuilt


def _costs_after_adding(
    router: Router, name: str, data: RoutingData, cost: float | None
) -> dict[str, float] | None:
    if cost is not None:
        ok = isinstance(cost, (int, float)) and not isinstance(cost, bool) and np.isfinite(cost)
        if not ok or cost < 0:
            raise ConfigError(f"cost must be a finite number of dollars >= 0, got {cost!r}")
    else:
        cost = (data.mean_costs() or {}).get(name)
    costs = dict(router.config.costs) if router.config.costs is not None else None
    if cost is None:
        if costs is not None:
            logger.warning(
                "add_llm: the router has prices but none was given for %r; cost-aware routing "
                "will ask for one (pass cost=...)",
                name,
            )
        return costs
    return {**(costs or {}), name: float(cost)}


def _check_options(
    warm_start: str, neighbours: int, anchor_weight: float, steps: int, learning_rate: float
) -> None:
    if warm_start not in WARM_STARTS:
        raise ConfigError(f"warm_start must be one of {WARM_STARTS}, got {warm_start!r}")
    for label, value in (("neighbours", neighbours), ("steps", steps)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{label} must be an integer >= 1, got {value!r}")
    for label, number in (("anchor_weight", anchor_weight), ("learning_rate", learning_rate)):
        finite = isinstance(number, (int, float)) and not isinstance(number, bool)
        if (
            not finite
            or not np.isfinite(number)
            or number < 0
            or (label == "learning_rate" and number == 0)
        ):
            bound = "> 0" if label == "learning_rate" else ">= 0"
            raise ConfigError(f"{label} must be a finite number {bound}, got {number!r}")


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
