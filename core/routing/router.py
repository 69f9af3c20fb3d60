"""Router: pick the LLM for a query, rank all of them, save and load.

This module is the inference path: it imports the model and encoder, never the trainer,
the losses, clustering or scikit-learn, so an app that only routes loads only what it needs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedTokenizerBase

from ..atomic import interrupted_saves, replace_folder
from ..config import RouterConfig
from ..data.dataset import RoutingData
from ..errors import (
    ConfigError,
    RouterFileError,
)
from ..training.distributed import is_main_process
from .base import BaseRouter, length_sorted_batches
from .encoder import load_tokenizer
from .model import RouterDCModel
from .ood import OOD_FILE, QueryDistribution

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ENCODER_CONFIG_FILE = "encoder_config.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# How the router was trained (core.training.provenance); written by save, ignored by load.
TRAINING_FILE = "training.json"
ROUTER_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, ENCODER_CONFIG_FILE, OOD_FILE, TRAINING_FILE})
# What a tokenizer's save_pretrained may write. A router records its own list in the weights'
# metadata; this list lets save replace a router whose metadata cannot be read.
TOKENIZER_FILE_NAMES = frozenset(
    {
        "tokenizer.json",
        TOKENIZER_CONFIG_FILE,
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "spiece.model",
        "sentencepiece.bpe.model",
        "spm.model",
        "tokenizer.model",
        "chat_template.jinja",
        "chat_template.json",
    }
)
# Encoder-config fields that decide how large the encoder is, each with the end of the name of
# a weight whose first dimension shows it; checked against the weights' header before building.
_SIZE_FIELDS = (
    ("vocab_size", ".word_embeddings.weight"),
    ("max_position_embeddings", ".position_embeddings.weight"),
    ("type_vocab_size", ".token_type_embeddings.weight"),
    ("intermediate_size", ".0.intermediate.dense.weight"),
)
_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")
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
        # Set by fit; save writes it to training.json.
        self.training: dict[str, Any] | None = None
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

    # ------------------------------------------------------------------ changing the LLMs
    # The maths lives in core.training.onboarding, imported on use: it needs the training losses,
    # which the routing path never loads.

    def add_llm(
        self, name: str, data: RoutingData, *, cost: float | None = None, **options: Any
    ) -> Router:
        """A new router that also routes to ``name``, learned from queries it answered; only
        its embedding is fit (seconds). See :func:`core.training.onboarding.add_llm` for
        ``options``.

        Example:
            >>> bigger = router.add_llm("new-llm", core.RoutingData.from_file("scored.jsonl"))
            ... # doctest: +SKIP
        """
        from ..training.onboarding import add_llm

        return add_llm(self, name, data, cost=cost, **options)

    def remove_llm(self, name: str) -> Router:
        """A new router without ``name``; see :func:`core.training.onboarding.remove_llm`."""
        from ..training.onboarding import remove_llm

        return remove_llm(self, name)

    def rename_llm(self, old: str, new: str) -> Router:
        """A new router calling ``old`` ``new``; see :func:`core.training.onboarding.rename_llm`."""
        from ..training.onboarding import rename_llm

        return rename_llm(self, old, new)

    @torch.inference_mode()
    def pooled(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """The encoder's pooled outputs ``(N, D)``, before the head: with a frozen encoder,
        the vectors ``core.fit`` trains the head on (what a text-free routing log keeps)."""
        checked = self.check_queries(queries)
        out = np.empty((len(checked), self.model.encoder.config.hidden_size), np.float32)
        for rows in length_sorted_batches(checked, batch_size):
            vectors = self.model.encode(**self.tokenize([checked[i] for i in rows]))
            out[rows] = vectors.float().cpu().numpy()
        return out

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors``, the encoder config and tokenizer files.

        The save is atomic: the files are written to a fresh folder beside ``path``, flushed
        to disk, then swapped in whole (:mod:`core.atomic`), so a crash or a kill leaves the
        previous router or this one, never a mix. An existing folder is replaced only when it
        holds nothing but a router's files.

        Under a distributed launch only the main process writes; the others return ``path``.

        Raises:
            RouterFileError: ``path`` is a file, or a folder holding anything but a router.
        """
        folder = Path(path)
        if not is_main_process():
            return folder
        _check_replaceable(folder)
        replace_folder(folder, self._write)
        logger.info("saved router to %s", folder)
        return folder

    def _write(self, folder: Path) -> None:
        """Write the router's files into ``folder`` (a fresh, empty one)."""
        encoder_config = self.model.encoder.config.to_dict()
        text = json.dumps(encoder_config, indent=2)
        (folder / ENCODER_CONFIG_FILE).write_text(text, encoding="utf-8")
        written = self.tokenizer.save_pretrained(str(folder))
        # Recorded so that load can tell a missing tokenizer file: transformers would otherwise
        # build a near-empty tokenizer from what is left and route every query as [UNK]s.
        tokenizer_files = sorted(Path(f).name for f in written if Path(f).parent == folder)
        metadata = {
            "format": "pt",
            "tokenizer_files": json.dumps(tokenizer_files),
            "tokenizer_size": str(len(self.tokenizer)),
            # The LLMs the embeddings belong to, checked against config.json on load.
            "llm_names": json.dumps(list(self.config.llm_names)),
            "num_llms": str(len(self.config.llm_names)),
        }
        state = {
            k: v.detach().float().contiguous().cpu() for k, v in self.model.state_dict().items()
        }
        save_file(state, str(folder / WEIGHTS_FILE), metadata=metadata)
        if (
            self.ood is not None
        ):  # the training-query summary (core.routing.ood); old routers lack it
            self.ood.save(folder / OOD_FILE, backoff=self.ood_backoff)
        else:  # a stale summary of another router must not be loaded with this one
            (folder / OOD_FILE).unlink(missing_ok=True)
        if self.training is not None:
            text = json.dumps(self.training, indent=2, default=str)
            (folder / TRAINING_FILE).write_text(text + "\n", encoding="utf-8")
        # Written last: some tokenizers write a config.json of their own, and ours must win.
        self.config.to_json(folder / CONFIG_FILE)

    def export(self, path: str | Path, *, int8: bool = False) -> Path:
        """Write this router to ONNX, to route without torch (``core.routing.export.export``)."""
        from .export import export

        return export(self, path, int8=int8)

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "auto") -> Router:
        """Load a router saved by :meth:`save`: offline, nothing unpickled, no code run.

        No code from the folder is ever imported (``trust_remote_code=False`` everywhere).
        Before the encoder is built, the configs are checked field by field, the LLM names
        and tokenizer record saved with the weights against ``config.json``, and the weights'
        shapes (read from the file's header, no tensor loaded) against the encoder config; then
        every weight must be finite.

        Raises:
            RouterFileError: a file is missing, unreadable, truncated, or does not match the
                others; the message names the file and the field.
        """
        folder = Path(path)
        _check_folder(folder)
        config = _read_config(folder)
        encoder_config = _read_encoder_config(folder)
        weights_path = folder / WEIGHTS_FILE
        metadata, shapes = _read_header(weights_path)
        record = _check_metadata(weights_path, metadata, config)
        _check_shapes(folder, shapes, encoder_config, config)
        state = _read_weights(weights_path)
        try:
            encoder = AutoModel.from_config(encoder_config, trust_remote_code=False)
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
                f"{weights_path} does not match {CONFIG_FILE}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
            )
        model.load_state_dict(state, assign=True)  # reuse the loaded tensors: no second copy
        tokenizer = _load_saved_tokenizer(folder, record.tokenizer_files, record.tokenizer_size)
        router = cls(model, tokenizer, config, device=device)
        if (folder / OOD_FILE).is_file():
            router.ood, router.ood_backoff = QueryDistribution.load(folder / OOD_FILE)
        return router


