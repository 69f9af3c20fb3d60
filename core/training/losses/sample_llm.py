"""The sample-LLM contrastive loss (RouterDC, eq. 3).

For each query, the K+ best-scoring LLMs are positives and the K- worst are negatives; each
positive t+ adds -log(e^{s(t+)} / (e^{s(t+)} + sum_{t-} e^{s(t-)})), s = cos / tau.
A positive that scores 0 is skipped; a "negative" scoring above ``negative_max_score`` is
dropped. With partial labels, LLMs without a score are neither positive nor negative, and a
positive never serves as its own negative (possible when fewer than K+ + K- LLMs are scored).
LLMs tied at the K-th score all count (see :func:`sample_llm_loss`).
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError


def sample_llm_loss(
    logits: torch.Tensor,
    scores: torch.Tensor,
    *,
    top_k_positive: int = 3,
    top_k_negative: int = 3,
    negative_max_score: float = 0.5,
) -> torch.Tensor:
    """Sample-LLM loss on plain tensors.

    Ties are shared, never broken by column order: an LLM tied with the K+-th best score is a
    positive too, and one tied with the K--th worst is a negative. Without ties this is the
    paper's loss exactly; with 0/1 scores (right or wrong) every right LLM is a positive
    against the wrong ones, whatever the order of the LLMs.

    Args:
        logits: ``(B, T)`` cosine similarities over temperature.
        scores: ``(B, T)`` scores in [0, 1], NaN where an LLM was not scored.

    Returns:
        A scalar: the sum over positives of the batch mean, as in the paper's code.
    """
    batch, num_llms = logits.shape
    known = ~torch.isnan(scores)  # (B, T)
    low = torch.where(known, scores, torch.full_like(scores, float("inf")))
    high = torch.where(known, scores, torch.full_like(scores, float("-inf")))
    # The K-th best / worst known score of each query: (B, 1).
    kth_best = high.topk(min(top_k_positive, num_llms), dim=1).values[:, -1:]
    kth_worst = low.topk(min(top_k_negative, num_llms), dim=1, largest=False).values[:, -1:]
    positive = known & (scores >= kth_best) & (scores > 0)  # (B, T)
    negative = known & (scores <= kth_worst) & (scores <= negative_max_score)  # (B, T)

    # For positive p: -log(e^{s_p} / (e^{s_p} + sum_{n negative, n != p} e^{s_n})).
    others = negative[:, None, :] & ~torch.eye(num_llms, dtype=torch.bool, device=logits.device)
    negative_logits = torch.where(others, logits[:, None, :], float("-inf"))  # (B, T, T)
    denominator = torch.logsumexp(torch.cat([logits[:, :, None], negative_logits], 2), 2)
    log_prob = logits - denominator  # (B, T)
    return -(log_prob * positive).sum() / batch


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
