"""Routing data: the three layouts, the readers, slicing, and every bad input of the issue."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core import DataError, DataTypeError, RouterDCError, RoutingData

NAN = float("nan")


def record(query: object, **scores: object) -> dict[str, Any]:
    return {"query": query, "scores": dict(scores)}


def assert_names(err: pytest.ExceptionInfo[Exception], row: int, field: str) -> None:
    message = str(err.value)
    assert re.search(rf"\brow {row}\b", message), message
    assert field in message, message


def write_json(path: Path, content: object) -> Path:
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------- records (RouterDC layout)


def test_from_records_reads_the_routerdc_layout_with_query_or_question() -> None:
    data = RoutingData.from_records(
        [
            {"query": "2+2?", "scores": {"small": 1.0, "large": 0.5}},
            {"question": "Prove Fermat", "scores": {"large": 0.3, "small": 0.0}, "task": "proof"},
        ]
    )
    assert data.queries == ["2+2?", "Prove Fermat"]
    assert data.llm_names == ["small", "large"]
    np.testing.assert_array_equal(data.scores, [[1.0, 0.5], [0.0, 0.3]])
    assert data.tasks == ["", "proof"]
    assert data.costs is None


def test_from_records_marks_llms_without_a_score_as_missing() -> None:
    data = RoutingData.from_records(
        [record("q one", a=1.0, b=None), record("q two", b=0.2), record("q three", c=0.7)]
    )
    assert data.llm_names == ["a", "b", "c"]
    np.testing.assert_array_equal(
        data.mask, [[True, False, False], [False, True, False], [False, False, True]]
    )
    assert math.isnan(data.scores[0, 1])


def test_from_records_reads_costs_and_means_them_per_llm() -> None:
    data = RoutingData.from_records(
        [
            {"query": "a", "scores": {"x": 1, "y": 0}, "costs": {"x": 0.02, "y": 0.001}},
            {"query": "b", "scores": {"x": 0, "y": 1}, "costs": {"x": 0.04}},
        ]
    )
    assert data.costs is not None
    assert math.isnan(data.costs[1, 1])
    assert data.mean_costs() == pytest.approx({"x": 0.03, "y": 0.001})


def test_from_records_keeps_the_declared_llm_order() -> None:
    data = RoutingData.from_records([record("q", a=1.0, b=0.0)], llm_names=["b", "a", "c"])
    assert data.llm_names == ["b", "a", "c"]
    np.testing.assert_array_equal(data.scores[0, :2], [0.0, 1.0])
    assert math.isnan(data.scores[0, 2])


# ---------------------------------------------------------------------- long logs


def test_from_records_groups_long_logs_by_query_and_averages_repeats() -> None:
    data = RoutingData.from_records(
        [
            {"query": "q1", "llm": "a", "score": 1.0, "cost": 0.01, "task": "t"},
            {"query": "q1", "llm": "b", "score": 0.0},
            {"query": "q2", "model": "a", "score": 0.2},
            {"query": "q2", "llm": "a", "score": 0.4},
        ]
    )
    assert data.queries == ["q1", "q2"]
    assert data.llm_names == ["a", "b"]
    np.testing.assert_allclose(data.scores, [[1.0, 0.0], [0.3, NAN]])
    assert data.costs is not None
    assert data.costs[0, 0] == pytest.approx(0.01)
    assert data.tasks == ["t", ""]


# ---------------------------------------------------------------------- files


def test_from_file_reads_a_json_list_and_labels_rows_with_the_file_stem(tmp_path: Path) -> None:
    path = write_json(tmp_path / "gsm8k.json", [record("q1", a=1, b=0), record("q2", a=0, b=1)])
    data = RoutingData.from_file(path)
    assert data.queries == ["q1", "q2"]
    assert data.tasks == ["gsm8k", "gsm8k"]


def test_from_file_reads_a_json_object_that_declares_its_llms(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "declared.json",
        {"llm_names": ["b", "a"], "records": [record("q1", a=1.0), record("q2", b=0.5)]},
    )
    data = RoutingData.from_file(path)
    assert data.llm_names == ["b", "a"]
    np.testing.assert_array_equal(data.mask, [[False, True], [True, False]])


def test_from_file_reads_jsonl_in_either_layout(tmp_path: Path) -> None:
    routerdc = write_jsonl(tmp_path / "a.jsonl", [record("q1", a=1, b=0), record("q2", a=0, b=1)])
    long = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"query": "q1", "llm": "a", "score": 1},
            {"query": "q1", "llm": "b", "score": 0},
            {"query": "q2", "llm": "b", "score": 1},
        ],
    )
    assert RoutingData.from_file(routerdc).scores.tolist() == [[1, 0], [0, 1]]
    assert RoutingData.from_file(long).mask.tolist() == [[True, True], [False, True]]


def test_from_file_reads_a_wide_csv_with_cost_columns(tmp_path: Path) -> None:
    path = tmp_path / "bench.csv"
    pd.DataFrame(
        {
            "Unnamed: 0": [0, 1, 2],
            "sample_id": ["s0", "s1", "s2"],
            "prompt": ["['What is 2+2?']", "plain prompt", "['line one', 'line two']"],
            "eval_name": ["math", "math", "chat"],
            "gpt-4": [1.0, 0.0, 1.0],
            "llama": [0.0, 1.0, None],
            "gpt-4|model_response": ["4", "x", "y"],
            "llama|model_response": ["5", "y", "z"],
            "gpt-4|total_cost": [0.03, 0.02, 0.01],
            "llama|total_cost": [0.001, 0.002, None],
            "oracle_model_to_route_to": ["gpt-4", "llama", "gpt-4"],
        }
    ).to_csv(path, index=False)
    data = RoutingData.from_file(path)
    assert data.llm_names == ["gpt-4", "llama"]
    assert data.queries == ["What is 2+2?", "plain prompt", "line one\nline two"]
    assert data.tasks == ["math", "math", "chat"]
    np.testing.assert_allclose(data.scores, [[1.0, 0.0], [0.0, 1.0], [1.0, NAN]])
    assert data.mean_costs() == pytest.approx({"gpt-4": 0.02, "llama": 0.0015})


def test_from_file_reads_a_wide_csv_without_cost_columns(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("query,id,a,b\nfirst,1,1.0,0.0\nsecond,2,0.5,\n", encoding="utf-8")
    data = RoutingData.from_file(path)
    assert data.llm_names == ["a", "b"]  # "id" is bookkeeping, never an LLM
    np.testing.assert_allclose(data.scores, [[1.0, 0.0], [0.5, NAN]])
    assert data.costs is None


def test_from_pandas_reads_wide_long_and_routerdc_frames() -> None:
    wide = pd.DataFrame({"query": ["q1", "q2"], "a": [1.0, 0.0], "b": [0.0, 1.0]})
    long = pd.DataFrame({"query": ["q1", "q1", "q2"], "llm": ["a", "b", "a"], "score": [1, 0, 0]})
    routerdc = pd.DataFrame({"question": ["q1"], "scores": [{"a": 1.0, "b": 0.5}]})
    assert RoutingData.from_pandas(wide).scores.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert RoutingData.from_pandas(long).mask.tolist() == [[True, True], [True, False]]
    assert RoutingData.from_pandas(routerdc).scores.tolist() == [[1.0, 0.5]]


def test_from_pandas_takes_the_llm_columns_it_is_given() -> None:
    frame = pd.DataFrame({"query": ["q"], "a": [1.0], "b": [0.0], "noise": [3.0]})
    data = RoutingData.from_pandas(frame, llm_names=["a", "b"])
    assert data.llm_names == ["a", "b"]


def test_from_files_stacks_files_as_tasks_with_the_union_of_llms(tmp_path: Path) -> None:
    one = write_json(tmp_path / "one.json", [record("q1", a=1, b=0)])
    two = write_json(tmp_path / "two.json", [record("q2", b=1, c=0)])
    data = RoutingData.from_files([one, two])
    assert data.llm_names == ["a", "b", "c"]
    assert data.tasks == ["one", "two"]
    np.testing.assert_array_equal(data.mask, [[True, True, False], [False, True, True]])


# ---------------------------------------------------------------------- slicing


def test_split_is_seeded_and_stratified_by_task(toy_data: RoutingData) -> None:
    rest, held = toy_data.split_indices(0.25, seed=3)
    again_rest, again_held = toy_data.split_indices(0.25, seed=3)
    assert rest.tolist() == again_rest.tolist() and held.tolist() == again_held.tolist()
    assert sorted([*rest.tolist(), *held.tolist()]) == list(range(len(toy_data)))
    assert toy_data.tasks is not None
    held_tasks = [toy_data.tasks[i] for i in held]
    assert {task: held_tasks.count(task) for task in set(held_tasks)} == {
        "math": 10,
        "code": 10,
        "chat": 10,
    }


def test_subset_keeps_rows_in_the_given_order(toy_data: RoutingData) -> None:
    part = toy_data.subset([5, 2])
    assert part.queries == [toy_data.queries[5], toy_data.queries[2]]
    np.testing.assert_array_equal(part.scores, toy_data.scores[[5, 2]])


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_split_rejects_a_fraction_outside_zero_one(toy_data: RoutingData, fraction: float) -> None:
    with pytest.raises(DataError, match="fraction"):
        toy_data.split(fraction)


# ---------------------------------------------------------------------- bad input: empty data


def test_empty_records_are_rejected() -> None:
    with pytest.raises(DataError, match="empty"):
        RoutingData.from_records([])


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.json", "[]"),
        ("empty.jsonl", "\n\n"),
        ("empty.csv", ""),
        ("header.csv", "query,a,b\n"),
    ],
)
def test_empty_files_are_rejected_naming_the_file(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        RoutingData.from_file(path)
    assert name in str(caught.value)


def test_an_empty_dataframe_is_rejected() -> None:
    frame = pd.DataFrame({"query": [], "a": [], "b": []})
    with pytest.raises(DataError, match="empty"):
        RoutingData.from_pandas(frame)


def test_routing_data_without_queries_is_rejected() -> None:
    with pytest.raises(DataError, match="empty"):
        RoutingData(queries=[], llm_names=["a", "b"], scores=np.zeros((0, 2)))


# ---------------------------------------------------------------------- bad input: queries


@pytest.mark.parametrize("query", [None, 42, ["a list"], {"a": "dict"}])
def test_a_query_that_is_not_a_string_is_a_type_error_naming_row_and_field(query: object) -> None:
    with pytest.raises(DataTypeError) as caught:
        RoutingData.from_records([record("fine", a=1, b=0), record(query, a=1, b=0)])
    assert isinstance(caught.value, TypeError)
    assert_names(caught, 1, "'query'")


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_an_empty_query_is_a_value_error_naming_row_and_field(query: str) -> None:
    with pytest.raises(DataError) as caught:
        RoutingData.from_records([record("fine", a=1, b=0), record(query, a=1, b=0)])
    assert isinstance(caught.value, ValueError)
    assert_names(caught, 1, "'query'")


def test_a_bad_question_names_the_question_field() -> None:
    with pytest.raises(DataTypeError) as caught:
        RoutingData.from_records([{"question": 7, "scores": {"a": 1, "b": 0}}])
    assert_names(caught, 0, "'question'")


def test_a_record_without_a_query_field_is_rejected_naming_the_row() -> None:
    with pytest.raises(DataError) as caught:
        RoutingData.from_records([record("fine", a=1, b=0), {"text": "x", "scores": {"a": 1}}])
    assert_names(caught, 1, "query")


def test_a_long_log_row_with_a_bad_query_names_row_and_field() -> None:
    rows = [{"query": "ok", "llm": "a", "score": 1}, {"query": 3, "llm": "b", "score": 0}]
    with pytest.raises(DataTypeError) as caught:
        RoutingData.from_records(rows)
    assert_names(caught, 1, "'query'")


def test_a_csv_row_with_an_empty_prompt_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    path.write_text("prompt,a,b\nfirst,1,0\n,0,1\n", encoding="utf-8")
    with pytest.raises((DataError, DataTypeError)) as caught:
        RoutingData.from_file(path)
    assert_names(caught, 1, "'prompt'")


def test_a_record_that_is_not_a_dict_is_a_type_error_naming_the_row() -> None:
    with pytest.raises(DataTypeError) as caught:
        RoutingData.from_records([record("fine", a=1, b=0), ["not", "a", "dict"]])  # type: ignore[list-item]
    assert re.search(r"\brow 1\b", str(caught.value))


def test_records_of_an_unknown_layout_are_rejected_listing_the_fields() -> None:
    with pytest.raises(DataError, match="unknown layout"):
        RoutingData.from_records([{"text": "x", "answer": 1}])


# ---------------------------------------------------------------------- bad input: scores


@pytest.mark.parametrize("score", [NAN, float("inf"), -float("inf"), 1.5, -0.1])
def test_a_score_that_is_not_a_finite_number_in_range_names_row_and_field(score: float) -> None:
    with pytest.raises(DataError) as caught:
        RoutingData.from_records([record("fine", a=1, b=0), record("bad", a=1, b=score)])
    assert isinstance(caught.value, ValueError)
    assert_names(caught, 1, "'b'")


@pytest.mark.parametrize("score", ["0.5", True, [1.0]])
def test_a_score_of_the_wrong_type_is_a_type_error_naming_row_and_field(score: object) -> None:
    with pytest.raises(DataTypeError) as caught:
        RoutingData.from_records([record("fine", a=1, b=0), record("bad", a=score, b=0)])
    assert isinstance(caught.value, TypeError)
    assert_names(caught, 1, "'a'")


def test_scores_that_are_not_a_dict_are_a_type_error_naming_row_and_field() -> None:
    with pytest.raises(DataTypeError) as caught:
        RoutingData.from_records([record("fine", a=1, b=0), {"query": "q", "scores": [1, 0]}])
    assert_names(caught, 1, "'scores'")


def test_a_json_file_with_a_nan_or_infinite_score_names_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "nan.json"
    path.write_text(
        '[{"query": "q0", "scores": {"a": 1, "b": 0}},'
        ' {"query": "q1", "scores": {"a": Infinity, "b": 0}}]',
        encoding="utf-8",
    )
    with pytest.raises(DataError) as caught:
        RoutingData.from_file(path)
    assert_names(caught, 1, "'a'")
    assert "nan.json" in str(caught.value)


def test_a_csv_cell_with_an_infinite_score_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "inf.csv"
    path.write_text("query,a,b\nq0,1,0\nq1,inf,0\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        RoutingData.from_file(path)
    assert_names(caught, 1, "'a'")


def test_a_long_log_with_a_non_finite_score_names_row_and_field() -> None:
    rows = [{"query": "q", "llm": "a", "score": 1}, {"query": "q", "llm": "b", "score": NAN}]
    with pytest.raises(DataError) as caught:
        RoutingData.from_records(rows)
    assert_names(caught, 1, "'score'")


def test_a_negative_cost_names_row_and_field() -> None:
    rows = [
        {"query": "q0", "scores": {"a": 1, "b": 0}},
        {"query": "q1", "scores": {"a": 1, "b": 0}, "costs": {"a": -0.01}},
    ]
    with pytest.raises(DataError) as caught:
        RoutingData.from_records(rows)
    assert_names(caught, 1, "costs")


def test_routing_data_built_directly_rejects_a_non_finite_score_naming_row_and_llm() -> None:
    scores = np.array([[1.0, 0.0], [np.inf, 0.0]])
    with pytest.raises(DataError) as caught:
        RoutingData(queries=["q0", "q1"], llm_names=["a", "b"], scores=scores)
    assert_names(caught, 1, "'a'")


# ---------------------------------------------------------------------- bad input: LLM names


def test_fewer_than_two_llms_are_rejected() -> None:
    with pytest.raises(DataError, match="at least two LLMs"):
        RoutingData.from_records([record("q1", only=1.0), record("q2", only=0.0)])


def test_a_single_declared_llm_is_rejected() -> None:
    with pytest.raises(DataError, match="at least two LLMs"):
        RoutingData.from_records([record("q", a=1.0)], llm_names=["a"])


def test_duplicate_declared_llm_names_are_rejected_naming_the_duplicate() -> None:
    with pytest.raises(DataError, match="duplicate LLM name 'a'"):
        RoutingData.from_records([record("q", a=1.0, b=0.0)], llm_names=["a", "b", "a"])


def test_duplicate_llm_names_in_a_file_declaration_are_rejected(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "dup.json", {"llm_names": ["a", "a"], "records": [record("q", a=1.0)]}
    )
    with pytest.raises(DataError, match="duplicate"):
        RoutingData.from_file(path)


def test_duplicate_llm_columns_in_a_csv_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("query,a,b,a\nq,1,0,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="duplicate columns \\['a'\\]"):
        RoutingData.from_file(path)


def test_duplicate_llm_columns_in_a_dataframe_are_rejected() -> None:
    frame = pd.DataFrame([["q", 1.0, 0.0, 1.0]], columns=["query", "a", "b", "a"])
    with pytest.raises(DataError, match="duplicate"):
        RoutingData.from_pandas(frame)


def test_routing_data_built_directly_rejects_duplicate_llm_names() -> None:
    with pytest.raises(DataError, match="duplicate"):
        RoutingData(queries=["q"], llm_names=["a", "a"], scores=np.array([[1.0, 0.0]]))


def test_declared_llm_names_that_are_not_a_list_are_a_type_error(tmp_path: Path) -> None:
    path = write_json(tmp_path / "names.json", {"llm_names": "ab", "records": [record("q", a=1)]})
    with pytest.raises(DataTypeError, match="llm_names"):
        RoutingData.from_file(path)


@pytest.mark.parametrize("name", ["", None, 3])
def test_an_llm_name_that_is_not_a_non_empty_string_is_a_type_error(name: object) -> None:
    with pytest.raises(DataTypeError):
        RoutingData(queries=["q"], llm_names=["a", name], scores=np.array([[1.0, 0.0]]))  # type: ignore[list-item]


# ---------------------------------------------------------------------- bad input: no score


@pytest.mark.parametrize("scores", [{}, {"a": None, "b": None}])
def test_a_query_with_no_score_at_all_names_row_and_field(scores: dict[str, Any]) -> None:
    rows = [record("fine", a=1, b=0), {"query": "empty", "scores": scores}]
    with pytest.raises(DataError) as caught:
        RoutingData.from_records(rows, llm_names=["a", "b"])
    assert_names(caught, 1, "'scores'")
    assert "no score" in str(caught.value)


def test_a_long_log_query_with_no_score_names_its_first_row() -> None:
    rows: list[dict[str, Any]] = [
        {"query": "fine", "llm": "a", "score": 1},
        {"query": "fine", "llm": "b", "score": 0},
        {"query": "unscored", "llm": "a", "score": None},
        {"query": "unscored", "llm": "b", "score": None},
    ]
    with pytest.raises(DataError) as caught:
        RoutingData.from_records(rows, source="app.log")
    assert_names(caught, 2, "'score'")
    assert "app.log" in str(caught.value)


def test_a_csv_row_with_no_score_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("query,a,b\nq0,1,0\nq1,,\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        RoutingData.from_file(path)
    assert_names(caught, 1, "no score")


# ---------------------------------------------------------------------- bad input: unknown LLM


def test_an_unknown_llm_in_a_file_that_declares_its_llms_names_row_and_field(
    tmp_path: Path,
) -> None:
    path = write_json(
        tmp_path / "declared.json",
        {
            "llm_names": ["a", "b"],
            "records": [record("q0", a=1, b=0), record("q1", a=1, intruder=0.5)],
        },
    )
    with pytest.raises(DataError) as caught:
        RoutingData.from_file(path)
    assert_names(caught, 1, "'scores'")
    assert "'intruder'" in str(caught.value)
    assert "declared.json" in str(caught.value)


def test_an_unknown_llm_in_a_long_log_with_declared_llms_names_row_and_field() -> None:
    rows = [{"query": "q", "llm": "a", "score": 1}, {"query": "q", "llm": "z", "score": 0}]
    with pytest.raises(DataError) as caught:
        RoutingData.from_records(rows, llm_names=["a", "b"])
    assert_names(caught, 1, "'llm'")
    assert "'z'" in str(caught.value)


def test_an_unknown_llm_in_costs_names_row_and_field() -> None:
    rows = [{"query": "q", "scores": {"a": 1, "b": 0}, "costs": {"zz": 0.1}}]
    with pytest.raises(DataError) as caught:
        RoutingData.from_records(rows)
    assert_names(caught, 0, "'costs'")


# ---------------------------------------------------------------------- bad files


def test_a_missing_file_is_rejected_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere\.json"):
        RoutingData.from_file(tmp_path / "nowhere.json")


def test_an_unknown_file_type_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match="unknown file type"):
        RoutingData.from_file(path)


def test_a_jsonl_file_with_a_broken_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(record("q", a=1, b=0)) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        RoutingData.from_file(path)


def test_a_json_object_without_records_is_rejected(tmp_path: Path) -> None:
    path = write_json(tmp_path / "object.json", {"llm_names": ["a", "b"]})
    with pytest.raises(DataError, match="'records'"):
        RoutingData.from_file(path)


def test_every_data_error_is_a_routerdc_error() -> None:
    assert issubclass(DataError, RouterDCError) and issubclass(DataError, ValueError)
    assert issubclass(DataTypeError, RouterDCError) and issubclass(DataTypeError, TypeError)


# ---------------------------------------------------------------------- column mapping


def langsmith_runs() -> pd.DataFrame:
    """An export of an app's runs with feedback: one row per run, LangSmith-style columns."""
    return pd.DataFrame(
        {
            "run_id": ["r1", "r2", "r3", "r4"],
            "inputs.question": ["2+2?", "2+2?", "capital of France?", "capital of France?"],
            "outputs.output": ["4", "5", "Paris", "Paris"],
            "extra.metadata.ls_model_name": ["small", "large", "small", "large"],
            "feedback.correctness": [1.0, 0.0, 1.0, 1.0],
            "feedback.thumbs": [1, 0, 1, 1],
            "total_cost": [0.001, 0.02, 0.001, 0.03],
            "latency_s": [0.4, 2.5, 0.3, 3.1],
        }
    )


