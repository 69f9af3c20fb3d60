"""Training a RouterDC router: ``fit(data) -> Router``.

The loop is plain on purpose (minGPT-sized): :func:`build` makes the model, optimizer and batch
source in one place and :func:`train_step` is one step, so the loop can move to Hugging Face
Accelerate (``accelerator.prepare(model, optimizer, loader)``) without changing its shape.

Two modes:
- full fine-tuning (``train_encoder=True``, the paper): every step runs the encoder.
- frozen encoder (``train_encoder=False``): the queries are encoded once (sorted by length, so
  batches pad little) and only the head trains, which takes seconds.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .._version import __version__
from ..config import (
    DEFAULT_ENCODER,
    DEFAULT_MAX_LENGTH,
    DEFAULT_POOLING,
    SMOOTHING_CANDIDATES,
    RouterConfig,
    TrainConfig,
)
from ..data.dataset import RoutingData
from ..data.log import VECTOR_QUERY_PREFIX
from ..errors import ConfigError, DataError
from ..routing.base import length_sorted_batches
from ..routing.encoder import load_encoder, read_encoder_settings, resolve_encoder
from ..routing.model import RouterDCModel
from ..routing.ood import QueryDistribution
from ..routing.router import Router, pick_device
from .clustering import cluster_queries, labels_to_ids
from .distributed import Processes, is_main_process
from .losses import SampleLLMLoss, SampleSampleLoss
from .metrics import task_mean_accuracy, training_view
from .provenance import training_record
from .smoothing import Neighbours, choose_neighbours, smooth_scores

logger = logging.getLogger(__name__)

ClusterSource = Literal["kmeans", "tasks"]
# Without task labels, smoothing neighbours are looked for within this many k-means clusters.
# Measured on the paper's data with task labels dropped (benchmarks/results/logs.md): 20
# clusters against the loss's 5 gave 57.71 against 56.74 with every score, 54.95 against 52.74
# with 70% hidden (seed 0, test files; not yet cross-validated on the train files).
SMOOTHING_CLUSTERS = 20
# ... but fewer on small data: a cluster of a handful of queries leaves nothing to smooth over.
SMOOTHING_CLUSTER_QUERIES = 100
# With sample weights (a routing log), each neighbour mean starts from this many pseudo-outcomes
# at the LLM's overall mean: an LLM seen on one or two neighbours stays near its mean.
PRIOR_OBSERVATIONS = 2.0
# Batches sorted by length together, per window (as Hugging Face's group_by_length does).
LENGTH_WINDOW = 16


@dataclass
class Batch:
    """One training batch: either token ids (full mode) or cached pooled vectors (frozen)."""

    scores: torch.Tensor  # (B, T), NaN where unscored
    clusters: torch.Tensor  # (B,)
    tokens: dict[str, torch.Tensor] | None = None  # input_ids, attention_mask: (B, L)
    pooled: torch.Tensor | None = None  # (B, D)


@dataclass
class Setup:
    """Everything the loop needs, built in one place by :func:`build`."""

    model: RouterDCModel
    optimizer: torch.optim.Optimizer
    batches: Iterator[Batch]
    sample_llm: SampleLLMLoss
    sample_sample: SampleSampleLoss
    generator: torch.Generator
    device: torch.device
    # The processes of an Accelerate run (core.training.distributed), and the module the step calls:
    # the model (full) or its head (frozen), wrapped by Accelerate when launched.
    processes: Processes = field(default_factory=Processes)
    trained: torch.nn.Module | None = None


def fit(
    data: RoutingData,
    *,
    encoder: str | None = None,
    train_encoder: bool | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    clusters: ClusterSource | Sequence[int] = "kmeans",
    validation: RoutingData | None = None,
    cost_rate: float = 0.0,
    config: TrainConfig | None = None,
    history_path: str | Path | None = None,
    progress: bool = True,
    encoding_cache: EncodingCache | None = None,
    sample_weights: Sequence[float] | np.ndarray | None = None,
    accelerator: Any | None = None,
    **overrides: Any,
) -> Router:
    """Train a router on ``data``.

    Args:
        data: queries and per-LLM scores (missing scores are masked out of the losses).
        encoder: Hugging Face id or local path; None for the bundled all-MiniLM-L6-v2.
        train_encoder: fine-tune the encoder (the paper) or freeze it and train the head;
            None keeps ``config.train_encoder``.
        steps, batch_size, seed: shortcuts for the same fields of ``config``.
        clusters: ``"kmeans"`` (k-means on the untrained encoder's embeddings), ``"tasks"``
            (the data's task labels), or one cluster id per training query.
        validation: data to pick the best checkpoint on; by default ``validation_fraction`` of
            ``data`` is held out (stratified by task).
        cost_rate: train on ``score - cost_rate * cost / max mean cost`` (the paper's
            cost-aware training); needs costs in the data.
        config: the full recipe; keyword ``overrides`` replace its fields.
        history_path: also write the training history there as JSON lines.
        progress: show a progress bar with the loss and the time left.
        encoding_cache: reuse the frozen encoder's outputs across fits (seeds, ablations)
            that share an encoder, pooling and max length; filled as queries are encoded.
        sample_weights: ``(N,)`` weights > 0 of the training queries, used in the neighbour
            means (self-normalised: sum w * score / sum w over the neighbours that scored an
            LLM); by default ``data.sample_weights`` when the data has them (a routing log's
            clipped inverse propensities, :meth:`RoutingData.from_log`). They act through
            smoothing only, so they change nothing with ``smoothing_neighbours=0``.
        accelerator: an ``accelerate.Accelerator`` to train data-parallel with; by default one
            is made when a distributed launcher (``accelerate launch``) started the process.
            Its device, mixed precision and gradient accumulation replace the recipe's device.

    Returns:
        The best router by validation accuracy, with ``router.history`` set, ``router.ood``
        (the training queries' summary behind each decision's ``in_distribution``, computed
        with the trained model) and, when the recipe left a choice to the data
        (``smoothing_neighbours=None``), ``router.selection``.

    Raises:
        DataError: when an LLM has no score on any training query. It is refused, not dropped
            with a warning: it would get traffic while learning nothing, and a router with
            fewer LLMs than the caller named would fail later, far from the cause.
    """
    config = replace(config or TrainConfig(), **overrides)
    shortcuts: dict[str, Any] = {
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "train_encoder": train_encoder,
    }
    config = replace(config, **{k: v for k, v in shortcuts.items() if v is not None})
    started = time.perf_counter()
    processes = Processes.detect(accelerator, train_encoder=bool(config.train_encoder))
    device = processes.device or pick_device(config.device)
    config = config.resolved(device.type)
    torch.manual_seed(config.seed)

    cluster_labels = _given_clusters(data, clusters)
    _refuse_unscored_llms(data, "the training data")
    weights = _sample_weights(data, sample_weights)
    if validation is None and config.validation_fraction > 0 and len(data) >= 20:
        train_rows, val_rows = data.split_indices(config.validation_fraction, seed=config.seed)
        data, validation = data.subset(train_rows), data.subset(val_rows)
        if cluster_labels is not None:
            cluster_labels = cluster_labels[train_rows]
        _refuse_unscored_llms(
            data, f"the training part (validation_fraction={config.validation_fraction} held out)"
        )
        if weights is not None:
            weights = weights[train_rows]
    if validation is not None:
        validation = _align_llms(validation, data.llm_names)
    penalty = _cost_penalty(data, cost_rate)  # checked before the slow encoding pass

    tokenizer, encoder_model = load_encoder(encoder, progress=progress)
    config = _with_encoder_settings(config, resolve_encoder(encoder))
    model = RouterDCModel(
        encoder_model,
        len(data.llm_names),
        pooling=config.pooling or DEFAULT_POOLING,
        temperature=config.temperature,
        projection=bool(config.projection),
    )
    model.to(device)
    router_config = RouterConfig(
        llm_names=list(data.llm_names),
        encoder=encoder or DEFAULT_ENCODER,
        pooling=config.pooling or DEFAULT_POOLING,
        temperature=config.temperature,
        max_length=config.max_length or DEFAULT_MAX_LENGTH,
        projection=bool(config.projection),
        costs=data.mean_costs(),
        version=__version__,
    )
    router = Router(model, tokenizer, router_config, device=device)

    smoothing = config.smoothing_neighbours
    need_pooled = not config.train_encoder or cluster_labels is None or smoothing != 0
    cache = encoding_cache if encoding_cache is not None else EncodingCache()
    pooled = (
        processes.encode(cache, router, data.queries, config, progress=progress)
        if need_pooled
        else None
    )
    if cluster_labels is None:
        assert pooled is not None
        cluster_labels = cluster_queries(pooled.numpy(), config.num_clusters, seed=config.seed)
    val_pooled = None
    if validation is not None and not config.train_encoder:
        val_pooled = processes.encode(cache, router, validation.queries, config, progress=progress)

    targets = _Targets(
        data.queries,
        training_view(data, config.binary),
        penalty,
        _smoothing_groups(data, pooled, config.seed) if smoothing != 0 else cluster_labels,
        pooled,
        weights,
    )
    neighbours: Neighbours
    if smoothing is None:
        neighbours = _choose_smoothing(targets)
        router.selection = {"smoothing_neighbours": {str(g): k for g, k in neighbours.items()}}
    else:
        neighbours = smoothing
    setup = build(
        router, data.queries, targets(neighbours), cluster_labels, pooled, config, processes
    )
    history = _train(router, setup, config, validation, val_pooled, progress)
    router.model.eval()
    router.history = history
    router.ood = _summarise_queries(router, data, validation, pooled, val_pooled, config)
    router.training = training_record(
        data, validation, config, processes, device, time.perf_counter() - started, encoder
    )
    if history_path is not None and processes.is_main:
        path = Path(history_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in history), encoding="utf-8")
    return router


def _with_encoder_settings(config: TrainConfig, resolved_encoder: str) -> TrainConfig:
    """``config`` with the pooling and max length it leaves unset (None) taken from the
    encoder's sentence-transformers files, so a model is pooled and truncated as trained."""
    if config.pooling is not None and config.max_length is not None:
        return config
    settings = read_encoder_settings(resolved_encoder)
    chosen = replace(
        config,
        pooling=config.pooling or settings.pooling_or_default(),
        max_length=config.max_length or settings.max_length_or_default(),
    )

    def origin(given: object, read: object) -> str:
        return "given" if given is not None else ("the encoder's files" if read else "default")

    logger.info(
        "pooling %s (%s), max_length %d (%s)",
        chosen.pooling,
        origin(config.pooling, settings.pooling),
        chosen.max_length,
        origin(config.max_length, settings.max_length),
    )
    return chosen


def build(
    router: Router,
    queries: list[str],
    scores: np.ndarray,
    clusters: np.ndarray,
    pooled: torch.Tensor | None,
    config: TrainConfig,
    processes: Processes | None = None,
) -> Setup:
    """Model, optimizer, batch source and losses, in one place.

    Under Accelerate (``processes``), the module the step calls and the optimizer are
    prepared (DDP, mixed precision) and each batch is this process's slice of the global one.
    """
    processes = processes or Processes()
    model = router.model
    if config.train_encoder:
        model.encoder.requires_grad_(True)
        encoder_params = list(model.encoder.parameters())
    else:
        model.encoder.requires_grad_(False)
        encoder_params = []
    head_lr = config.head_learning_rate or config.learning_rate  # resolved() has set it
    groups = [{"params": list(model.head.parameters()), "lr": head_lr}]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": config.learning_rate})
    optimizer: torch.optim.Optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    trained, optimizer = processes.prepare(model if config.train_encoder else model.head, optimizer)
    return Setup(
        model=model,
        optimizer=optimizer,
        batches=_batches(router, queries, scores, clusters, pooled, config, processes),
        sample_llm=SampleLLMLoss(
            config.top_k_positive, config.top_k_negative, config.negative_max_score
        ),
        sample_sample=SampleSampleLoss(config.num_hard_negatives),
        generator=generator,
        device=router.device,
        processes=processes,
        trained=trained,
    )


def train_step(setup: Setup, batch: Batch, config: TrainConfig) -> dict[str, float]:
    """One optimizer step; returns the loss and its parts (averaged over the processes).

    Under Accelerate with gradient accumulation, call it inside
    ``setup.processes.accumulate(setup.trained)``, as ``_train`` does: the optimizer then
    steps on every k-th batch.
    """
    model = setup.model
    model.train()
    processes = setup.processes
    trained = setup.trained
    if trained is None:
        trained = model if batch.tokens is not None else model.head
    with processes.autocast(setup.device):
        if batch.tokens is not None:
            logits, vectors = trained(**batch.tokens)
        else:
            assert batch.pooled is not None
            logits, vectors = trained(batch.pooled)
    parts = {"sample_llm": setup.sample_llm(logits.float(), batch.scores)}
    # A frozen encoder without a projection has nothing the sample-sample loss could move.
    if config.sample_sample_weight > 0 and vectors.requires_grad:
        # Data-parallel: the whole global batch's vectors and clusters (core.training.distributed).
        vectors, clusters = processes.gather_for_contrast(vectors, batch.clusters)
        parts["sample_sample"] = setup.sample_sample(vectors, clusters, setup.generator)
    loss = parts["sample_llm"] + config.sample_sample_weight * parts.get(
        "sample_sample", torch.zeros((), device=logits.device)
    )
    setup.optimizer.zero_grad(set_to_none=True)
    processes.backward(loss)
    setup.optimizer.step()
    values = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}}
    return processes.mean(values)


