"""Out-of-distribution awareness: the in-distribution score and back-off rule (core.routing.ood)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

import core
from core.errors import ConfigError, RouterFileError
from core.routing.ood import OOD_FILE, QueryDistribution, back_off, backoff_weight, check_backoff

# Group A, the training data: two topics, each with its specialist LLM, and a generalist that
# is never the best on a query but is the best LLM over the whole training data.
GROUP_A = {
    "math": "solve the equation integral derivative number algebra",
    "code": "write a python function class loop compile variable",
}
# Group B, never trained on: text of another kind altogether.
GROUP_B = "ответ пожалуйста столица город 北京 上海 天气 朋友 ★ ☂ ♫ 42 7 1999"
LLMS = ["math-llm", "code-llm", "generalist"]


def group_a_records(n_per_topic: int = 60, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for topic, words in GROUP_A.items():
        vocab = words.split()
        for i in range(n_per_topic):
            text = " ".join(rng.choice(vocab) for _ in range(rng.randint(5, 9)))
            specialist = f"{topic}-llm"
            scores = {llm: (1.0 if llm == specialist else 0.0) for llm in LLMS}
            scores["generalist"] = 0.7
            records.append({"query": f"{text} {i}", "scores": scores, "task": topic})
    rng.shuffle(records)
    return records


def group_b_queries(n: int = 20, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    vocab = GROUP_B.split()
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 9))) for _ in range(n)]


@pytest.fixture(scope="module")
def group_a_router(tiny_encoder: str) -> core.Router:
    """A frozen-encoder router trained on group A only."""
    return core.fit(
        core.RoutingData.from_records(group_a_records()),
        encoder=tiny_encoder,
        train_encoder=False,
        steps=150,
        batch_size=16,
        max_length=32,
        seed=0,
        progress=False,
    )


# ------------------------------------------------------------------ the score


def summary_of(rng: np.random.Generator, n: int = 300) -> QueryDistribution:
    """Vectors around one direction; held out from the same distribution."""
    centre = np.zeros(8)
    centre[0] = 1.0
    train = centre + 0.1 * rng.standard_normal((n, 8))
    held_out = centre + 0.1 * rng.standard_normal((100, 8))
    return QueryDistribution.from_vectors(train, held_out, ["a", "b"], neighbours=5)


def test_queries_like_the_held_out_ones_score_about_uniformly_and_far_ones_score_zero() -> None:
    rng = np.random.default_rng(0)
    summary = summary_of(rng)
    centre = np.zeros(8)
    centre[0] = 1.0
    fresh = summary.score(centre + 0.1 * rng.standard_normal((400, 8)))
    far = np.zeros((10, 8))
    far[:, 1] = 1.0  # orthogonal to everything seen

    assert ((fresh >= 0) & (fresh <= 1)).all()
    assert 0.35 < fresh.mean() < 0.65  # the empirical CDF of a like distribution: ~uniform
    assert (summary.score(far) == 0.5 / 101).all()  # below all 100 held-out ones


def test_without_held_out_vectors_a_tenth_of_the_training_ones_calibrates() -> None:
    rng = np.random.default_rng(1)

    summary = QueryDistribution.from_vectors(rng.standard_normal((50, 4)), None, ["a"])

    assert len(summary.reference) == 45 and len(summary.calibration) == 5


def test_the_summary_survives_a_save_and_load_with_its_threshold(tmp_path: Path) -> None:
    summary = summary_of(np.random.default_rng(2))

    summary.save(tmp_path / OOD_FILE, backoff=0.25)
    loaded, backoff = QueryDistribution.load(tmp_path / OOD_FILE)

    assert backoff == 0.25
    assert loaded.fallback == ["a", "b"] and loaded.neighbours == 5
    np.testing.assert_array_equal(loaded.reference, summary.reference)
    np.testing.assert_array_equal(loaded.calibration, summary.calibration)


def test_an_unreadable_summary_file_is_a_router_file_error(tmp_path: Path) -> None:
    path = tmp_path / OOD_FILE
    path.write_bytes(b"not a safetensors file")

    with pytest.raises(RouterFileError, match="out-of-distribution summary"):
        QueryDistribution.load(path)


# ------------------------------------------------------------------ the rule


def test_the_backoff_weight_grows_linearly_as_the_score_falls_below_the_threshold() -> None:
    scores = np.array([0.0, 0.05, 0.1, 0.2, 0.9])

    np.testing.assert_allclose(backoff_weight(scores, 0.1), [1.0, 0.5, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(backoff_weight(scores, 0.0), np.zeros(5))


def test_back_off_mixes_in_a_one_hot_on_the_target_and_keeps_rows_summing_to_one() -> None:
    probabilities = np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0]])

    mixed, alpha = back_off(probabilities, np.array([0.0, 0.15]), 0.2, target=2)

    np.testing.assert_allclose(alpha, [1.0, 0.25])
    np.testing.assert_allclose(mixed[0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(mixed[1], [0.675, 0.075, 0.25])
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.1"])
def test_an_ood_backoff_outside_zero_to_one_is_a_config_error_naming_it(bad: object) -> None:
    with pytest.raises(ConfigError, match="ood_backoff"):
        check_backoff(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------ routers from fit


def test_queries_of_an_unseen_group_score_low_and_are_routed_by_the_backoff_rule(
    group_a_router: core.Router,
) -> None:
    router = group_a_router
    seen = [r["query"] for r in group_a_records(n_per_topic=15, seed=7)]
    unseen = group_b_queries()

    plain_seen = router.route_batch(seen, ood_backoff=0.0)
    plain_unseen = router.route_batch(unseen, ood_backoff=0.0)
    backed_unseen = router.route_batch(unseen, ood_backoff=0.1)

    # The generalist is the best LLM over the training data (0.7 against 0.5 a specialist).
    assert router.ood is not None and router.ood.fallback[0] == "generalist"
    seen_scores = np.array([d.in_distribution for d in plain_seen])
    unseen_scores = np.array([d.in_distribution for d in plain_unseen])
    assert seen_scores.mean() > 0.3
    assert (unseen_scores <= 0.05).all()
    assert not any(d.backed_off for d in plain_unseen)
    assert all(d.backed_off and d.llm == "generalist" for d in backed_unseen)
    assert all(d.probabilities["generalist"] > 0.5 for d in backed_unseen)
    # Without the back-off, the router sends them to specialists, as it sends the seen ones.
    assert all(d.llm != "generalist" for d in plain_unseen)


def test_a_query_scoring_above_the_threshold_routes_as_without_backoff(
    group_a_router: core.Router,
) -> None:
    queries = [r["query"] for r in group_a_records(n_per_topic=15, seed=7)]
    plain = group_a_router.route_batch(queries, ood_backoff=0.0)
    backed = group_a_router.route_batch(queries, ood_backoff=0.1)

    for before, after in zip(plain, backed, strict=True):
        assert before.in_distribution == after.in_distribution
        if after.in_distribution is not None and after.in_distribution >= 0.1:
            assert after == before


def test_the_backoff_target_is_the_best_allowed_llm_when_the_best_is_excluded(
    group_a_router: core.Router,
) -> None:
    decisions = group_a_router.route_batch(
        group_b_queries(5), ood_backoff=1.0, exclude=["generalist"]
    )

    second = group_a_router.ood.fallback[1] if group_a_router.ood else None
    assert all(d.llm == second and d.backed_off for d in decisions)


def test_the_routers_threshold_applies_unless_a_call_overrides_it(
    group_a_router: core.Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_a_router, "ood_backoff", 0.1)
    queries = group_b_queries(3)

    assert all(d.backed_off for d in group_a_router.route_batch(queries))
    assert not any(d.backed_off for d in group_a_router.route_batch(queries, ood_backoff=0.0))


def test_the_summary_holds_the_trained_routers_own_vectors_of_training_queries(
    tiny_encoder: str,
) -> None:
    data = core.RoutingData.from_records(group_a_records(n_per_topic=20))
    router = core.fit(
        data,
        encoder=tiny_encoder,
        train_encoder=True,
        steps=3,
        batch_size=8,
        max_length=32,
        learning_rate=1e-3,
        seed=0,
        progress=False,
    )

    assert router.ood is not None
    vectors = router.embed(data.queries)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    nearest = (unit @ router.ood.reference.T).max(axis=1)  # (N,)
    # Every training query not held out for validation is in the reference, as embedded by
    # the fine-tuned encoder (the untrained one would give other vectors).
    assert (np.sort(nearest)[-len(router.ood.reference) :] > 0.9999).all()


def test_a_saved_router_keeps_its_summary_and_threshold(
    group_a_router: core.Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_a_router, "ood_backoff", 0.2)
    folder = group_a_router.save(tmp_path / "router")
    loaded = core.load(folder, device="cpu")
    queries = group_b_queries(4)

    assert loaded.ood_backoff == 0.2
    assert [d.in_distribution for d in loaded.route_batch(queries)] == pytest.approx(
        [d.in_distribution for d in group_a_router.route_batch(queries)], abs=1e-6
    )


def test_a_router_saved_without_a_summary_loads_and_routes_with_no_score(
    group_a_router: core.Router, tmp_path: Path
) -> None:
    folder = group_a_router.save(tmp_path / "router")
    (folder / OOD_FILE).unlink()
    old = core.load(folder, device="cpu")

    decision = old.route("solve the integral")

    assert old.ood is None
    assert decision.in_distribution is None and not decision.backed_off
    with pytest.raises(ConfigError, match="ood_backoff"):
        old.route("solve the integral", ood_backoff=0.1)