def test_from_pandas_reads_a_long_export_through_the_named_columns() -> None:
    data = RoutingData.from_pandas(
        langsmith_runs(),
        query_column="inputs.question",
        llm_column="extra.metadata.ls_model_name",
        score_column="feedback.correctness",
        cost_column="total_cost",
    )
    assert data.queries == ["2+2?", "capital of France?"]
    assert data.llm_names == ["small", "large"]
    np.testing.assert_array_equal(data.scores, [[1.0, 0.0], [1.0, 1.0]])
    assert data.mean_costs() == pytest.approx({"small": 0.001, "large": 0.025})


def test_a_long_export_row_without_feedback_is_an_unscored_answer_not_an_error() -> None:
    runs = langsmith_runs()
    runs.loc[1, "feedback.correctness"] = None
    data = RoutingData.from_pandas(
        runs,
        query_column="inputs.question",
        llm_column="extra.metadata.ls_model_name",
        score_column="feedback.correctness",
    )
    assert data.mask.tolist() == [[True, False], [True, True]]


def test_a_named_column_that_is_not_there_is_refused_naming_it_and_the_option() -> None:
    with pytest.raises(DataError, match=r"'feedback\.score' \(score_column\)"):
        RoutingData.from_pandas(
            langsmith_runs(),
            query_column="inputs.question",
            llm_column="extra.metadata.ls_model_name",
            score_column="feedback.score",
        )


