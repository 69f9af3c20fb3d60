"""Neighbour-smoothed training scores (core.training.smoothing) and their use in core.fit."""

from __future__ import annotations

import numpy as np
import pytest

import core
from core.config import SMOOTHING_CANDIDATES
from core.errors import ConfigError
from core.training.smoothing import (
    _widest_within_one_standard_error,
    choose_neighbours,
    smooth_scores,
)

# Two tight pairs of queries on the plane, far from each other.
EMBEDDINGS = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.05, 0.99]])
SCORES = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])


def test_each_query_takes_the_mean_of_its_nearest_neighbours_itself_included() -> None:
    smoothed = smooth_scores(EMBEDDINGS, SCORES, np.zeros(4, dtype=int), neighbours=2)
    expected = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(smoothed, expected)


def test_one_neighbour_leaves_the_scores_as_they_are() -> None:
    smoothed = smooth_scores(EMBEDDINGS, SCORES, np.zeros(4, dtype=int), neighbours=1)
    np.testing.assert_allclose(smoothed, SCORES)


def test_neighbours_are_only_looked_for_within_a_group() -> None:
    # Query 0 alone in its group keeps its own scores even though query 1 is nearest.
    groups = np.array([0, 1, 1, 1])
    smoothed = smooth_scores(EMBEDDINGS, SCORES, groups, neighbours=10)
    np.testing.assert_allclose(smoothed[0], SCORES[0])
    np.testing.assert_allclose(smoothed[1:], np.tile(SCORES[1:].mean(axis=0), (3, 1)))


def test_unscored_entries_are_left_out_of_the_means() -> None:
    scores = SCORES.copy()
    scores[1, 0] = np.nan
    scores[0, 1] = np.nan
    smoothed = smooth_scores(EMBEDDINGS[:2], scores[:2], np.zeros(2, dtype=int), neighbours=2)
    np.testing.assert_allclose(smoothed, [[1.0, 1.0], [1.0, 1.0]])
    only_unscored = np.array([[np.nan, 1.0], [np.nan, 0.0]])
    out = smooth_scores(EMBEDDINGS[:2], only_unscored, np.zeros(2, dtype=int), neighbours=2)
    assert np.isnan(out[:, 0]).all()


@pytest.mark.parametrize("neighbours", [0, -3, 2.5, True])
def test_bad_neighbour_counts_are_refused_by_name(neighbours: object) -> None:
    with pytest.raises(ConfigError, match="smoothing_neighbours"):
        smooth_scores(EMBEDDINGS, SCORES, np.zeros(4, dtype=int), neighbours)  # type: ignore[arg-type]


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="must agree"):
        smooth_scores(EMBEDDINGS, SCORES[:3], np.zeros(3, dtype=int), neighbours=2)


def test_fit_learns_the_neighbourhood_best_llm_not_one_querys_luck() -> None:
    # Twenty "alpha" queries: LLM "steady" right on all but one, "lucky" right on one only.
    # The odd query's own label says "lucky"; its neighbourhood says "steady".
    records = []
    for i in range(20):
        lucky = i == 7
        records.append(
            {
                "query": f"alpha question number {i}",
                "scores": {"steady": 0.0 if lucky else 1.0, "lucky": 1.0 if lucky else 0.0},
            }
        )
    data = core.RoutingData.from_records(records)
    options = {  # the bundled MiniLM, frozen: a random tiny encoder cannot tell these apart
        "train_encoder": False,
        "steps": 150,
        "batch_size": 8,
        "max_length": 32,
        "validation_fraction": 0.0,
        "head_learning_rate": 1e-2,
        "progress": False,
    }
    smoothed = core.fit(data, smoothing_neighbours=10, **options)
    raw = core.fit(data, smoothing_neighbours=0, **options)
    odd = "alpha question number 7"
    assert smoothed.route(odd).llm == "steady"
    # Trained on the odd query's own label, the router is pulled towards "lucky" there.
    steady = smoothed.llm_names.index("steady")
    assert smoothed.probabilities([odd])[0, steady] > raw.probabilities([odd])[0, steady]


