"""Router: pick the LLM for a query, rank all of them, save and load.

This module is the inference path: it imports the model and encoder, never the trainer,
the losses, clustering or scikit-learn, so an app that only routes loads only what it needs.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, PreTrainedTokenizerBase

from core.config import RouterConfig
from core.encoder import load_tokenizer
from core.errors import (
    ConfigError,
    QueryError,
    QueryTypeError,
    RouterFileError,
    UnknownLLMError,
)
from core.model import RouterDCModel

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ENCODER_CONFIG_FILE = "encoder_config.json"
# Characters kept from the end of a query before tokenising: far more than max_length tokens
# need, and it keeps a multi-megabyte query from stalling the tokenizer.
CHARS_PER_TOKEN_BOUND = 16
# Encoders whose position ids start at padding_idx + 1, two entries past the table's start.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "mpnet", "data2vec-text"}


def pick_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; anything else is passed to torch."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class Decision:
    """Where a query goes.

    Attributes:
        llm: the chosen LLM.
        probabilities: p(t | x) over the LLMs that were candidates for this call.
        ranking: those LLMs, best first (by probability, less the cost term when one is set);
            the order to fall back in when the chosen LLM fails.
    """

    llm: str
    probabilities: dict[str, float]
    ranking: list[str] = field(default_factory=list)

    @property
    def probability(self) -> float:
        """p(chosen LLM | query)."""
        return self.probabilities[self.llm]


class Router:
    """A trained RouterDC router.

    Many threads may route with one Router at once: routing runs under
    ``torch.inference_mode`` and keeps no state between calls.

    Example:
        >>> router = core.load("my-router")                    # doctest: +SKIP
        >>> router.route("Natalia sold 48 clips ...").llm      # doctest: +SKIP
        'meta-math/MetaMath-Mistral-7B'
    """

    def __init__(
        self,
        model: RouterDCModel,
        tokenizer: PreTrainedTokenizerBase,
        config: RouterConfig,
        *,
        device: str | torch.device = "auto",
        history: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.config = config
        self.device = pick_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.tokenizer.truncation_side = "left"
        self.max_tokens = _token_limit(config.max_length, tokenizer, model)
        self.history: list[dict[str, Any]] = [dict(h) for h in history]
        # Settings core.fit chose from the training data (smoothing_neighbours=None).
        self.selection: dict[str, Any] = {}
        # Fast tokenizers reconfigure truncation on every call, which is not thread-safe.
        self._tokenizer_lock = threading.Lock()

    @property
    def llm_names(self) -> list[str]:
        return list(self.config.llm_names)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------------ encoding

    def _check_queries(self, queries: Sequence[object]) -> list[str]:
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

    def tokenize(self, queries: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and mask ``(B, L)``, truncated on the left, padded to the longest row."""
        with self._tokenizer_lock:
            batch = self.tokenizer(
                list(queries),
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
        return {
            "input_ids": batch["input_ids"].to(self.device),
            "attention_mask": batch["attention_mask"].to(self.device),
        }

    @torch.inference_mode()
    def logits(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Cosine logits ``(N, T)`` for each query and LLM, in ``llm_names`` order."""
        checked = self._check_queries(queries)
        out = np.empty((len(checked), len(self.config.llm_names)), dtype=np.float32)
        for rows in length_sorted_batches(checked, batch_size):
            logits, _ = self.model(**self.tokenize([checked[i] for i in rows]))
            out[rows] = logits.float().cpu().numpy()
        return out

    @torch.inference_mode()
    def embed(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """The router's query vectors ``(N, D)`` (after the projection, when there is one)."""
        checked = self._check_queries(queries)
        dim = self.model.head.llm_embeddings.shape[1]
        out = np.empty((len(checked), dim), dtype=np.float32)
        for rows in length_sorted_batches(checked, batch_size):
            _, vectors = self.model(**self.tokenize([checked[i] for i in rows]))
            out[rows] = vectors.float().cpu().numpy()
        return out

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
    ) -> Decision:
        """The best LLM for one query.

        Args:
            query: the text to route on.
            cost_weight: w in argmax_t p(t|x) - w * cost_t / max cost; 0 is plain RouterDC.
            costs: dollars per call of each LLM; defaults to the prices seen in training.
            allowed: route only among these LLMs.
            exclude: never route to these (an LLM that is down).
        """
        if not isinstance(query, str):
            raise QueryTypeError(f"query: expected a string, got {type(query).__name__}")
        return self.route_batch(
            [query], cost_weight=cost_weight, costs=costs, allowed=allowed, exclude=exclude
        )[0]

    def route_batch(
        self,
        queries: Iterable[str],
        *,
        cost_weight: float = 0.0,
        costs: Mapping[str, float] | None = None,
        allowed: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        batch_size: int = 64,
    ) -> list[Decision]:
        """Route many queries with batched encoder passes; same options as :meth:`route`."""
        if isinstance(queries, str):
            raise QueryTypeError("expected a list of queries, got a single string")
        queries = list(queries)
        candidates = self.candidates(allowed=allowed, exclude=exclude)
        penalty = self._cost_penalty(candidates, cost_weight, costs)
        if len(queries) == 0:
            return []
        logits = self.logits(queries, batch_size=batch_size)[:, candidates]  # (N, C)
        probs = _softmax(logits)
        utility = probs - penalty[None, :]
        names = [self.config.llm_names[c] for c in candidates]
        decisions = []
        for row_probs, row_utility in zip(probs, utility, strict=False):
            order = np.argsort(-row_utility, kind="stable")
            ranking = [names[i] for i in order]
            decisions.append(
                Decision(
                    llm=ranking[0],
                    probabilities={n: float(p) for n, p in zip(names, row_probs, strict=False)},
                    ranking=ranking,
                )
            )
        return decisions

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

    def _cost_penalty(
        self, candidates: list[int], cost_weight: float, costs: Mapping[str, float] | None
    ) -> np.ndarray:
        """The cost term over the candidates, with the prices seen in training by default."""
        names = [self.config.llm_names[c] for c in candidates]
        return cost_penalty(names, cost_weight, costs if costs is not None else self.config.costs)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors``, the encoder config and tokenizer files."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        encoder_config = self.model.encoder.config.to_dict()
        (folder / ENCODER_CONFIG_FILE).write_text(json.dumps(encoder_config, indent=2))
        written = self.tokenizer.save_pretrained(str(folder))
        # Recorded so that load can tell a missing tokenizer file: transformers would otherwise
        # build a near-empty tokenizer from what is left and route every query as [UNK]s.
        tokenizer_files = sorted(Path(f).name for f in written if Path(f).parent == folder)
        metadata = {
            "format": "pt",
            "tokenizer_files": json.dumps(tokenizer_files),
            "tokenizer_size": str(len(self.tokenizer)),
        }
        state = {
            k: v.detach().float().contiguous().cpu() for k, v in self.model.state_dict().items()
        }
        save_file(state, str(folder / WEIGHTS_FILE), metadata=metadata)
        # Written last: some tokenizers write a config.json of their own, and ours must win.
        self.config.to_json(folder / CONFIG_FILE)
        logger.info("saved router to %s", folder)
        return folder

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "auto") -> Router:
        """Load a router saved by :meth:`save`: offline, and nothing is unpickled."""
        folder = Path(path)
        for name in (CONFIG_FILE, WEIGHTS_FILE, ENCODER_CONFIG_FILE):
            if not (folder / name).is_file():
                raise RouterFileError(f"{folder}: missing {name}; is this a saved router?")
        try:
            config = RouterConfig.from_json(folder / CONFIG_FILE)
        except (json.JSONDecodeError, TypeError, ConfigError) as err:
            raise RouterFileError(f"{folder / CONFIG_FILE}: unreadable config ({err})") from err
        try:
            encoder_config_dict = json.loads((folder / ENCODER_CONFIG_FILE).read_text())
        except json.JSONDecodeError as err:
            raise RouterFileError(f"{folder / ENCODER_CONFIG_FILE}: unreadable ({err})") from err
        try:
            with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as weights:
                metadata = weights.metadata() or {}
                state = {key: weights.get_tensor(key) for key in weights.keys()}  # noqa: SIM118
        except (SafetensorError, OSError) as err:
            raise RouterFileError(
                f"{folder / WEIGHTS_FILE}: unreadable or truncated ({err})"
            ) from err
        model_type = (
            encoder_config_dict.pop("model_type", None)
            if isinstance(encoder_config_dict, dict)
            else None
        )
        if not model_type:
            raise RouterFileError(f"{folder / ENCODER_CONFIG_FILE}: no model_type")
        try:
            encoder_config = AutoConfig.for_model(model_type, **encoder_config_dict)
            encoder = AutoModel.from_config(encoder_config)
        except (ValueError, TypeError, KeyError) as err:
            raise RouterFileError(f"{folder / ENCODER_CONFIG_FILE}: unusable ({err})") from err
        model = RouterDCModel(
            encoder,
            len(config.llm_names),
            pooling=config.pooling,
            temperature=config.temperature,
            projection=config.projection,
        )
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or unexpected or wrong:
            raise RouterFileError(
                f"{folder / WEIGHTS_FILE} does not match {CONFIG_FILE}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
            )
        model.load_state_dict(state, assign=True)  # reuse the loaded tensors: no second copy
        return cls(model, _load_saved_tokenizer(folder, metadata), config, device=device)