def test_from_records_flattens_nested_runs_so_dotted_columns_name_their_fields() -> None:
    runs = [
        {"inputs": {"question": "q1"}, "model": "small", "feedback": {"correct": 1}},
        {"inputs": {"question": "q1"}, "model": "large", "feedback": {"correct": 0}},
    ]
    data = RoutingData.from_records(
        runs, query_column="inputs.question", llm_column="model", score_column="feedback.correct"
    )
    assert (data.queries, data.llm_names) == (["q1"], ["small", "large"])


def test_from_file_passes_the_column_mapping_to_a_jsonl_export(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "runs.jsonl",
        [
            {"inputs": {"question": "q1"}, "outputs": {"gpt": 1, "llama": 0}},
            {"inputs": {"question": "q2"}, "outputs": {"gpt": 0, "llama": 1}},
        ],
    )
    data = RoutingData.from_file(
        path,
        query_column="inputs.question",
        llm_columns={"outputs.gpt": "gpt", "outputs.llama": "llama"},
    )
    assert data.llm_names == ["gpt", "llama"]
    np.testing.assert_array_equal(data.scores, [[1, 0], [0, 1]])


def test_a_wide_table_with_feedback_and_cost_columns_is_refused_naming_them() -> None:
    frame = pd.DataFrame(
        {
            "inputs.question": ["q1", "q2"],
            "gpt": [1.0, 0.0],
            "llama": [0.0, 1.0],
            "feedback.thumbs": [1, 0],
            "total_cost": [0.01, 0.02],
        }
    )
    with pytest.raises(DataError) as caught:
        RoutingData.from_pandas(frame, query_column="inputs.question")
    message = str(caught.value)
    assert "'feedback.thumbs'" in message and "'total_cost'" in message
    assert "llm_columns=['gpt', 'llama']" in message