def load(path: str | Path, *, device: str | torch.device = "auto") -> Router:
    """Load a saved router; see :meth:`Router.load`."""
    return Router.load(path, device=device)


# ---------------------------------------------------------------------- save: what may be replaced


def _check_replaceable(folder: Path) -> None:
    """Refuse to save over anything but nothing, an empty folder, or a router's folder."""
    if not os.path.lexists(folder):
        return
    if not folder.is_dir():
        raise RouterFileError(f"{folder} exists and is not a folder; not saving a router over it")
    entries = sorted(folder.iterdir())
    allowed = ROUTER_FILES | TOKENIZER_FILE_NAMES | _recorded_tokenizer_files(folder)
    foreign = [p.name for p in entries if p.name not in allowed or not p.is_file()]
    if foreign:
        raise RouterFileError(
            f"{folder} holds files that are not a router's: {foreign[:10]}"
            f"{' ...' if len(foreign) > 10 else ''}; saving replaces the whole folder, "
            "so save to a new or empty folder"
        )
    config_path = folder / CONFIG_FILE
    if config_path.is_file():
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return  # a damaged router's config: the folder holds only a router's file names
        if not isinstance(raw, dict) or "llm_names" not in raw:
            raise RouterFileError(
                f"{config_path} is not a router's config (no llm_names), so {folder} is not a "
                "router's folder; save to a new or empty folder"
            )