def load(path: str | Path, *, device: str | torch.device = "auto") -> Router:
    """Load a saved router; see :meth:`Router.load`."""
    return Router.load(path, device=device)


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


def _load_saved_tokenizer(folder: Path, metadata: Mapping[str, str]) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a router, checked against what :meth:`Router.save` recorded."""
    expected = json.loads(metadata.get("tokenizer_files", "[]"))
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        raise RouterFileError(f"{folder}: missing tokenizer files {missing}")
    try:
        tokenizer = load_tokenizer(folder)
    except (OSError, ValueError) as err:
        raise RouterFileError(f"{folder}: cannot load the tokenizer ({err})") from err
    size = metadata.get("tokenizer_size")
    if size is not None and len(tokenizer) != int(size):
        raise RouterFileError(
            f"{folder}: the tokenizer has {len(tokenizer)} tokens, the router was saved with {size}"
        )
    return tokenizer


def _token_limit(max_length: int, tokenizer: PreTrainedTokenizerBase, model: RouterDCModel) -> int:
    """``max_length``, lowered to what the encoder's position table and tokenizer allow.

    Tokenising to more positions than the encoder has crashes inside torch on a long query.
    """
    limits = [max_length]
    encoder_config = model.encoder.config
    positions = getattr(encoder_config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        offset = 2 if getattr(encoder_config, "model_type", "") in _OFFSET_POSITIONS else 0
        limits.append(positions - offset)
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 1_000_000:  # larger means "unset"
        limits.append(model_max)
    limit = min(limits)
    if limit < max_length:
        logger.info("max_length %d lowered to %d, what the encoder supports", max_length, limit)
    return limit


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
