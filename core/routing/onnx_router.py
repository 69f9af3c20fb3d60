"""A router exported to ONNX: routing on ONNX Runtime and the ``tokenizers`` library alone.

``routerdc export`` (or ``Router.export``, :mod:`core.routing.export`) writes a folder that
:func:`core.load` recognises by its ``model.onnx``. Loading it and routing imports neither torch
nor transformers: an app that only routes needs ``pip install "routerdc[onnx]"``'s
onnxruntime, tokenizers and numpy.

The folder holds:

- ``model.onnx``: encoder, pooling, projection and the normalised LLM embeddings / temperature,
  from token ids and attention mask ``(N, L)`` to logits ``(N, T)`` and query vectors ``(N, D)``;
- ``tokenizer.json``: the fast tokenizer's backend, with truncation and padding set at load;
- ``config.json``: the router's :class:`~core.config.RouterConfig`, as a saved router has it;
- ``export.json``: how it was exported (format, opset, int8), the token limit and padding.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import RouterConfig
from ..errors import ConfigError, RouterFileError
from .base import BaseRouter, length_sorted_batches
from .ood import OOD_FILE, QueryDistribution

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
EXPORT_FILE = "export.json"
EXPORT_FORMAT = "onnx"
# Tokens (rows x padded length) per session run. A run holds the attention scores of all its
# rows, (rows, heads, L, L), and ONNX Runtime's memory arena keeps what it grew to: one run of
# 64 queries of 400 tokens took an int8 routing process to 790 MiB at its peak, runs of at most
# 2048 tokens to 342 MiB, 1024 to 189 MiB, 512 to 150 MiB. 64 short queries take two runs.
MAX_RUN_TOKENS = 1024
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("logits", "query_vectors")
# Keys export.json must hold, with their types.
_EXPORT_FIELDS: dict[str, type] = {
    "format": str,
    "opset": int,
    "int8": bool,
    "max_tokens": int,
    "pad_id": int,
    "pad_token": str,
}


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``core.routing.export.export`` (has model.onnx)."""
    return (Path(path) / ONNX_FILE).is_file()