def _recorded_tokenizer_files(folder: Path) -> set[str]:
    """The tokenizer files a router saved in ``folder`` recorded, if it can be read."""
    try:
        with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as weights:
            names = json.loads((weights.metadata() or {}).get("tokenizer_files", "[]"))
    except (SafetensorError, OSError, ValueError):
        return set()
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


# ---------------------------------------------------------------------- load: each file checked


@dataclass(frozen=True)
class _SavedRecord:
    """What :meth:`Router.save` recorded in the weights' metadata about the tokenizer."""

    tokenizer_files: list[str]
    tokenizer_size: int | None


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        leftovers = interrupted_saves(folder)
        if leftovers:
            whole = [p for p in leftovers if ".old-" in p.name]
            hint = (
                f"; {whole[0]} is the previous router, whole: rename it to {folder} to use it"
                if whole
                else ""
            )
            raise RouterFileError(
                f"{folder} is missing: a save into it was interrupted and left "
                f"{[str(p) for p in leftovers]}{hint}"
            )
    for name in (CONFIG_FILE, WEIGHTS_FILE, ENCODER_CONFIG_FILE):
        if not (folder / name).is_file():
            raise RouterFileError(f"{folder}: missing {name}; is this a saved router?")


def _read_config(folder: Path) -> RouterConfig:
    path = folder / CONFIG_FILE
    try:
        return RouterConfig.from_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ConfigError) as err:
        raise RouterFileError(f"{path}: unreadable config ({err})") from err


def _read_encoder_config(folder: Path) -> PretrainedConfig:
    """The encoder's config, built from its fields alone: no weights, no code from the folder."""
    path = folder / ENCODER_CONFIG_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RouterFileError(f"{path}: unreadable ({err})") from err
    if not isinstance(raw, dict):
        raise RouterFileError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    model_type = raw.pop("model_type", None)
    if not model_type or not isinstance(model_type, str):
        raise RouterFileError(f"{path}: no model_type")
    try:
        # Strict dataclass configs (transformers 5) name a field of the wrong type.
        return AutoConfig.for_model(model_type, **raw)
    except (ValueError, TypeError, KeyError, StrictDataclassError) as err:
        raise RouterFileError(f"{path}: unusable ({err})") from err


