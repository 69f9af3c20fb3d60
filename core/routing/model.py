"""The RouterDC network: a text encoder and one learnable embedding per candidate LLM.

p(t | x) = softmax_t(cos(E(x), k_t) / tau). An optional linear projection (initialised to
the identity) sits between the pooled encoder output and the LLM embeddings; it gives a
frozen encoder something to adapt.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ..config import Pooling
from .encoder import pool

# The paper initialises LLM embeddings from N(0, 0.78^2).
LLM_EMBEDDING_STD = 0.78


class RouterHead(nn.Module):
    """What sits on top of the pooled encoder output: projection and LLM embeddings."""

    def __init__(self, dim: int, num_llms: int, *, temperature: float, projection: bool) -> None:
        super().__init__()
        self.temperature = temperature
        self.projection: nn.Linear | None = None
        if projection:
            self.projection = nn.Linear(dim, dim)
            with torch.no_grad():
                self.projection.weight.copy_(torch.eye(dim))
                self.projection.bias.zero_()
        self.llm_embeddings = nn.Parameter(torch.randn(num_llms, dim) * LLM_EMBEDDING_STD)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map pooled vectors ``(B, D)`` to ``(logits (B, T), query_vectors (B, D))``."""
        vectors = self.projection(pooled) if self.projection is not None else pooled
        cosine = F.normalize(vectors.float(), dim=-1) @ F.normalize(self.llm_embeddings, dim=-1).T
        return cosine / self.temperature, vectors


class RouterDCModel(nn.Module):
    """Encoder + :class:`RouterHead`; ``forward`` takes a tokenised batch."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        num_llms: int,
        *,
        pooling: Pooling,
        temperature: float,
        projection: bool,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling: Pooling = pooling
        self.head = RouterHead(
            encoder.config.hidden_size, num_llms, temperature=temperature, projection=projection
        )

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled encoder output ``(B, D)`` for token ids ``(B, L)``."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, T), query_vectors (B, D))`` for a tokenised batch."""
        return self.head(self.encode(input_ids, attention_mask))