class OnnxRouter(BaseRouter):
    """A router exported to ONNX; everything :class:`core.Router` routes with, without torch.

    ``route``, ``route_batch``, ``rank``, ``probabilities``, ``allowed``/``exclude`` and cost
    weights come from :class:`~core.routing.base.BaseRouter`, as for the torch router. Many threads
    may route with one OnnxRouter at once: the tokenizer is configured once at load and only
    read afterwards, and ``InferenceSession.run`` is thread-safe.

    Example:
        >>> router = core.load("my-router-onnx")               # doctest: +SKIP
        >>> router.route("Natalia sold 48 clips ...").llm      # doctest: +SKIP
        'meta-math/MetaMath-Mistral-7B'
    """

    def __init__(
        self,
        session: Any,
        tokenizer: Any,
        config: RouterConfig,
        *,
        max_tokens: int,
        int8: bool = False,
        opset: int | None = None,
    ) -> None:
        """Wrap a session and a configured tokenizer; :meth:`load` builds both from a folder.

        Args:
            session: an ``onnxruntime.InferenceSession`` of the exported model.
            tokenizer: a ``tokenizers.Tokenizer`` that already truncates on the left to
                ``max_tokens`` and pads to the longest query of a batch.
            config: the router's config (LLM names, costs, ...).
            max_tokens: the token limit the tokenizer truncates to.
            int8: whether the model's weights are dynamically quantised to int8.
            opset: the ONNX opset it was exported with, for the record.
        """
        self.session = session
        self.tokenizer = tokenizer
        self.config = config
        self.max_tokens = max_tokens
        self.int8 = int8
        self.opset = opset
        inputs = {i.name for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        if inputs != set(INPUT_NAMES) or outputs != list(OUTPUT_NAMES):
            raise RouterFileError(
                f"the ONNX model takes {sorted(inputs)} and gives {outputs}; "
                f"expected {list(INPUT_NAMES)} -> {list(OUTPUT_NAMES)}"
            )

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: Literal["auto", "cpu", "cuda"] | str = "auto",
        threads: int | None = None,
    ) -> OnnxRouter:
        """Load a router exported by :func:`core.routing.export.export`.

        Args:
            path: the exported folder.
            device: ``"auto"`` or ``"cpu"`` run on the CPU; ``"cuda"`` on a GPU, which needs
                the onnxruntime-gpu package.
            threads: intra-op threads of ONNX Runtime; None lets it choose (one per core).

        Raises:
            RouterFileError: a file is missing, unreadable, or the files disagree.
            ConfigError: onnxruntime or tokenizers is not installed, or ``device`` is unknown.
        """
        folder = Path(path)
        for name in (ONNX_FILE, TOKENIZER_FILE, CONFIG_FILE, EXPORT_FILE):
            if not (folder / name).is_file():
                raise RouterFileError(f"{folder}: missing {name}; is this an exported router?")
        ort, tokenizers = _import_runtime()
        try:
            config = RouterConfig.from_json(folder / CONFIG_FILE)
        except (json.JSONDecodeError, TypeError, ConfigError) as err:
            raise RouterFileError(f"{folder / CONFIG_FILE}: unreadable config ({err})") from err
        export_info = read_export_info(folder / EXPORT_FILE)
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        except Exception as err:  # the Rust side raises plain Exception on a bad file
            raise RouterFileError(f"{folder / TOKENIZER_FILE}: unreadable ({err})") from err
        configure_tokenizer(tokenizer, export_info)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
                raise ConfigError(f"threads must be an integer >= 1 or None, got {threads!r}")
            options.intra_op_num_threads = threads
        providers = _providers(ort, device)
        try:
            session = ort.InferenceSession(
                str(folder / ONNX_FILE), sess_options=options, providers=providers
            )
        except Exception as err:  # onnxruntime's InvalidProtobuf, Fail, ... subclass Exception
            raise RouterFileError(f"{folder / ONNX_FILE}: unreadable ({err})") from err
        logits_width = session.get_outputs()[0].shape[-1]
        if isinstance(logits_width, int) and logits_width != len(config.llm_names):
            raise RouterFileError(
                f"{folder / ONNX_FILE} scores {logits_width} LLMs, {CONFIG_FILE} names "
                f"{len(config.llm_names)}"
            )
        router = cls(
            session,
            tokenizer,
            config,
            max_tokens=export_info["max_tokens"],
            int8=export_info["int8"],
            opset=export_info["opset"],
        )
        if (
            folder / OOD_FILE
        ).is_file():  # the training-query summary (core.routing.ood), if exported
            router.ood, router.ood_backoff = QueryDistribution.load(folder / OOD_FILE)
        return router

    # ------------------------------------------------------------------ encoding

    def tokenize(self, queries: Sequence[str]) -> dict[str, np.ndarray]:
        """Token ids and mask ``(B, L)`` as int64, truncated on the left, padded to the longest."""
        encodings = self.tokenizer.encode_batch(list(queries))
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }

    def logits(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Cosine logits ``(N, T)`` for each query and LLM, in ``llm_names`` order."""
        return self._run(queries, batch_size, output=0)

    def embed(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """The router's query vectors ``(N, D)`` (after the projection, when there is one)."""
        return self._run(queries, batch_size, output=1)

    def _run(self, queries: Sequence[str], batch_size: int, output: int) -> np.ndarray:
        checked = self.check_queries(queries)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        width = self.session.get_outputs()[output].shape[-1]
        parts: list[tuple[list[int], np.ndarray]] = []
        for rows in length_sorted_batches(checked, batch_size):
            tokens = self.tokenize([checked[i] for i in rows])  # each (B, L)
            step = max(1, MAX_RUN_TOKENS // tokens["input_ids"].shape[1])
            for start in range(0, len(rows), step):
                chunk = {name: array[start : start + step] for name, array in tokens.items()}
                values = self.session.run([OUTPUT_NAMES[output]], chunk)[0]
                parts.append((rows[start : start + step], values))
        if not isinstance(width, int):  # a symbolic width: take it from the first batch
            width = parts[0][1].shape[-1] if parts else len(self.config.llm_names)
        out = np.empty((len(checked), width), dtype=np.float32)
        for rows, values in parts:
            out[rows] = values
        return out


def read_export_info(path: Path) -> dict[str, Any]:
    """``export.json``, checked: the format, opset, int8 flag, token limit and padding."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise RouterFileError(f"{path}: unreadable ({err})") from err
    if not isinstance(info, dict):
        raise RouterFileError(f"{path}: expected a JSON object, got {type(info).__name__}")
    for key, kind in _EXPORT_FIELDS.items():
        value = info.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise RouterFileError(f"{path}: {key} must be a {kind.__name__}, got {value!r}")
    if info["format"] != EXPORT_FORMAT:
        raise RouterFileError(f"{path}: format must be {EXPORT_FORMAT!r}, got {info['format']!r}")
    if info["max_tokens"] < 3:
        raise RouterFileError(f"{path}: max_tokens must be >= 3, got {info['max_tokens']!r}")
    return info


def configure_tokenizer(tokenizer: Any, export_info: dict[str, Any]) -> None:
    """Truncate on the left to the router's token limit (special tokens included, as
    transformers counts them) and pad each batch to its longest query, on the right."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=export_info["max_tokens"], direction="left")
    tokenizer.enable_padding(
        direction="right", pad_id=export_info["pad_id"], pad_token=export_info["pad_token"]
    )


def _import_runtime() -> tuple[Any, Any]:
    try:
        import onnxruntime
        import tokenizers
    except ImportError as err:
        raise ConfigError(
            f"an exported router needs onnxruntime and tokenizers ({err}); "
            'install them with pip install "routerdc[onnx]"'
        ) from err
    return onnxruntime, tokenizers


def _providers(ort: Any, device: str) -> list[str]:
    """ONNX Runtime execution providers for ``device``."""
    if device in ("auto", "cpu"):
        return ["CPUExecutionProvider"]
    if device == "cuda":
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise ConfigError(
                f"device 'cuda' needs onnxruntime-gpu; this onnxruntime offers {available}"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ConfigError(
        f"device must be 'auto', 'cpu' or 'cuda' for an exported router, got {device!r}"
    )
