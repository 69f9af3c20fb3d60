"""Router: pick the LLM for a query, rank all of them, save and load.

This module is the inference path: it imports the model and encoder, never the trainer,
the losses, clustering or scikit-learn, so an app that only routes loads only what it needs.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, PreTrainedTokenizerBase

from .config import RouterConfig
from .encoder import load_tokenizer
from .errors import (
    ConfigError,
    RouterFileError,
)
from .model import RouterDCModel
from .ood import OOD_FILE, QueryDistribution
from .routing import BaseRouter, length_sorted_batches

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ENCODER_CONFIG_FILE = "encoder_config.json"
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


class Router(BaseRouter):
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

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------------ encoding

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
        checked = self.check_queries(queries)
        out = np.empty((len(checked), len(self.config.llm_names)), dtype=np.float32)
        for rows in length_sorted_batches(checked, batch_size):
            logits, _ = self.model(**self.tokenize([checked[i] for i in rows]))
            out[rows] = logits.float().cpu().numpy()
        return out

    @torch.inference_mode()
    def logits_and_vectors(
        self, queries: Sequence[str], *, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``(N, T)`` and router vectors ``(N, D)`` from one encoder pass."""
        checked = self.check_queries(queries)
        logits = np.empty((len(checked), len(self.config.llm_names)), dtype=np.float32)
        vectors = np.empty((len(checked), self.model.head.llm_embeddings.shape[1]), np.float32)
        for rows in length_sorted_batches(checked, batch_size):
            batch_logits, batch_vectors = self.model(**self.tokenize([checked[i] for i in rows]))
            logits[rows] = batch_logits.float().cpu().numpy()
            vectors[rows] = batch_vectors.float().cpu().numpy()
        return logits, vectors

    @torch.inference_mode()
    def embed(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """The router's query vectors ``(N, D)`` (after the projection, when there is one)."""
        checked = self.check_queries(queries)
        dim = self.model.head.llm_embeddings.shape[1]
        out = np.empty((len(checked), dim), dtype=np.float32)
        for rows in length_sorted_batches(checked, batch_size):
            _, vectors = self.model(**self.tokenize([checked[i] for i in rows]))
            out[rows] = vectors.float().cpu().numpy()
        return out

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
        if self.ood is not None:  # the training-query summary (core.ood); old routers lack it
            self.ood.save(folder / OOD_FILE, backoff=self.ood_backoff)
        else:  # a stale summary of another router must not be loaded with this one
            (folder / OOD_FILE).unlink(missing_ok=True)
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
        router = cls(model, _load_saved_tokenizer(folder, metadata), config, device=device)
        if (folder / OOD_FILE).is_file():
            router.ood, router.ood_backoff = QueryDistribution.load(folder / OOD_FILE)
        return router


def load(path: str | Path, *, device: str | torch.device = "auto") -> Router:
    """Load a saved router; see :meth:`Router.load`."""
    return Router.load(path, device=device)


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