def _read_header(path: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """The weights file's metadata and each tensor's shape, read from its header only."""
    try:
        with safe_open(str(path), framework="pt") as weights:
            metadata = weights.metadata() or {}
            shapes = {
                key: tuple(weights.get_slice(key).get_shape())
                for key in weights.keys()  # noqa: SIM118
            }
    except (SafetensorError, OSError) as err:
        raise RouterFileError(f"{path}: unreadable or truncated ({err})") from err
    return metadata, shapes


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor in the weights file; a NaN or an infinity anywhere is refused."""
    try:
        with safe_open(str(path), framework="pt") as weights:
            state = {key: weights.get_tensor(key) for key in weights.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise RouterFileError(f"{path}: unreadable or truncated ({err})") from err
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise RouterFileError(
                f"{path}: tensor {key} holds {bad} NaN or infinite values; "
                "the router cannot route on it"
            )
    return state


def _check_metadata(path: Path, metadata: Mapping[str, str], config: RouterConfig) -> _SavedRecord:
    """Parse what save recorded with the weights, and check its LLM names against the config.

    Routers saved before a field was recorded lack it; a missing field is not checked.
    """
    tokenizer_files = _metadata_json(path, metadata, "tokenizer_files", [])
    if not isinstance(tokenizer_files, list) or not all(
        isinstance(n, str) for n in tokenizer_files
    ):
        raise RouterFileError(
            f"{path}: metadata field tokenizer_files must be a JSON list of file names, "
            f"got {metadata['tokenizer_files'][:100]!r}"
        )
    tokenizer_size = _metadata_int(path, metadata, "tokenizer_size")
    llm_names = _metadata_json(path, metadata, "llm_names", None)
    if llm_names is not None and (
        not isinstance(llm_names, list) or not all(isinstance(n, str) for n in llm_names)
    ):
        raise RouterFileError(
            f"{path}: metadata field llm_names must be a JSON list of names, "
            f"got {metadata['llm_names'][:100]!r}"
        )
    num_llms = _metadata_int(path, metadata, "num_llms")
    if llm_names is not None and num_llms is not None and num_llms != len(llm_names):
        raise RouterFileError(
            f"{path}: metadata field num_llms is {num_llms} but llm_names lists {len(llm_names)}"
        )
    if llm_names is not None and llm_names != list(config.llm_names):
        raise RouterFileError(
            f"{path} does not match {CONFIG_FILE}: the weights were saved for the LLMs "
            f"{llm_names}, {CONFIG_FILE} names {list(config.llm_names)}; the folder mixes two "
            "routers"
        )
    if llm_names is None and num_llms is not None and num_llms != len(config.llm_names):
        raise RouterFileError(
            f"{path} does not match {CONFIG_FILE}: the weights were saved for {num_llms} LLMs, "
            f"{CONFIG_FILE} names {len(config.llm_names)}"
        )
    return _SavedRecord(tokenizer_files=tokenizer_files, tokenizer_size=tokenizer_size)


def _metadata_json(path: Path, metadata: Mapping[str, str], field: str, default: Any) -> Any:
    if field not in metadata:
        return default
    try:
        return json.loads(metadata[field])
    except json.JSONDecodeError as err:
        raise RouterFileError(
            f"{path}: metadata field {field} is not JSON ({err}): {metadata[field][:100]!r}"
        ) from err


def _metadata_int(path: Path, metadata: Mapping[str, str], field: str) -> int | None:
    if field not in metadata:
        return None
    text = metadata[field]
    if not text.isdigit() or int(text) < 1:
        raise RouterFileError(
            f"{path}: metadata field {field} must be a positive integer, got {text[:100]!r}"
        )
    return int(text)


def _check_shapes(
    folder: Path,
    shapes: Mapping[str, tuple[int, ...]],
    encoder_config: PretrainedConfig,
    config: RouterConfig,
) -> None:
    """Check the fields that decide the encoder's size against the weights' header.

    Runs before the encoder is built, so that a config asking for a far larger encoder than
    the weights hold is refused before it takes any memory.
    """
    weights = folder / WEIGHTS_FILE
    embeddings = shapes.get("head.llm_embeddings")
    if embeddings is not None and len(embeddings) == 2:
        rows, dim = embeddings
        if rows != len(config.llm_names):
            raise RouterFileError(
                f"{weights} does not match {CONFIG_FILE}: it holds {rows} LLM embeddings, "
                f"llm_names lists {len(config.llm_names)}"
            )
        _check_size_field(folder, encoder_config, "hidden_size", dim, "head.llm_embeddings")
    layers = {
        int(match.group(1))
        for key in shapes
        if key.startswith("encoder.") and (match := _LAYER_INDEX.search(key))
    }
    if layers:
        _check_size_field(folder, encoder_config, "num_hidden_layers", max(layers) + 1, "layers")
    encoder_keys = [key for key in shapes if key.startswith("encoder.")]
    for field, suffix in _SIZE_FIELDS:
        found = [key for key in encoder_keys if key.endswith(suffix)]
        if len(found) == 1 and shapes[found[0]]:
            _check_size_field(folder, encoder_config, field, shapes[found[0]][0], found[0])


def _check_size_field(
    folder: Path, encoder_config: PretrainedConfig, field: str, held: int, where: str
) -> None:
    value = getattr(encoder_config, field, None)
    if isinstance(value, int) and value != held:
        raise RouterFileError(
            f"{folder / ENCODER_CONFIG_FILE} does not match {folder / WEIGHTS_FILE}: {field} is "
            f"{value}, the weights hold {held} ({where})"
        )


# ---------------------------------------------------------------------- tokenizer


def _load_saved_tokenizer(
    folder: Path, tokenizer_files: Sequence[str], tokenizer_size: int | None
) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a router, checked against what :meth:`Router.save` recorded."""
    missing = [name for name in tokenizer_files if not (folder / name).is_file()]
    if missing:
        raise RouterFileError(f"{folder}: missing tokenizer files {missing}")
    try:
        tokenizer = load_tokenizer(folder)
    except (OSError, ValueError) as err:
        if _asks_for_code(folder / TOKENIZER_CONFIG_FILE):
            raise RouterFileError(
                f"{folder / TOKENIZER_CONFIG_FILE}: its auto_map asks to run code from the "
                "folder; routerdc never runs code from a router folder"
            ) from err
        raise RouterFileError(f"{folder}: cannot load the tokenizer ({err})") from err
    if tokenizer_size is not None and len(tokenizer) != tokenizer_size:
        raise RouterFileError(
            f"{folder}: the tokenizer has {len(tokenizer)} tokens, the router was saved with "
            f"{tokenizer_size}"
        )
    return tokenizer


def _asks_for_code(tokenizer_config: Path) -> bool:
    try:
        raw = json.loads(tokenizer_config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and "auto_map" in raw


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