def test_the_neighbour_count_that_predicts_held_out_queries_best_is_chosen() -> None:
    # Ten queries along a line in two halves: "a" is right on the left half, "b" on the right.
    # One neighbour predicts each query from its own half; nine mix the halves and get worse.
    angles = np.linspace(0.0, 1.5, 10)
    embeddings = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    scores = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    choice = choose_neighbours(embeddings, scores, np.zeros(10, dtype=int), (1, 9))
    assert choice.per_group == {0: 1}
    assert choice.accuracy[0][1] > choice.accuracy[0][9]
    # Where the query's own label is noise, its neighbourhood predicts it better.
    noisy = scores.copy()
    noisy[[1, 3, 6, 8]] = noisy[[1, 3, 6, 8]][:, ::-1]
    choice = choose_neighbours(embeddings, noisy, np.zeros(10, dtype=int), (1, 4))
    assert choice.per_group == {0: 4} and choice.accuracy[0][4] > choice.accuracy[0][1]


def test_each_group_gets_its_own_neighbour_count() -> None:
    # Group "clean": two halves, each query's own half predicts it (few neighbours win).
    # Group "noisy": one LLM is best overall but a third of the labels are flipped, scattered,
    # so only a wide neighbourhood sees it (many neighbours win).
    angles = np.linspace(0.0, 1.5, 12)
    line = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    clean = np.array([[1.0, 0.0]] * 6 + [[0.0, 1.0]] * 6)
    noisy = np.array([[1.0, 0.0]] * 12)
    noisy[[1, 4, 7, 10]] = [0.0, 1.0]
    embeddings = np.concatenate([line, line])
    scores = np.concatenate([clean, noisy])
    groups = np.array(["clean"] * 12 + ["noisy"] * 12)
    choice = choose_neighbours(embeddings, scores, groups, (1, 12))
    assert choice.per_group == {"clean": 1, "noisy": 12}
    smoothed = smooth_scores(embeddings, scores, groups, choice.per_group)
    np.testing.assert_allclose(smoothed[:12], clean)  # one neighbour: itself
    np.testing.assert_allclose(smoothed[12:], np.tile([8 / 12, 4 / 12], (12, 1)))


def test_a_count_past_the_group_size_means_the_whole_group() -> None:
    choice = choose_neighbours(EMBEDDINGS, SCORES, np.zeros(4, dtype=int), (3, 50))
    assert choice.accuracy[0][3] == choice.accuracy[0][50]  # both: every other query
    assert choice.per_group == {0: 50}  # the wider count on a tie (here the same thing)
    smoothed = smooth_scores(EMBEDDINGS, SCORES, np.zeros(4, dtype=int), 50)
    np.testing.assert_allclose(smoothed, np.tile(SCORES.mean(axis=0), (4, 1)))


def test_a_per_group_count_must_cover_every_group() -> None:
    with pytest.raises(ConfigError, match="no count for groups"):
        smooth_scores(EMBEDDINGS, SCORES, np.array([0, 0, 1, 1]), {0: 2})


@pytest.mark.parametrize(
    ("neighbours", "tasks", "chosen_for"),
    [
        (None, True, {"code", "chat", "math"}),  # one count per task
        # No tasks: one per smoothing cluster, one cluster per 100 queries (108 train here).
        (None, False, {"0"}),
        (0, True, None),  # given: nothing chosen
        (3, True, None),
    ],
)
def test_fit_says_which_neighbour_counts_it_chose_and_keeps_a_given_one(
    tiny_encoder: str,
    toy_data: core.RoutingData,
    neighbours: int | None,
    tasks: bool,
    chosen_for: set[str] | None,
) -> None:
    data = (
        toy_data
        if tasks
        else core.RoutingData(toy_data.queries, toy_data.llm_names, toy_data.scores)
    )
    router = core.fit(
        data,
        encoder=tiny_encoder,
        train_encoder=False,
        steps=5,
        max_length=32,
        num_clusters=3,
        smoothing_neighbours=neighbours,
        progress=False,
    )
    if chosen_for is None:
        assert router.selection == {}
    else:
        chosen = router.selection["smoothing_neighbours"]
        assert set(chosen) == chosen_for
        assert set(chosen.values()) <= set(SMOOTHING_CANDIDATES)


