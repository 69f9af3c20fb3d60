"""The two RouterDC losses on hand-made tensors, against values computed by hand."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from core.errors import ConfigError
from core.training.losses import (
    SampleLLMLoss,
    SampleSampleLoss,
    sample_llm_loss,
    sample_sample_loss,
)

NAN = float("nan")


def neg_log_softmax_first(*logits: float) -> float:
    """-log(e^{x_0} / sum_i e^{x_i}), written out."""
    return -math.log(math.exp(logits[0]) / sum(math.exp(x) for x in logits))


def llm_loss(logits: list[list[float]], scores: list[list[float]], **options: Any) -> float:
    return sample_llm_loss(torch.tensor(logits), torch.tensor(scores), **options).item()


# ---------------------------------------------------------------------- sample-LLM loss


def test_sample_llm_loss_sums_each_positive_rank_against_the_low_scoring_negatives() -> None:
    a, b, c, d = 0.3, -0.2, 0.5, 0.1
    # Positives by score: LLM 0 (1.0), LLM 1 (0.8), LLM 2 (0.2). Negatives, worst first:
    # LLM 3 (0.0), LLM 2 (0.2), LLM 1 (0.8, above 0.5 so dropped).
    expected = (
        neg_log_softmax_first(a, d, c)
        + neg_log_softmax_first(b, d, c)
        + neg_log_softmax_first(c, d)  # LLM 2 is never its own negative
    )
    got = llm_loss([[a, b, c, d]], [[1.0, 0.8, 0.2, 0.0]])
    assert got == pytest.approx(expected, rel=1e-6)


def test_sample_llm_loss_shares_ties_instead_of_breaking_them_by_column_order() -> None:
    a, b, c, d = 0.3, -0.2, 0.5, 0.1
    # Right (1) or wrong (0) answers: with K+ = 1 every right LLM is a positive, since all tie
    # for best; each is contrasted with both wrong LLMs.
    expected = neg_log_softmax_first(a, b, d) + neg_log_softmax_first(c, b, d)
    got = llm_loss([[a, b, c, d]], [[1.0, 0.0, 1.0, 0.0]], top_k_positive=1, top_k_negative=1)
    assert got == pytest.approx(expected, rel=1e-6)


def test_sample_llm_loss_does_not_depend_on_the_order_of_the_llms() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 6, generator=generator)
    scores = torch.randint(0, 2, (8, 6), generator=generator).float()
    order = torch.randperm(6, generator=generator)
    loss = sample_llm_loss(logits, scores)
    permuted = sample_llm_loss(logits[:, order], scores[:, order])
    assert permuted.item() == pytest.approx(loss.item(), rel=1e-6)


def test_sample_llm_loss_skips_a_positive_that_scores_zero() -> None:
    a, b, c, d = 0.2, 0.4, -0.1, 0.7
    # Only LLM 3 scores above 0; the second-best "positive" scores 0 and adds nothing.
    expected = neg_log_softmax_first(d, a, b, c)
    got = llm_loss([[a, b, c, d]], [[0.0, 0.0, 0.0, 1.0]], top_k_positive=2)
    assert got == pytest.approx(expected, rel=1e-6)


def test_sample_llm_loss_drops_negatives_scoring_above_the_threshold() -> None:
    a, b, c = 0.9, 0.1, -0.3
    scores = [[1.0, 0.6, 0.7]]
    # With the paper's 0.5 every candidate negative scores too well: nothing to push away.
    assert llm_loss([[a, b, c]], scores, top_k_positive=1) == pytest.approx(0.0, abs=1e-7)
    # With the threshold at 1.0, LLMs 1 and 2 are negatives (LLM 0 is the positive itself).
    got = llm_loss([[a, b, c]], scores, top_k_positive=1, negative_max_score=1.0)
    assert got == pytest.approx(neg_log_softmax_first(a, b, c), rel=1e-6)


def test_sample_llm_loss_never_uses_a_positive_as_its_own_negative() -> None:
    a, b = 0.4, -0.5
    # LLM 0 (0.4) is the positive and also among the two lowest scores, under 0.5.
    got = llm_loss([[a, b]], [[0.4, 0.1]], top_k_positive=1, top_k_negative=2)
    assert got == pytest.approx(neg_log_softmax_first(a, b), rel=1e-6)
    own_negative = -math.log(math.exp(a) / (2 * math.exp(a) + math.exp(b)))
    assert got != pytest.approx(own_negative, rel=1e-3)


def test_sample_llm_loss_treats_missing_scores_as_neither_positive_nor_negative() -> None:
    a, b, c, d = 0.1, 2.0, -0.4, 3.0
    # LLMs 1 and 3 are unscored (NaN): only LLM 0 (positive) and LLM 2 (negative) count, and
    # the large logits of the unscored LLMs must not enter the denominator.
    got = llm_loss([[a, b, c, d]], [[1.0, NAN, 0.0, NAN]])
    assert got == pytest.approx(neg_log_softmax_first(a, c), rel=1e-6)


def test_sample_llm_loss_averages_over_the_whole_batch_per_rank() -> None:
    first = [0.5, -0.5]
    # The second row has no positive (all zero): it adds 0 but still counts in the batch mean.
    got = llm_loss([first, [0.3, 0.3]], [[1.0, 0.0], [0.0, 0.0]], top_k_positive=1)
    assert got == pytest.approx(neg_log_softmax_first(*first) / 2, rel=1e-6)


def test_sample_llm_loss_gives_exactly_zero_gradient_to_unscored_llms() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 6, generator=generator, requires_grad=True)
    scores = torch.rand(8, 6, generator=generator)
    hidden = torch.rand(8, 6, generator=generator) < 0.5
    hidden[:, 0] = False  # every row keeps at least one score
    scores = scores.masked_fill(hidden, NAN)
    sample_llm_loss(logits, scores).backward()
    assert logits.grad is not None
    assert torch.count_nonzero(logits.grad[hidden]) == 0
    assert torch.count_nonzero(logits.grad[~hidden]) > 0


def test_sample_llm_loss_with_missing_scores_equals_the_loss_on_scored_llms_only() -> None:
    logits = torch.tensor([[0.2, 0.9, -0.3, 0.5, 0.0]])
    scores = torch.tensor([[0.9, NAN, 0.1, 0.4, NAN]])
    scored = [0, 2, 3]
    full = sample_llm_loss(logits, scores)
    reduced = sample_llm_loss(logits[:, scored], scores[:, scored])
    assert full.item() == pytest.approx(reduced.item(), rel=1e-6)


def test_sample_llm_loss_module_matches_the_function() -> None:
    logits = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    scores = torch.tensor([[0.0, 0.3, 1.0, 0.5]])
    module = SampleLLMLoss(top_k_positive=2, top_k_negative=2, negative_max_score=0.4)
    expected = sample_llm_loss(
        logits, scores, top_k_positive=2, top_k_negative=2, negative_max_score=0.4
    )
    assert module(logits, scores).item() == expected.item()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"top_k_positive": 0}, "top_k_positive"),
        ({"top_k_positive": 1.5}, "top_k_positive"),
        ({"top_k_positive": True}, "top_k_positive"),
        ({"top_k_negative": -1}, "top_k_negative"),
        ({"negative_max_score": 1.5}, "negative_max_score"),
        ({"negative_max_score": NAN}, "negative_max_score"),
        ({"negative_max_score": "0.5"}, "negative_max_score"),
    ],
)
def test_sample_llm_loss_rejects_a_bad_argument_naming_it(
    options: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        SampleLLMLoss(**options)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


# ---------------------------------------------------------------------- sample-sample loss


def angle(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def cosine(u: list[float], v: list[float]) -> float:
    return (u[0] * v[0] + u[1] * v[1]) / (math.hypot(*u) * math.hypot(*v))


def test_sample_sample_loss_matches_a_hand_computation_when_the_picks_are_forced() -> None:
    # Two clusters of two: each anchor's only partner is its positive, and with H = 2 both
    # other-cluster queries are its negatives, so the random draw cannot matter.
    vectors = [angle(0), angle(30), [2 * x for x in angle(100)], angle(150)]
    clusters = [0, 0, 1, 1]
    expected = 0.0
    for anchor in range(4):
        partner = next(j for j in range(4) if j != anchor and clusters[j] == clusters[anchor])
        others = [j for j in range(4) if clusters[j] != clusters[anchor]]
        sims = [cosine(vectors[anchor], vectors[j]) / 0.5 for j in [partner, *others]]
        expected += neg_log_softmax_first(*sims) / 4
    got = sample_sample_loss(
        torch.tensor(vectors),
        torch.tensor(clusters),
        num_negatives=2,
        temperature=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_sample_sample_loss_skips_anchors_without_a_same_cluster_partner() -> None:
    vectors = [angle(0), angle(20), angle(90), angle(120), angle(250)]
    clusters = [0, 0, 1, 1, 2]  # query 4 is alone in its cluster
    expected = 0.0
    for anchor in range(4):
        partner = next(j for j in range(5) if j != anchor and clusters[j] == clusters[anchor])
        others = [j for j in range(5) if clusters[j] != clusters[anchor]]  # 3 of them: H = 3
        sims = [cosine(vectors[anchor], vectors[j]) for j in [partner, *others]]
        expected += neg_log_softmax_first(*sims) / 4
    got = sample_sample_loss(torch.tensor(vectors), torch.tensor(clusters), num_negatives=3)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_sample_sample_loss_is_reproducible_with_a_seeded_generator() -> None:
    vectors = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    clusters = torch.tensor([0, 1, 2, 3] * 4)

    def run(seed: int) -> float:
        generator = torch.Generator().manual_seed(seed)
        return sample_sample_loss(vectors, clusters, generator=generator).item()

    assert run(7) == run(7)
    # The positive and negatives are drawn at random, so another seed gives another value.
    assert len({run(seed) for seed in range(5)}) > 1


def test_sample_sample_loss_is_zero_with_a_graph_when_no_anchor_has_a_partner() -> None:
    vectors = torch.randn(4, 3, requires_grad=True)
    loss = sample_sample_loss(vectors, torch.tensor([0, 1, 2, 3]), num_negatives=3)
    assert loss.item() == 0.0
    loss.backward()
    assert vectors.grad is not None
    assert torch.count_nonzero(vectors.grad) == 0


def test_sample_sample_loss_skips_anchors_with_fewer_than_h_other_cluster_queries() -> None:
    vectors = torch.randn(4, 3)
    # Each anchor has a partner but only two other-cluster queries, fewer than H = 3.
    loss = sample_sample_loss(vectors, torch.tensor([0, 0, 1, 1]), num_negatives=3)
    assert loss.item() == 0.0


def test_sample_sample_loss_module_matches_the_function() -> None:
    vectors = torch.randn(12, 4, generator=torch.Generator().manual_seed(2))
    clusters = torch.tensor([0, 1, 2] * 4)
    module = SampleSampleLoss(num_negatives=2, temperature=0.7)
    got = module(vectors, clusters, torch.Generator().manual_seed(3))
    expected = sample_sample_loss(
        vectors,
        clusters,
        num_negatives=2,
        temperature=0.7,
        generator=torch.Generator().manual_seed(3),
    )
    assert got.item() == expected.item()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"num_negatives": 0}, "num_negatives"),
        ({"num_negatives": 2.0}, "num_negatives"),
        ({"num_negatives": True}, "num_negatives"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": NAN}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"temperature": "1"}, "temperature"),
    ],
)
def test_sample_sample_loss_rejects_a_bad_argument_naming_it(
    options: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        SampleSampleLoss(**options)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