def _train(
    router: Router,
    setup: Setup,
    config: TrainConfig,
    validation: RoutingData | None,
    val_pooled: torch.Tensor | None,
    progress: bool,
) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = []
    best_accuracy, best_state = -math.inf, None
    processes = setup.processes
    bar = tqdm(
        range(1, config.steps + 1),
        desc="training",
        disable=not progress or not processes.is_main,
        unit="step",
    )
    for step in bar:
        # One accumulate context per batch: Accelerate counts batches by it, and DDP syncs the
        # gradients only on the batch the optimizer steps on.
        with processes.accumulate(setup.trained if setup.trained is not None else setup.model):
            row = {"step": step, **train_step(setup, next(setup.batches), config)}
        bar.set_postfix(loss=f"{row['loss']:.3f}")
        if validation is not None and (step % config.eval_every == 0 or step == config.steps):
            # Only the main process validates; all keep the same best checkpoint.
            row["validation_accuracy"] = processes.on_main(
                functools.partial(_validate, router, validation, val_pooled)
            )
            if row["validation_accuracy"] > best_accuracy:
                best_accuracy = row["validation_accuracy"]
                best_state = _head_or_model_state(router.model, config)
            bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{row['validation_accuracy']:.2%}")
        history.append(row)
    if best_state is not None:
        router.model.load_state_dict(best_state, strict=False)
        logger.info("kept the checkpoint with validation accuracy %.4f", best_accuracy)
    return history