def test_a_wide_table_with_a_numeric_column_outside_zero_one_is_refused() -> None:
    frame = pd.DataFrame({"query": ["q1", "q2"], "a": [1, 0], "b": [0, 1], "wait": [3.5, 7.0]})
    with pytest.raises(DataError, match=r"'wait' \(2 values outside \[0, 1\]"):
        RoutingData.from_pandas(frame)


def test_a_latency_column_in_a_wide_csv_is_not_taken_as_an_llm(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("query,a,b,latency_s\nq1,1,0,0.4\nq2,0,1,0.9\n", encoding="utf-8")
    with pytest.raises(DataError, match="'latency_s'"):
        RoutingData.from_file(path)
    data = RoutingData.from_file(path, llm_columns=["a", "b"])
    assert data.llm_names == ["a", "b"]


def test_the_columns_taken_as_llms_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    frame = pd.DataFrame({"query": ["q1"], "a": [1.0], "b": [0.0]})
    with caplog.at_level("INFO", logger="core.data.dataset"):
        RoutingData.from_pandas(frame)
    assert "LLM score columns {'a': 'a', 'b': 'b'}" in caplog.text


def test_an_llm_column_with_one_text_cell_names_the_cell_instead_of_dropping_the_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "typo.csv"
    path.write_text("query,a,b\nq0,1,0\nq1,0,1\nq2,oops,1\n", encoding="utf-8")
    with pytest.raises(DataTypeError) as caught:
        RoutingData.from_file(path)
    assert_names(caught, 2, "'a'")
    assert "'oops'" in str(caught.value)


@pytest.mark.parametrize(
    "names", [("gpt-4", "GPT-4"), ("gpt-4", "gpt-4 "), ("gpt-4", " GPT-4")], ids=repr
)
def test_llm_names_that_differ_only_by_case_or_spaces_are_refused_naming_both(
    names: tuple[str, str],
) -> None:
    rows = [{"query": "q", "scores": {names[0]: 1.0, names[1]: 0.0, "other": 0.0}}]
    with pytest.raises(DataError) as caught:
        RoutingData.from_records(rows)
    assert repr(names[0]) in str(caught.value) and repr(names[1]) in str(caught.value)


def test_llm_names_are_stripped_of_surrounding_spaces_in_every_layout() -> None:
    records = RoutingData.from_records([{"query": "q", "scores": {" a ": 1, "b": 0}}])
    long = RoutingData.from_records(
        [{"query": "q", "llm": "a ", "score": 1}, {"query": "q", "llm": "b", "score": 0}]
    )
    wide = RoutingData.from_pandas(pd.DataFrame({"query": ["q"], " a": [1], "b ": [0]}))
    assert records.llm_names == long.llm_names == wide.llm_names == ["a", "b"]


def test_long_rows_whose_llm_differs_only_by_case_are_refused() -> None:
    rows = [
        {"query": "q", "llm": "gpt-4", "score": 1},
        {"query": "q", "llm": "GPT-4", "score": 0},
        {"query": "q", "llm": "llama", "score": 0},
    ]
    with pytest.raises(DataError, match="differ only by case"):
        RoutingData.from_records(rows)


def test_unscored_llms_lists_the_llms_no_query_scores() -> None:
    data = RoutingData.from_records([record("q1", a=1, b=None), record("q2", a=0, b=None)])
    assert data.unscored_llms() == ["b"]


# ---------------------------------------------------------------------- unclear errors


def test_a_json_object_whose_records_is_not_a_list_names_the_file_and_field(
    tmp_path: Path,
) -> None:
    path = write_json(tmp_path / "five.json", {"records": 5})
    with pytest.raises(DataTypeError, match=r"five\.json, field 'records'.*got 5"):
        RoutingData.from_file(path)


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_a_data_file_that_is_not_utf8_is_refused_naming_the_file(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"latin1{suffix}"
    text = "query,a,b\ncafé,1,0\n" if suffix == ".csv" else json.dumps([record("café", a=1, b=0)])
    path.write_bytes(text.replace("\\u00e9", "é").encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.\w+: not UTF-8"):
        RoutingData.from_file(path)


def test_a_folder_passed_as_a_data_file_is_called_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "runs.json"
    folder.mkdir()
    with pytest.raises(DataError, match=r"runs\.json: is a folder"):
        RoutingData.from_file(folder)


@pytest.mark.parametrize("row", ["q1,1,0,1", "q1,1"], ids=["too many fields", "too few"])
def test_a_ragged_csv_row_is_refused_naming_its_line(tmp_path: Path, row: str) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(f"query,a,b\nq0,1,0\n{row}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"ragged\.csv, line 3: \d fields where the header has 3"):
        RoutingData.from_file(path)


def test_scores_keyed_by_numbers_name_the_field_and_the_key() -> None:
    with pytest.raises(DataTypeError) as caught:
        RoutingData.from_records([{"query": "q", "scores": {1: 1, 2: 0}}], source="app.json")
    assert_names(caught, 0, "'scores'")
    assert "app.json" in str(caught.value) and "got 1 (int)" in str(caught.value)


def test_costs_given_as_a_list_name_the_file_field_and_value() -> None:
    rows = [{"query": "q", "scores": {"a": 1, "b": 0}, "costs": [1, 2, 3]}]
    with pytest.raises(DataTypeError) as caught:
        RoutingData.from_records(rows, source="app.json")
    assert_names(caught, 0, "'costs'")
    assert "app.json" in str(caught.value) and "[1, 2, 3]" in str(caught.value)
