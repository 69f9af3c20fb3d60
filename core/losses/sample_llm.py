"""The sample-LLM contrastive loss (RouterDC, eq. 3).

For each query, the K+ best-scoring LLMs are positives and the K- worst are negatives; each
positive t+ adds -log(e^{s(t+)} / (e^{s(t+)} + sum_{t-} e^{s(t-)})), s = cos / tau.
A positive that scores 0 is skipped; a "negative" scoring above ``negative_max_score`` is
dropped. With partial labels, LLMs without a score are neither positive nor negative, and a
positive never serves as its own negative (possible when fewer than K+ + K- LLMs are scored).
"""

from __future__ import annotations

import torch
from torch import nn

from core.errors import ConfigError


def sample_llm_loss(
    logits: torch.Tensor,
    scores: torch.Tensor,
    *,
    top_k_positive: int = 3,
    top_k_negative: int = 3,
    negative_max_score: float = 0.5,
) -> torch.Tensor:
    """Sample-LLM loss on plain tensors.

    Args:
        logits: ``(B, T)`` cosine similarities over temperature.
        scores: ``(B, T)`` scores in [0, 1], NaN where an LLM was not scored.

    Returns:
        A scalar: the sum over positive ranks of the batch mean, as in the paper's code.
    """
    batch, num_llms = logits.shape
    known = ~torch.isnan(scores)  # (B, T)
    neg_inf = torch.tensor(float("-inf"), device=logits.device, dtype=logits.dtype)

    ranked_desc = torch.where(known, scores, torch.tensor(float("-inf"), device=scores.device))
    pos_scores, pos_index = ranked_desc.sort(dim=-1, descending=True)  # (B, T)
    ranked_asc = torch.where(known, scores, torch.tensor(float("inf"), device=scores.device))
    neg_scores, neg_index = ranked_asc.sort(dim=-1)
    k_neg = min(top_k_negative, num_llms)
    neg_scores, neg_index = neg_scores[:, :k_neg], neg_index[:, :k_neg]  # (B, K-)
    neg_valid = torch.isfinite(neg_scores) & (neg_scores <= negative_max_score)
    neg_logits = logits.gather(1, neg_index)  # (B, K-)

    total = logits.new_zeros(())
    for rank in range(min(top_k_positive, num_llms)):
        pos = pos_index[:, rank : rank + 1]  # (B, 1)
        pos_valid = torch.isfinite(pos_scores[:, rank]) & (pos_scores[:, rank] > 0)  # (B,)
        candidates = torch.where(neg_valid & (neg_index != pos), neg_logits, neg_inf)
        pos_logit = logits.gather(1, pos)  # (B, 1)
        log_prob = pos_logit[:, 0] - torch.logsumexp(torch.cat([pos_logit, candidates], 1), 1)
        total = total + (-log_prob * pos_valid).sum() / batch
    return total


class SampleLLMLoss(nn.Module):
    """:func:`sample_llm_loss` with its hyper-parameters checked once, at construction."""

    def __init__(
        self, top_k_positive: int = 3, top_k_negative: int = 3, negative_max_score: float = 0.5
    ) -> None:
        super().__init__()
        for name, value in (("top_k_positive", top_k_positive), ("top_k_negative", top_k_negative)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if (
            not isinstance(negative_max_score, (int, float))
            or isinstance(negative_max_score, bool)
            or not 0.0 <= negative_max_score <= 1.0
        ):
            raise ConfigError(f"negative_max_score must lie in [0, 1], got {negative_max_score!r}")
        self.top_k_positive = top_k_positive
        self.top_k_negative = top_k_negative
        self.negative_max_score = negative_max_score

    def forward(self, logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return sample_llm_loss(
            logits,
            scores,
            top_k_positive=self.top_k_positive,
            top_k_negative=self.top_k_negative,
            negative_max_score=self.negative_max_score,
        )