@torch.inference_mode()
def _validate(router: Router, validation: RoutingData, pooled: torch.Tensor | None) -> float:
    router.model.eval()
    if pooled is not None:
        logits, _ = router.model.head(pooled.to(router.device))
        chosen = logits.argmax(dim=1).cpu().numpy()
    else:
        chosen = router.logits(validation.queries).argmax(axis=1)
    return task_mean_accuracy(validation, chosen)


def _head_or_model_state(model: RouterDCModel, config: TrainConfig) -> dict[str, torch.Tensor]:
    """A CPU copy of what trains (only the head when the encoder is frozen)."""
    module = model if config.train_encoder else model.head
    prefix = "" if config.train_encoder else "head."
    return {prefix + k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


@torch.inference_mode()
def _summarise_queries(
    router: Router,
    data: RoutingData,
    validation: RoutingData | None,
    pooled: torch.Tensor | None,
    val_pooled: torch.Tensor | None,
    config: TrainConfig,
) -> QueryDistribution | None:
    """The trained router's vectors of the training queries, calibrated on held-out ones.

    A frozen encoder's cached outputs go through the trained head; a fine-tuned encoder
    encodes the queries again (at most ``MAX_REFERENCE`` training and ``MAX_CALIBRATION``
    held-out ones). Held-out queries that also appear in training are left out.
    """
    from ..routing.ood import MAX_CALIBRATION, MAX_REFERENCE

    rng = np.random.default_rng(config.seed)
    first_rows: dict[str, int] = {}  # distinct queries: a repeated one is one reference point
    for i, query in enumerate(data.queries):
        first_rows.setdefault(query, i)
    if len(first_rows) < 2:
        logger.info("too few training queries to summarise for out-of-distribution scores")
        return None
    train_rows = np.sort(rng.permutation(list(first_rows.values()))[:MAX_REFERENCE])
    held_rows = np.array([], dtype=int)
    if validation is not None:
        seen = set(data.queries)
        fresh = [i for i, q in enumerate(validation.queries) if q not in seen]
        held_rows = np.sort(rng.permutation(fresh)[:MAX_CALIBRATION]).astype(int)

    def vectors(queries: list[str], cached: torch.Tensor | None, rows: np.ndarray) -> np.ndarray:
        if cached is not None and not config.train_encoder:
            return router.model.head(cached[rows].to(router.device))[1].float().cpu().numpy()
        return router.embed([queries[i] for i in rows])

    train_vectors = vectors(data.queries, pooled, train_rows)
    held_vectors = None
    if validation is not None and len(held_rows):
        held_vectors = vectors(validation.queries, val_pooled, held_rows)
    fallback = [data.llm_names[i] for i in np.argsort(-_task_mean_quality(data), kind="stable")]
    return QueryDistribution.from_vectors(train_vectors, held_vectors, fallback, seed=config.seed)


def _task_mean_quality(data: RoutingData) -> np.ndarray:
    """``(T,)`` each LLM's accuracy per task, averaged over tasks (unscored counts as 0)."""
    view = np.nan_to_num(training_view(data), nan=0.0)
    known = ~np.isnan(data.scores)
    tasks = np.asarray(data.tasks if data.tasks is not None else [""] * len(data))
    per_task = []
    for task in dict.fromkeys(tasks.tolist()):
        rows = tasks == task
        per_task.append(view[rows].sum(axis=0) / np.maximum(known[rows].sum(axis=0), 1))
    return np.mean(per_task, axis=0)


class EncodingCache:
    """Pooled outputs of an untrained encoder by query, to encode each query once.

    Keys include the encoder, pooling and max length, so one cache may serve several encoders.
    Only untrained encoders are cached (the frozen mode and the k-means clustering use them).
    """

    def __init__(self) -> None:
        self._vectors: dict[tuple[str, str, int, str], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._vectors)

    @torch.inference_mode()
    def encode(
        self, router: Router, queries: list[str], config: TrainConfig, *, progress: bool = True
    ) -> torch.Tensor:
        """Pooled encoder outputs ``(N, D)`` on CPU; new queries in batches sorted by length.

        ``progress`` shows a bar when there are more than a few batches to encode.
        """
        prefix = (router.config.encoder, router.config.pooling, router.max_tokens)
        new = [q for q in dict.fromkeys(queries) if (*prefix, q) not in self._vectors]
        text_free = [q for q in new if q.startswith(VECTOR_QUERY_PREFIX)]
        if text_free:
            raise DataError(
                f"{len(text_free)} queries are vectors from a routing log kept without text "
                f"(e.g. {text_free[0]!r}), and none was written by {prefix}: train a frozen-"
                "encoder router on the encoder that wrote the log, with "
                "encoding_cache=data.encoding_cache()"
            )
        router.model.eval()
        batches = length_sorted_batches(new, config.encode_batch_size)
        quiet = not progress or len(batches) < 5 or not is_main_process()
        for rows in tqdm(batches, desc="encoding", unit="batch", disable=quiet):
            tokens = router.tokenize([new[i] for i in rows])
            vectors = router.model.encode(**tokens).float().cpu()
            for i, vector in zip(rows, vectors, strict=False):
                self._vectors[(*prefix, new[i])] = vector
        return torch.stack([self._vectors[(*prefix, q)] for q in queries])

    def missing(self, router: Router, queries: list[str]) -> list[str]:
        """The distinct ``queries`` not cached for ``router``'s encoder, in first-seen order."""
        prefix = (router.config.encoder, router.config.pooling, router.max_tokens)
        return [q for q in dict.fromkeys(queries) if (*prefix, q) not in self._vectors]

    def add(self, router: Router, queries: list[str], vectors: torch.Tensor) -> None:
        """Cache ``vectors`` ``(N, D)``, encoded elsewhere (another process), for ``queries``."""
        if len(queries) != len(vectors):
            raise ValueError(f"{len(queries)} queries but {len(vectors)} vectors")
        prefix = (router.config.encoder, router.config.pooling, router.max_tokens)
        for query, vector in zip(queries, vectors, strict=True):
            self._vectors[(*prefix, query)] = vector

    def save(self, path: str | Path) -> None:
        """Write the vectors ``(N, D)`` to a safetensors file, their keys as JSON metadata.

        Every vector must have the same size D (a file holds one encoder width).
        """
        keys = list(self._vectors)
        vectors = torch.stack([self._vectors[k] for k in keys]) if keys else torch.zeros(0, 0)
        save_file({"vectors": vectors}, str(path), metadata={"keys": json.dumps(keys)})

    @classmethod
    def load(cls, path: str | Path) -> EncodingCache:
        """A cache holding what :meth:`save` wrote to ``path``."""
        cache = cls()
        with safe_open(str(path), framework="pt") as stored:
            keys = json.loads(stored.metadata()["keys"])
            vectors = stored.get_tensor("vectors")  # (N, D)
        cache._vectors = {
            (encoder, pooling, limit, query): vector
            for (encoder, pooling, limit, query), vector in zip(keys, vectors, strict=True)
        }
        return cache


def _batches(
    router: Router,
    queries: list[str],
    scores: np.ndarray,
    clusters: np.ndarray,
    pooled: torch.Tensor | None,
    config: TrainConfig,
    processes: Processes | None = None,
) -> Iterator[Batch]:
    """Endless shuffled batches, reshuffled every epoch, seeded.

    Every process draws the same global batches (same seed) and yields its slice of each.

    With ``group_by_length`` (full mode), each window of ``LENGTH_WINDOW`` batches is sorted by
    token count before it is cut, so a batch pads to a length close to its own queries'.
    """
    rng = np.random.default_rng(config.seed)
    score_tensor = torch.tensor(scores, dtype=torch.float32)
    cluster_tensor = torch.tensor(clusters, dtype=torch.long)
    lengths = _token_lengths(router, queries) if config.train_encoder else None
    size = min(config.batch_size, len(queries))
    while True:
        order = rng.permutation(len(queries))
        batches = [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
        if lengths is not None and config.group_by_length:
            window = size * LENGTH_WINDOW
            order = np.concatenate(
                [
                    chunk[np.argsort(-lengths[chunk], kind="stable")]
                    for chunk in np.array_split(order, max(1, len(order) // window))
                ]
            )
            batches = [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
            batches = [batches[i] for i in rng.permutation(len(batches))]
        for global_rows in batches:
            rows = processes.local_rows(global_rows) if processes is not None else global_rows
            batch = Batch(
                scores=score_tensor[rows].to(router.device),
                clusters=cluster_tensor[rows].to(router.device),
            )
            if config.train_encoder:
                batch.tokens = router.tokenize([queries[i] for i in rows])
            else:
                assert pooled is not None
                batch.pooled = pooled[rows].to(router.device)
            yield batch


def _token_lengths(router: Router, queries: list[str]) -> np.ndarray:
    """Tokens per query as the encoder will see them (characters per token vary by language)."""
    with router._tokenizer_lock:
        ids = router.tokenizer(queries, truncation=True, max_length=router.max_tokens)["input_ids"]
    return np.array([len(row) for row in ids])


def _refuse_unscored_llms(data: RoutingData, part: str) -> None:
    """Refuse LLMs that no query scores.

    Refused rather than dropped with a warning: such an LLM's embedding would never train (its
    missing scores are masked out of the losses), yet it would still take traffic, and dropping
    it would hand back a router whose LLM names differ from the ones the caller gave.
    """
    unscored = data.unscored_llms()
    if unscored:
        raise DataError(
            f"LLMs {unscored} have no score in {part} ({len(data)} queries): a router cannot "
            "learn when to pick them. Leave them out (llm_names, or their columns) or add "
            "queries they were scored on"
        )


def _given_clusters(
    data: RoutingData, clusters: ClusterSource | Sequence[int]
) -> np.ndarray | None:
    if isinstance(clusters, str):
        if clusters == "kmeans":
            return None
        if clusters == "tasks":
            if data.tasks is None:
                raise DataError("clusters='tasks' needs task labels in the data, and it has none")
            return labels_to_ids(data.tasks)
        raise ConfigError(f"clusters must be 'kmeans', 'tasks' or a list of ids, got {clusters!r}")
    labels = np.asarray(clusters)
    if labels.shape != (len(data),):
        raise DataError(f"clusters has {labels.shape} labels for {len(data)} queries")
    return labels_to_ids(labels.tolist())


def _weighted_mean(weighted: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``(T,)``: sum of w * s over sum of w per LLM (NaN where no query scored it)."""
    total = np.nansum(weight, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.nansum(weighted, axis=0) / total, np.nan)


def _neighbourhood_sizes(groups: np.ndarray, neighbours: Neighbours) -> np.ndarray:
    """``(Q,)``: how many queries each query's neighbour mean spans (k, or its group's size)."""
    labels, sizes = np.unique(groups, return_counts=True)
    size_of = dict(zip(labels.tolist(), sizes.tolist(), strict=True))
    out = np.empty(len(groups))
    for row, label in enumerate(groups.tolist()):
        k = neighbours[label] if isinstance(neighbours, Mapping) else neighbours
        out[row] = min(int(k), size_of[label])
    return out


def _sample_weights(
    data: RoutingData, given: Sequence[float] | np.ndarray | None
) -> np.ndarray | None:
    """The checked ``(N,)`` sample weights: ``given``, else the data's own, else None."""
    if given is None:
        given = getattr(data, "sample_weights", None)
        if given is None:
            return None
    weights = np.asarray(given, dtype=np.float64)
    if weights.shape != (len(data),):
        raise DataError(f"sample_weights has shape {weights.shape}, expected ({len(data)},)")
    bad = np.flatnonzero(~np.isfinite(weights) | (weights <= 0))
    if bad.size:
        row = int(bad[0])
        raise DataError(f"row {row}, field 'sample_weights': must be > 0, got {weights[row]!r}")
    return weights


def _align_llms(data: RoutingData, llm_names: list[str]) -> RoutingData:
    """``data`` with its score columns in ``llm_names`` order (NaN for LLMs it lacks)."""
    unknown = [n for n in data.llm_names if n not in llm_names]
    if unknown:
        raise DataError(f"validation: LLMs {unknown} are not in the training data {llm_names}")
    if list(data.llm_names) == list(llm_names):
        return data
    columns = [data.llm_names.index(n) if n in data.llm_names else -1 for n in llm_names]
    scores = np.full((len(data), len(llm_names)), np.nan)
    costs = None if data.costs is None else np.full_like(scores, np.nan)
    for target, source in enumerate(columns):
        if source >= 0:
            scores[:, target] = data.scores[:, source]
            if costs is not None and data.costs is not None:
                costs[:, target] = data.costs[:, source]
    return RoutingData(data.queries, list(llm_names), scores, costs, data.tasks)


@dataclass
class _Targets:
    """Training targets per neighbour count: the (smoothed) scores less the cost penalty.

    Neighbours are distinct queries: a query repeated in the data (the paper's sampling repeats
    short tasks) is one point, or its copies would be its own nearest neighbours.
    """

    queries: list[str]
    scores: np.ndarray  # (N, T) as the metric counts them
    penalty: np.ndarray  # (N, T)
    groups: np.ndarray  # (N,) task or cluster: where neighbours are looked for
    pooled: torch.Tensor | None  # (N, D) untrained encoder outputs
    weights: np.ndarray | None = None  # (N,) sample weights of the neighbour means

    def __call__(self, neighbours: Neighbours) -> np.ndarray:
        if neighbours == 0:
            return self.scores - self.penalty
        vectors, scores, groups, inverse = self.distinct
        if self.weights is None:
            return smooth_scores(vectors, scores, groups, neighbours)[inverse] - self.penalty
        return self.weighted_means(neighbours)[inverse] - self.penalty

    def weighted_means(self, neighbours: Neighbours) -> np.ndarray:
        """Per distinct query and LLM: (n * mean + m * prior) / (n + m), where mean is
        sum w * s / sum w over the neighbours that scored the LLM, n their effective count
        (sum w)^2 / sum w^2, m = ``PRIOR_OBSERVATIONS`` and the prior the LLM's weighted mean
        over the query's group (task or cluster; over all queries where the group never
        scored it).

        The outcome model of a routing log: with one score per query, an LLM seen on two
        neighbours would otherwise get their mean, and the luckiest of the rarely seen LLMs
        would win every neighbourhood."""
        vectors, _, groups, _ = self.distinct
        weighted, weight, weight_squared = self.distinct_weighted  # (Q, T), NaN: unscored
        scored = ~np.isnan(weight)
        # Neighbour sums of w * s, w and w^2 over the scored cells: neighbour means times the
        # share of neighbours that scored the LLM times the neighbourhood's size.
        share = smooth_scores(vectors, scored.astype(float), groups, neighbours)
        scale = share * _neighbourhood_sizes(groups, neighbours)[:, None]  # (Q, T)
        sum_ws, sum_w, sum_w2 = (
            np.nan_to_num(smooth_scores(vectors, values, groups, neighbours)) * scale
            for values in (weighted, weight, weight_squared)
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(sum_w > 0, sum_ws / sum_w, 0.0)  # self-normalised IPS
            # Kish's effective count: one outcome counts once, whatever its weight.
            effective = np.where(sum_w > 0, sum_w**2 / sum_w2, 0.0)
        prior = _weighted_mean(weighted, weight)[None, :].repeat(len(groups), axis=0)  # (Q, T)
        for label in np.unique(groups):  # the group's own mean where it scored the LLM
            rows = groups == label
            own = _weighted_mean(weighted[rows], weight[rows])
            prior[rows] = np.where(np.isnan(own), prior[rows], own)
        return (effective * mean + PRIOR_OBSERVATIONS * prior) / (effective + PRIOR_OBSERVATIONS)

    @functools.cached_property
    def distinct_weighted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per distinct query and LLM: sums of w * score, w and w^2 over its scored copies
        (NaN where none scored it)."""
        assert self.weights is not None
        _, _, _, inverse = self.distinct
        known = ~np.isnan(self.scores)
        w = np.where(known, self.weights[:, None], 0.0)  # (N, T)
        sums = np.zeros((int(inverse.max()) + 1, self.scores.shape[1]))
        totals = np.zeros_like(sums)
        np.add.at(sums, inverse, np.where(known, self.scores, 0.0) * w)
        np.add.at(totals, inverse, w)
        squares = np.zeros_like(sums)
        np.add.at(squares, inverse, w**2)
        scored = totals > 0
        return (
            np.where(scored, sums, np.nan),
            np.where(scored, totals, np.nan),
            np.where(scored, squares, np.nan),
        )

    @functools.cached_property
    def distinct(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per distinct query: vectors, scores (averaged over its copies) and group; and each
        row's distinct query. Computed once."""
        assert self.pooled is not None  # fit encodes the queries whenever smoothing is on
        index: dict[str, int] = {}
        inverse = np.array([index.setdefault(q, len(index)) for q in self.queries])  # (N,)
        _, first = np.unique(inverse, return_index=True)  # row of each one's first copy
        # Scores averaged over a query's copies.
        known = ~np.isnan(self.scores)
        sums = np.zeros((len(index), self.scores.shape[1]))
        counts = np.zeros_like(sums)
        np.add.at(sums, inverse, np.where(known, self.scores, 0.0))
        np.add.at(counts, inverse, known)
        scores = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return self.pooled.numpy()[first], scores, self.groups[first], inverse


def _smoothing_groups(data: RoutingData, pooled: torch.Tensor | None, seed: int) -> np.ndarray:
    """Where smoothing neighbours are looked for: the task labels, or without them (an app's
    log) ``SMOOTHING_CLUSTERS`` k-means clusters of the queries (one per
    ``SMOOTHING_CLUSTER_QUERIES`` queries on smaller data).

    The sample-sample loss's 5 clusters are too coarse for this: a cluster that mixes two
    tasks (on the paper's data HumanEval with GSM8K, ARC with MMLU) gives both the same
    neighbourhood, and with most scores missing the chosen count is most often the whole
    cluster. Finer clusters keep each neighbourhood to one kind of query.
    """
    if data.tasks is not None:
        return np.asarray(data.tasks)
    assert pooled is not None  # fit encodes the queries whenever smoothing is on
    count = max(1, min(SMOOTHING_CLUSTERS, len(data) // SMOOTHING_CLUSTER_QUERIES))
    return cluster_queries(pooled.numpy(), count, seed=seed)


def _choose_smoothing(targets: _Targets) -> dict[Hashable, int]:
    """Per task (or cluster), the neighbour count of ``SMOOTHING_CANDIDATES`` that best
    predicts held-out queries.

    See :func:`core.training.smoothing.choose_neighbours`: leave-one-out on the training queries, no
    training, every query counts.
    """
    vectors, scores, groups, _ = targets.distinct
    choice = choose_neighbours(vectors, scores, groups, SMOOTHING_CANDIDATES)
    for group, k in choice.per_group.items():
        logger.info(
            "%s: smoothing over %d neighbours (leave-one-out accuracy %s)",
            group,
            k,
            {c: round(a, 4) for c, a in choice.accuracy[group].items()},
        )
    return choice.per_group


def _cost_penalty(data: RoutingData, cost_rate: float) -> np.ndarray:
    """``(N, T)``: ``cost_rate`` times each call's price over the highest mean price (0 if free)."""
    if not (math.isfinite(cost_rate) and cost_rate >= 0):
        raise ConfigError(f"cost_rate must be a finite number >= 0, got {cost_rate!r}")
    if cost_rate == 0:
        return np.zeros_like(data.scores)
    means = data.mean_costs()
    if means is None or len(means) < len(data.llm_names):
        raise DataError("cost_rate needs a cost for every LLM in the data")
    prices = np.array([means[n] for n in data.llm_names])
    if prices.max() == 0:
        return np.zeros_like(data.scores)
    costs = data.costs if data.costs is not None else np.broadcast_to(prices, data.scores.shape)
    costs = np.where(np.isnan(costs), prices[None, :], costs)
    return cost_rate * costs / prices.max()
