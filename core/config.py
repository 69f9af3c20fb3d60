"""Dataclass configs, validated when built.

``RouterConfig`` describes a trained router and is saved next to its weights;
``TrainConfig`` holds the training recipe (the paper's defaults unless stated).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Literal

from .errors import ConfigError

Pooling = Literal["first", "mean", "max", "last"]
POOLINGS: tuple[str, ...] = ("first", "mean", "max", "last")
DEFAULT_ENCODER = "all-MiniLM-L6-v2"
# Used when neither the recipe nor the encoder's sentence-transformers files say otherwise.
DEFAULT_POOLING: Pooling = "mean"
DEFAULT_MAX_LENGTH = 512
# A frozen encoder leaves the head alone to learn; it needs a far larger step than fine-tuning.
FROZEN_HEAD_LEARNING_RATE = 1e-3
# Neighbour counts smoothing_neighbours=None chooses among, per task. How much smoothing helps
# depends on the task: on the paper's, 10 on HumanEval, 200 to a whole task on ARC, MMLU and
# CMMLU; 10 to 20 on RouterBench's (benchmarks/results/tuning.md, cost.md). A count past a
# task's size means the whole task.
SMOOTHING_CANDIDATES = (10, 20, 50, 100, 200, 500, 1000, 2000)
# tau divides cosines in [-1, 1]: below 1e-4 the softmax is already one-hot, and a tau like
# 1e-45 overflows the logits to infinity (NaN probabilities); above 1e4 every LLM is equal.
TEMPERATURE_RANGE = (1e-4, 1e4)


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = is_number and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")


def _check_temperature(value: float) -> None:
    _check_positive("temperature", value)
    low, high = TEMPERATURE_RANGE
    if not low <= value <= high:
        raise ConfigError(f"temperature must lie in [{low:g}, {high:g}], got {value!r}")


@dataclass(frozen=True)
class RouterConfig:
    """What a saved router needs to be rebuilt: written as ``config.json``.

    Attributes:
        llm_names: candidate LLMs, in the order of the learned embeddings.
        encoder: the encoder it was built from (a Hugging Face id or a path), for the record.
        pooling: ``"first"`` (first token, as the paper), ``"mean"`` (masked mean), ``"max"``
            or ``"last"`` (last token); what the router was trained with.
        temperature: tau in softmax(cos / tau).
        max_length: queries longer than this many tokens keep their last ``max_length`` tokens.
        projection: whether a linear projection sits between encoder and LLM embeddings.
        costs: mean price per query of each LLM in dollars, when the training data had prices.
        version: routerdc version that wrote the config.
    """

    llm_names: list[str]
    encoder: str = DEFAULT_ENCODER
    pooling: Pooling = "mean"
    temperature: float = 1.0
    max_length: int = 512
    projection: bool = False
    costs: dict[str, float] | None = None
    version: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.llm_names, str) or not all(
            isinstance(n, str) and n for n in self.llm_names
        ):
            raise ConfigError(
                f"llm_names must be a list of non-empty strings, got {self.llm_names!r}"
            )
        if len(self.llm_names) < 2:
            raise ConfigError(f"llm_names needs at least two LLMs, got {self.llm_names!r}")
        if len(set(self.llm_names)) != len(self.llm_names):
            raise ConfigError(f"llm_names has duplicates: {self.llm_names!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        _check_temperature(self.temperature)
        if not isinstance(self.max_length, int) or self.max_length < 8:
            raise ConfigError(f"max_length must be an integer >= 8, got {self.max_length!r}")
        for name in ("encoder", "version"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not isinstance(self.projection, bool):
            raise ConfigError(f"projection must be true or false, got {self.projection!r}")
        if self.costs is not None:
            self._check_costs()

    def _check_costs(self) -> None:
        costs = self.costs
        if not isinstance(costs, dict):
            raise ConfigError(
                f"costs must be a mapping of LLM name to dollars per call, got {costs!r}"
            )
        unknown = [name for name in costs if name not in self.llm_names]
        if unknown:
            raise ConfigError(f"costs names LLMs not in llm_names: {unknown}")
        for name, price in costs.items():
            number = isinstance(price, (int, float)) and not isinstance(price, bool)
            if not number or not math.isfinite(price) or price < 0:
                raise ConfigError(f"costs[{name!r}] must be a finite number >= 0, got {price!r}")

    def to_json(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, path: Path) -> RouterConfig:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown config fields {unknown}")
        return cls(**raw)


@dataclass
class TrainConfig:
    """The training recipe. Defaults are the paper's unless a comment says otherwise.

    Attributes:
        steps: optimizer steps.
        batch_size: queries per step.
        learning_rate: AdamW learning rate for the encoder.
        head_learning_rate: learning rate of the LLM embeddings and projection; None means
            ``FROZEN_HEAD_LEARNING_RATE`` with a frozen encoder, else ``learning_rate``.
        weight_decay: AdamW weight decay.
        temperature: tau of the sample-LLM softmax (paper: 1).
        top_k_positive: K+, best-scoring LLMs taken as positives (paper: 3).
        top_k_negative: K-, worst-scoring LLMs taken as negatives (paper: 3).
        negative_max_score: a "negative" scoring above this is dropped (paper: 0.5).
        smoothing_neighbours: train on each query's scores averaged over its this many nearest
            training queries of the same task (k-means cluster when the data has no tasks),
            see :mod:`core.training.smoothing`; 0 trains on each query's own scores (paper: 0). None
            chooses, for each task (or cluster), the count of ``SMOOTHING_CANDIDATES`` whose
            neighbourhoods best predict its training queries' best LLMs, leave-one-out (no
            training, seconds); ``router.selection`` says what was chosen.
        binary: train on scores as the metric counts them: None binarises (> 0 -> 1) the tasks
            whose scores are probabilities of a multiple-choice answer, as
            :mod:`core.training.metrics` detects them; True binarises every score, False none
            (paper: False).
        num_hard_negatives: H, other-cluster queries pushed away per query.
        sample_sample_weight: lambda, weight of the sample-sample loss.
        num_clusters: k-means clusters for the sample-sample loss.
        train_encoder: fine-tune the encoder (True, the paper) or encode once and train the
            head only (False); None picks by device: fine-tune on a GPU, freeze on a CPU, where
            fine-tuning takes hours (benchmarks/results/tuning.md has the measurements).
        projection: add a linear projection after the encoder; None means "when frozen".
        pooling: ``"first"``, ``"mean"``, ``"max"`` or ``"last"``; None pools as the encoder's
            sentence-transformers folder says (its Pooling module), else ``DEFAULT_POOLING``.
        max_length: token budget per query, truncated on the left; None is the encoder's
            ``max_seq_length`` (``sentence_bert_config.json``: 256 for all-MiniLM-L6-v2), else
            ``DEFAULT_MAX_LENGTH``. The router's config records the value used.
        validation_fraction: share of training queries held out to pick the best checkpoint.
        eval_every: score the validation split every this many steps.
        seed: seeds data order, initialisation, clustering and the split.
        device: ``"auto"`` picks cuda, then mps, then cpu.
        encode_batch_size: batch size of the one encoding pass of the frozen mode.
        group_by_length: in full mode, batch queries of similar length together so batches
            pad little (the speed-up this gives is measured in benchmarks/speed.py).
    """

    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 5e-5
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    # Not the paper's: the six settings below were chosen by 5-fold cross-validation on the
    # paper's train files (benchmarks/results/tuning.md); TrainConfig.paper() restores them.
    temperature: float = 0.1
    top_k_positive: int = 1
    top_k_negative: int = 6
    negative_max_score: float = 1.0
    smoothing_neighbours: int | None = None
    binary: bool | None = None
    num_hard_negatives: int = 3
    sample_sample_weight: float = 1.0
    num_clusters: int = 5
    train_encoder: bool | None = None
    projection: bool | None = None
    pooling: Pooling | None = None
    max_length: int | None = None
    validation_fraction: float = 0.1
    eval_every: int = 50
    seed: int = 0
    device: str = "auto"
    encode_batch_size: int = 64
    group_by_length: bool = True

    @classmethod
    def paper(cls, **overrides: object) -> TrainConfig:
        """The paper's recipe: its loss settings, raw scores, first-token pooling, full
        fine-tuning (hours on a CPU; benchmarks/results/speed.md)."""
        recipe: dict[str, object] = {
            "temperature": 1.0,
            "top_k_positive": 3,
            "top_k_negative": 3,
            "negative_max_score": 0.5,
            "smoothing_neighbours": 0,
            "binary": False,
            "pooling": "first",
            "max_length": 512,
            "train_encoder": True,
        }
        return cls(**(recipe | overrides))  # type: ignore[arg-type]

    def resolved(self, device_type: str) -> TrainConfig:
        """This recipe with its automatic (None) choices made for a device (``"cuda"``, ...)."""
        train_encoder = device_type == "cuda" if self.train_encoder is None else self.train_encoder
        projection = (not train_encoder) if self.projection is None else self.projection
        head_lr = self.head_learning_rate
        if head_lr is None:
            head_lr = self.learning_rate if train_encoder else FROZEN_HEAD_LEARNING_RATE
        return replace(
            self, train_encoder=train_encoder, projection=projection, head_learning_rate=head_lr
        )

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "batch_size",
            "top_k_positive",
            "top_k_negative",
            "num_clusters",
            "eval_every",
            "encode_batch_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        negatives = self.num_hard_negatives
        if not isinstance(negatives, int) or isinstance(negatives, bool) or negatives < 1:
            raise ConfigError(
                f"num_hard_negatives must be an integer >= 1, got {self.num_hard_negatives!r}"
            )
        if self.binary not in (None, True, False):
            raise ConfigError(f"binary must be None, True or False, got {self.binary!r}")
        smoothing = self.smoothing_neighbours
        if smoothing is not None and (
            not isinstance(smoothing, int) or isinstance(smoothing, bool) or smoothing < 0
        ):
            raise ConfigError(
                "smoothing_neighbours must be None or an integer >= 0, "
                f"got {self.smoothing_neighbours!r}"
            )
        _check_positive("learning_rate", self.learning_rate)
        if self.head_learning_rate is not None:
            _check_positive("head_learning_rate", self.head_learning_rate)
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        _check_temperature(self.temperature)
        _check_positive("sample_sample_weight", self.sample_sample_weight, allow_zero=True)
        if not 0.0 <= self.negative_max_score <= 1.0:
            raise ConfigError(
                f"negative_max_score must lie in [0, 1], got {self.negative_max_score!r}"
            )
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(
                f"validation_fraction must lie in [0, 1), got {self.validation_fraction!r}"
            )
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be None or one of {POOLINGS}, got {self.pooling!r}")
        if self.max_length is not None and (
            not isinstance(self.max_length, int)
            or isinstance(self.max_length, bool)
            or self.max_length < 8
        ):
            raise ConfigError(
                f"max_length must be None or an integer >= 8, got {self.max_length!r}"
            )
