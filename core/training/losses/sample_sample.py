"""The sample-sample contrastive loss (RouterDC, eq. 5).

For each query (the anchor), one other in-batch query of the same cluster is the positive and
H queries of other clusters are negatives; the loss is -log softmax over their cosine
similarities to the anchor, at the positive. Anchors with no same-cluster partner or fewer
than H other-cluster queries in the batch are skipped, as in the paper's code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError


def sample_sample_loss(
    vectors: torch.Tensor,
    clusters: torch.Tensor,
    *,
    num_negatives: int = 3,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample-sample loss on plain tensors.

    Args:
        vectors: ``(B, D)`` query representations (encoder outputs).
        clusters: ``(B,)`` integer cluster ids.
        num_negatives: H, other-cluster queries per anchor.
        temperature: divides the cosine similarities (the paper uses 1).
        generator: draws the positive and negatives, for reproducibility.

    Returns:
        Scalar mean over the anchors that have a positive and H negatives (0 when none has).
    """
    batch = vectors.shape[0]
    unit = F.normalize(vectors.float(), dim=-1)
    similarity = unit @ unit.T / temperature  # (B, B)
    same = clusters[:, None] == clusters[None, :]  # (B, B)
    eye = torch.eye(batch, dtype=torch.bool, device=vectors.device)
    positive_pool, negative_pool = same & ~eye, ~same
    valid = positive_pool.any(dim=1) & (negative_pool.sum(dim=1) >= num_negatives)  # (B,)
    if not valid.any():
        return vectors.sum() * 0.0  # keeps the graph; nothing to contrast in this batch

    # Uniform random picks: random keys, -1 outside the pool, then argmax / top-k.
    keys = torch.rand(batch, batch, generator=generator).to(vectors.device)
    positive = torch.where(positive_pool, keys, -1.0).argmax(dim=1, keepdim=True)  # (B, 1)
    k = min(num_negatives, batch)
    negatives = torch.where(negative_pool, keys, -1.0).topk(k, dim=1).indices  # (B, H)
    picked = similarity.gather(1, torch.cat([positive, negatives], dim=1))  # (B, 1 + H)
    loss = -F.log_softmax(picked, dim=1)[:, 0]
    return loss[valid].mean()


class SampleSampleLoss(nn.Module):
    """:func:`sample_sample_loss` with its hyper-parameters checked at construction."""

    def __init__(self, num_negatives: int = 3, temperature: float = 1.0) -> None:
        super().__init__()
        is_integer = isinstance(num_negatives, int) and not isinstance(num_negatives, bool)
        if not is_integer or num_negatives < 1:
            raise ConfigError(f"num_negatives must be an integer >= 1, got {num_negatives!r}")
        if (
            not isinstance(temperature, (int, float))
            or isinstance(temperature, bool)
            or not 0 < temperature < float("inf")
        ):
            raise ConfigError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.num_negatives = num_negatives
        self.temperature = temperature

    def forward(
        self,
        vectors: torch.Tensor,
        clusters: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return sample_sample_loss(
            vectors,
            clusters,
            num_negatives=self.num_negatives,
            temperature=self.temperature,
            generator=generator,
        )
