"""The comparison routers of the benchmarks, and RouterBench's AIQ on hand-made points."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.baselines import KNNRouter, LinearRouter, ZooterRouter, best_llm_labels
from benchmarks.cost import aiq, hull_value, non_decreasing_hull


def separable(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three clusters of embeddings; the LLM of a query's cluster scores 1, the others 0.

    Returns embeddings ``(n, 8)``, scores ``(n, 3)`` and each query's cluster ``(n,)``.
    """
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 8) * 5
    cluster = rng.integers(0, 3, size=n)
    embeddings = centres[cluster] + rng.normal(scale=0.5, size=(n, 8))
    scores = np.zeros((n, 3))
    scores[np.arange(n), cluster] = 1.0
    unscored = np.arange(0, n, 7)
    scores[unscored, (cluster[unscored] + 1) % 3] = np.nan  # some LLMs unscored on some queries
    return embeddings, scores, cluster


@pytest.mark.parametrize("router_class", [KNNRouter, LinearRouter, ZooterRouter])
def test_each_baseline_routes_a_separable_problem_to_the_right_llm(router_class: type) -> None:
    train_x, train_y, _ = separable(150, seed=0)
    val_x, val_y, _ = separable(60, seed=1)
    test_x, _, test_cluster = separable(60, seed=2)

    router = router_class().fit(train_x, train_y, val_x, val_y)
    utilities = router.utilities(test_x)

    assert utilities.shape == (60, 3)
    assert np.array_equal(utilities.argmax(axis=1), test_cluster)
    assert router.validation  # the validation accuracy of each setting tried
    assert isinstance(router.name, str)


def test_baselines_give_probabilities_that_sum_to_one() -> None:
    train_x, train_y, _ = separable(90, seed=0)
    val_x, val_y, _ = separable(30, seed=1)
    for router in (LinearRouter(), ZooterRouter()):
        utilities = router.fit(train_x, train_y, val_x, val_y).utilities(val_x)
        assert np.allclose(utilities.sum(axis=1), 1.0)
        assert (utilities >= 0).all()


def test_knn_picks_the_neighbourhood_size_with_the_best_validation_accuracy() -> None:
    train_x, train_y, _ = separable(100, seed=0)
    val_x, val_y, _ = separable(40, seed=1)

    router = KNNRouter(neighbours=(1, 200)).fit(train_x, train_y, val_x, val_y)

    assert router.k == 1  # k=200 exceeds the training set and is not tried
    assert list(router.validation) == ["k=1"]


def test_tied_best_llms_share_a_query_and_uninformative_queries_are_left_out() -> None:
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, np.nan, 1.0]])

    rows, labels, weights = best_llm_labels(scores)

    assert rows.tolist() == [0, 0, 2]
    assert labels.tolist() == [0, 1, 2]
    assert weights.tolist() == [0.5, 0.5, 1.0]


def test_the_hull_keeps_the_upper_non_decreasing_frontier() -> None:
    points = np.array([[1, 50], [2, 55], [3, 70], [4, 60], [5, 65], [3, 40], [2.5, 50]])

    hull = non_decreasing_hull(points)

    # (2, 55) lies under the chord from (1, 50) to (3, 70); nothing after (3, 70) is higher.
    assert hull.tolist() == [[1, 50], [3, 70]]


def test_aiq_is_the_mean_height_of_the_hull_over_the_cost_range() -> None:
    points = np.array([[0.0, 40.0], [1.0, 60.0], [2.0, 50.0]])

    # Hull: (0, 40) to (1, 60), then flat at 60 up to 2: area 50 + 60 = 110 over a width of 2.
    assert aiq(points, (0.0, 2.0)) == pytest.approx(55.0)
    # A single LLM is a flat line from its cost on, and 0 below it.
    assert aiq(np.array([[1.0, 80.0]]), (0.0, 2.0)) == pytest.approx(40.0)
    assert aiq(np.array([[3.0, 80.0]]), (0.0, 2.0)) == 0.0


def test_a_router_that_dominates_another_has_the_larger_aiq() -> None:
    worse = np.array([[0.1, 50.0], [0.5, 60.0], [1.0, 70.0]])
    better = worse + np.array([0.0, 5.0])

    assert aiq(better, (0.1, 1.0)) > aiq(worse, (0.1, 1.0))
    assert aiq(better, (0.1, 1.0)) - aiq(worse, (0.1, 1.0)) == pytest.approx(5.0)


def test_hull_value_interpolates_between_configurations() -> None:
    points = np.array([[1.0, 50.0], [3.0, 70.0]])

    assert hull_value(points, 2.0) == pytest.approx(60.0)
    assert hull_value(points, 0.5) == 0.0
    assert hull_value(points, 10.0) == 70.0