def test_leave_one_out_leaves_out_choices_the_query_never_scored() -> None:
    # Query 0 left LLM "a" unscored and its neighbour prefers "a": query 0 is left out.
    # Query 1's neighbour knows only "b", so query 1 picks "b" and scores 0 there.
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1]])
    scores = np.array([[np.nan, 0.0], [1.0, 0.0]])
    choice = choose_neighbours(embeddings, scores, np.zeros(2, dtype=int), (1,))
    assert choice.per_group == {0: 1}
    assert choice.accuracy[0] == {1: 0.0}


def test_chunked_neighbour_means_match_the_unchunked_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(60, 8))
    scores = rng.integers(0, 2, size=(60, 3)).astype(float)
    scores[rng.random(scores.shape) < 0.1] = np.nan
    groups = rng.integers(0, 2, size=60)
    whole_choice = choose_neighbours(embeddings, scores, groups, (1, 5, 20, 100))
    whole_smoothed = smooth_scores(embeddings, scores, groups, 5)
    monkeypatch.setattr("core.training.smoothing._CHUNK_ELEMENTS", 7)  # a few rows at a time
    assert choose_neighbours(embeddings, scores, groups, (1, 5, 20, 100)) == whole_choice
    np.testing.assert_array_equal(smooth_scores(embeddings, scores, groups, 5), whole_smoothed)


def test_leave_one_out_matches_a_direct_count() -> None:
    # Each LLM's prediction: the mean of its k nearest *other* queries that scored it.
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(40, 5))
    scores = rng.integers(0, 2, size=(40, 4)).astype(float)
    scores[rng.random(scores.shape) < 0.4] = np.nan
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    distance = 1 - unit @ unit.T
    np.fill_diagonal(distance, np.inf)  # a query is never its own neighbour
    order = np.argsort(distance, axis=1, kind="stable")
    for k in (1, 3, 10, 39):
        rewards = []
        for i in range(40):
            predicted = np.full(4, -np.inf)
            for llm in range(4):
                others = [j for j in order[i, :39] if not np.isnan(scores[j, llm])][:k]
                if others:
                    predicted[llm] = scores[others, llm].mean()
            reward = scores[i, predicted.argmax()]
            if not np.isnan(reward):
                rewards.append(reward)
        choice = choose_neighbours(embeddings, scores, np.zeros(40, dtype=int), (k,))
        assert choice.accuracy[0][k] == pytest.approx(np.mean(rewards))


def test_missing_scores_are_imputed_from_the_nearest_queries_that_have_them() -> None:
    # Five queries on a line; LLM "a" was scored only on the three right ones, "b" only on
    # the two left ones. With two neighbours, each LLM's score of a query is the mean of the
    # two nearest queries that *scored it*: never NaN, never a missing score counted as 0.
    angles = np.array([0.0, 0.1, 1.0, 1.2, 1.5])
    embeddings = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    nan = np.nan
    scores = np.array([[nan, 1.0], [nan, 1.0], [1.0, nan], [1.0, nan], [0.0, nan]])
    smoothed = smooth_scores(embeddings, scores, np.zeros(5, dtype=int), neighbours=2)
    # "a" for query 0: its two nearest scored queries are 2 and 3, both 1.0.
    assert smoothed[0, 0] == pytest.approx(1.0)
    # Query 4 scored "a" itself (0.0): its own score and its nearest scored neighbour's.
    assert smoothed[4, 0] == pytest.approx(0.5)
    # "b" was scored on two queries only: every query takes their mean.
    np.testing.assert_allclose(smoothed[:, 1], 1.0)


def test_the_widest_count_within_one_standard_error_of_the_best_is_chosen() -> None:
    # 10 neighbours look best, but 200 trail by less than one standard error: the data cannot
    # tell them apart, and the smoother one wins. 2000 trails by more and loses.
    noisy = {10: (0.60, 0.02), 200: (0.59, 0.02), 2000: (0.55, 0.02)}
    assert _widest_within_one_standard_error(noisy, (10, 200, 2000)) == 200
    # A small count that is clearly better keeps its place.
    clear = {10: (0.70, 0.01), 200: (0.60, 0.01)}
    assert _widest_within_one_standard_error(clear, (10, 200)) == 10
    assert _widest_within_one_standard_error({}, (10, 200)) == 10
