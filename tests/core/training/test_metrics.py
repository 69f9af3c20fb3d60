"""Routing accuracy as the paper measures it, the reference rows, and evaluate()'s JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import DataError, Router, RoutingData
from core.training.metrics import (
    accuracy,
    evaluate,
    is_probability_scored,
    metric_scores,
    probability_scored_rows,
    reference_rows,
    task_mean_accuracy,
    training_view,
)

NAN = np.nan


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([[0.0, 0.5], [1.0, NAN]], False),
        ([[0.1, 0.3, 0.7], [0.9, 0.6, 0.2]], False),  # multiples of 0.1, despite float error
        ([[0.25, 1.0]], True),
        ([[0.0, 0.3], [NAN, 0.371]], True),
        ([[NAN, NAN]], False),
    ],
)
def test_is_probability_scored_detects_scores_that_are_not_multiples_of_a_tenth(
    scores: list[list[float]], expected: bool
) -> None:
    assert is_probability_scored(np.array(scores)) is expected


def test_metric_scores_binarise_probability_files_and_keep_missing_scores_missing() -> None:
    scores = np.array([[0.37, 0.0], [NAN, 0.02]])
    np.testing.assert_array_equal(metric_scores(scores), [[1.0, 0.0], [NAN, 1.0]])
    np.testing.assert_array_equal(metric_scores(scores, binary=False), scores)
    graded = np.array([[0.5, 0.0]])
    np.testing.assert_array_equal(metric_scores(graded), graded)
    np.testing.assert_array_equal(metric_scores(graded, binary=True), [[1.0, 0.0]])


def test_accuracy_is_the_mean_score_of_the_chosen_llm() -> None:
    scores = np.array([[1.0, 0.0], [0.2, 0.8]])
    assert accuracy(scores, [0, 1]) == pytest.approx(0.9)
    assert accuracy(scores, [1, 0]) == pytest.approx(0.1)


def test_accuracy_counts_any_positive_probability_as_right_unless_overridden() -> None:
    scores = np.array([[0.33, 0.0], [0.0, 0.61]])
    assert accuracy(scores, [0, 0]) == pytest.approx(0.5)
    assert accuracy(scores, [0, 0], binary=False) == pytest.approx(0.165)


def test_accuracy_ignores_choices_without_a_score() -> None:
    scores = np.array([[1.0, NAN], [0.0, 1.0]])
    assert accuracy(scores, [1, 1]) == pytest.approx(1.0)
    assert accuracy(np.array([[1.0, NAN]]), [1]) == 0.0


def test_reference_rows_give_each_llm_the_best_single_llm_and_the_oracle() -> None:
    scores = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 0.5]])
    rows = reference_rows(scores, ["a", "b", "c"])
    assert rows["llms"] == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 0.5})
    assert rows["best_single_llm"] == "c"
    assert rows["best_single"] == pytest.approx(0.5)
    assert rows["oracle"] == pytest.approx((1.0 + 1.0 + 0.5) / 3)


def test_reference_rows_skip_an_llm_never_scored() -> None:
    scores = np.array([[0.2, NAN], [0.4, NAN]])
    rows = reference_rows(scores, ["scored", "never"])
    assert np.isnan(rows["llms"]["never"])
    assert rows["best_single_llm"] == "scored"
    assert rows["oracle"] == pytest.approx(0.3)


def test_task_mean_accuracy_averages_over_tasks_not_queries() -> None:
    data = RoutingData(
        queries=["a", "b", "c", "d"],
        llm_names=["x", "y"],
        scores=np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.37]]),
        tasks=["big", "big", "big", "small"],
    )
    # "big": 3/3 right; "small" (probability-scored): choosing x scores 0. Mean of 1 and 0.
    assert task_mean_accuracy(data, [0, 0, 0, 0]) == pytest.approx(0.5)


# A log without task labels: a graded query (fractions of 10 samples) and a multiple-choice
# one (probabilities of the right answer), with scores missing.
UNLABELLED = RoutingData(
    queries=["2+2?", "Which planet is largest?"],
    llm_names=["x", "y", "z"],
    scores=np.array([[0.3, NAN, 0.0], [NAN, 0.37, 0.0]]),
)


def test_probability_scored_rows_tell_each_query_by_its_own_values() -> None:
    np.testing.assert_array_equal(probability_scored_rows(UNLABELLED.scores), [False, True])
    assert not probability_scored_rows(np.array([[NAN, 0.0]])).any()


def test_without_task_labels_only_probability_scored_queries_are_binarised() -> None:
    # Over the whole log, the one probability would binarise the graded 0.3 to 1 as well.
    view = training_view(UNLABELLED)
    np.testing.assert_array_equal(view, [[0.3, NAN, 0.0], [NAN, 1.0, 0.0]])
    np.testing.assert_array_equal(training_view(UNLABELLED, binary=False), UNLABELLED.scores)
    np.testing.assert_array_equal(
        training_view(UNLABELLED, binary=True), [[1.0, NAN, 0.0], [NAN, 1.0, 0.0]]
    )


def test_task_mean_accuracy_without_task_labels_counts_each_query_by_its_own_metric() -> None:
    # Choosing x then y: 0.3 on the graded query (not 1), 1 on the multiple-choice one.
    assert task_mean_accuracy(UNLABELLED, [0, 1]) == pytest.approx((0.3 + 1.0) / 2)
    # An unscored choice is left out, as the metric leaves it out.
    assert task_mean_accuracy(UNLABELLED, [0, 0]) == pytest.approx(0.3)


def probability_file(toy: RoutingData) -> RoutingData:
    """The toy queries scored as multiple-choice probabilities: best LLM 0.37, others 0 or 0.05."""
    best = toy.scores.argmax(axis=1)
    scores = np.where(toy.scores > 0.15, 0.05, 0.0)
    scores[np.arange(len(toy)), best] = 0.37
    return RoutingData(queries=toy.queries, llm_names=toy.llm_names, scores=scores)


def test_evaluate_returns_the_issue_json_shape_in_percent(
    tiny_router: Router, toy_data: RoutingData
) -> None:
    graded = toy_data.subset(range(30))
    multiple_choice = probability_file(toy_data.subset(range(30, 60)))
    result = evaluate(tiny_router, {"graded.json": graded, "mc.json": multiple_choice})
    json.loads(json.dumps(result))  # plain JSON
    assert set(result) == {"files", "average"}
    assert list(result["files"]) == ["graded.json", "mc.json"]
    for name, data in (("graded.json", graded), ("mc.json", multiple_choice)):
        row = result["files"][name]
        assert {"router", "best_single", "oracle", "llms"} <= set(row)
        assert set(row["llms"]) == set(data.llm_names)
        chosen = [data.llm_names.index(d.llm) for d in tiny_router.route_batch(data.queries)]
        assert row["router"] == pytest.approx(100 * accuracy(data.scores, chosen))
        reference = reference_rows(data.scores, data.llm_names)
        assert row["oracle"] == pytest.approx(100 * reference["oracle"])
        assert row["best_single"] == pytest.approx(100 * reference["best_single"])
    assert result["files"]["graded.json"]["binary_metric"] is False
    assert result["files"]["mc.json"]["binary_metric"] is True
    assert result["files"]["mc.json"]["oracle"] == pytest.approx(100.0)
    average = result["average"]
    files = result["files"].values()
    assert average["router"] == pytest.approx(np.mean([f["router"] for f in files]))
    assert average["oracle"] == pytest.approx(np.mean([f["oracle"] for f in files]))
    # The best single LLM of the average is one LLM for every file, as a user without a router.
    per_llm = {n: np.mean([f["llms"][n] for f in files]) for n in graded.llm_names}
    assert average["best_single"] == pytest.approx(max(per_llm.values()))


def test_evaluate_lets_the_user_override_the_binary_metric(
    tiny_router: Router, toy_data: RoutingData
) -> None:
    multiple_choice = probability_file(toy_data.subset(range(30)))
    detected = evaluate(tiny_router, {"mc": multiple_choice})["files"]["mc"]
    raw = evaluate(tiny_router, {"mc": multiple_choice}, binary=False)["files"]["mc"]
    assert raw["binary_metric"] is False
    assert raw["oracle"] == pytest.approx(37.0)
    assert detected["oracle"] == pytest.approx(100.0)


def test_evaluate_passes_routing_options_through(
    tiny_router: Router, toy_data: RoutingData
) -> None:
    result = evaluate(tiny_router, {"toy": toy_data}, allowed=["chat-llm"])
    assert result["files"]["toy"]["router"] == pytest.approx(
        result["files"]["toy"]["llms"]["chat-llm"]
    )


def test_evaluate_rejects_a_file_without_scores_for_the_chosen_llm(
    tiny_router: Router, toy_data: RoutingData
) -> None:
    chat = [i for i, q in enumerate(toy_data.queries) if "story" in q or "weather" in q][:5]
    part = toy_data.subset(chat)
    kept = ["math-llm", "code-llm"]
    columns = [part.llm_names.index(name) for name in kept]
    without_chat = RoutingData(queries=part.queries, llm_names=kept, scores=part.scores[:, columns])
    with pytest.raises(ValueError, match="chat-llm"):
        evaluate(tiny_router, {"no-chat.json": without_chat})


def test_evaluate_of_no_data_sets_is_an_error(tiny_router: Router) -> None:
    with pytest.raises(DataError, match="no data sets"):
        evaluate(tiny_router, {})
