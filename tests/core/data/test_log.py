"""The routing log: writing, outcomes, exploration, crashes, concurrency, reading back."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import core
from core.config import RouterConfig
from core.data.log import LoggedData, RoutingLog, wilson_interval
from core.routing.base import BaseRouter, Decision, explore

LLMS = ["small", "medium", "large"]
ROOT = Path(__file__).resolve().parents[3]


class FixedRouter(BaseRouter):
    """A torch-free router whose logits prefer small > medium > large for every query."""

    def __init__(self, llm_names: Sequence[str] = LLMS) -> None:
        self.config = RouterConfig(llm_names=list(llm_names), version="test-1")
        self.max_tokens = 64

    def logits(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return np.tile(np.linspace(2.0, 0.0, len(self.config.llm_names)), (len(queries), 1))

    def embed(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return np.zeros((len(queries), 4))

    def pooled(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return np.array([[len(q), 1.0, 0.0, 2.0] for q in queries], dtype=np.float32)


def decision(llm: str = "small", propensity: float | None = 1.0) -> Decision:
    return Decision(llm, {n: 1 / len(LLMS) for n in LLMS}, list(LLMS), propensity=propensity)


@pytest.fixture
def log(tmp_path: Path) -> RoutingLog:
    return RoutingLog(tmp_path / "routing.db")


# ---------------------------------------------------------------------- writing and reading


def test_route_with_log_writes_one_row_per_call_with_the_decision(log: RoutingLog) -> None:
    router = FixedRouter()
    made = router.route("what is 2 + 2?", log=log, run_id="run-1")
    router.route_batch(["a", "b"], log=log, run_ids=["run-2", "run-3"])
    calls = log.calls()
    assert [c.run_id for c in calls] == ["run-1", "run-2", "run-3"]
    first = calls[0]
    assert first.query == "what is 2 + 2?" and first.chosen == made.llm == "small"
    assert first.probabilities == pytest.approx(made.probabilities)
    assert first.ranking == made.ranking and first.allowed == LLMS
    assert first.explored is False and first.propensity == 1.0
    assert first.router_version == "test-1" and first.score is None
    assert log.llm_names == LLMS


def test_route_without_a_run_id_gets_a_fresh_uuid_for_each_call(log: RoutingLog) -> None:
    decisions = FixedRouter().route_batch(["a", "b", "c"], log=log)
    ids = [c.run_id for c in log.calls()]
    assert len(set(ids)) == 3 and all(len(i) == 36 for i in ids)
    assert [d.run_id for d in decisions] == ids
    log.record_outcome(decisions[1].run_id or "", 1.0)  # the decision says which call it was
    assert [c.score for c in log.calls()] == [None, 1.0, None]
    assert FixedRouter().route("not logged").run_id is None


def test_answer_and_outcome_are_stored_on_the_call(log: RoutingLog) -> None:
    log.record(decision(), query="q", run_id="r", llm_names=LLMS)
    log.record_answer("r", answered_by="medium", latency_s=0.25, cost=0.002)
    log.record_outcome("r", 1)
    (call,) = log.calls()
    assert (call.answered_by, call.latency_s, call.cost, call.score) == ("medium", 0.25, 0.002, 1)
    assert call.answering_llm == "medium" and call.outcome_time is not None


def test_a_repeated_outcome_replaces_the_earlier_one_and_says_so(
    log: RoutingLog, caplog: pytest.LogCaptureFixture
) -> None:
    log.record(decision(), query="q", run_id="r", llm_names=LLMS)
    log.record_outcome("r", 0.0)
    with caplog.at_level(logging.WARNING, logger="core.data.log"):
        log.record_outcome("r", 1.0)
    assert log.calls()[0].score == 1.0
    assert "outcome 0.0 replaced by 1.0" in caplog.text


def test_outcomes_are_imported_from_csv_and_jsonl_exports(log: RoutingLog, tmp_path: Path) -> None:
    log.record_batch(
        [decision()] * 3, queries=["a", "b", "c"], run_ids=["x", "y", "z"], llm_names=LLMS
    )
    (tmp_path / "out.csv").write_text("run_id,score\nx,1\ny,0.5\n", encoding="utf-8")
    (tmp_path / "out.jsonl").write_text('{"run_id": "z", "score": 0}\n\n', encoding="utf-8")
    assert log.import_outcomes(tmp_path / "out.csv") == 2
    assert log.import_outcomes(tmp_path / "out.jsonl") == 1
    assert [c.score for c in log.calls()] == [1.0, 0.5, 0.0]


# ---------------------------------------------------------------------- bad input


def test_an_outcome_for_an_unknown_run_names_the_run_and_changes_nothing(log: RoutingLog) -> None:
    log.record(decision(), query="q", run_id="known", llm_names=LLMS)
    log.record_outcome("known", 0.5)
    with pytest.raises(core.UnknownRunError, match="'run_id': 'nope'"):
        log.record_outcome("nope", 1.0)
    with pytest.raises(KeyError):  # the builtin a caller would catch
        log.record_answer("nope", answered_by="small")
    assert [(c.run_id, c.score) for c in log.calls()] == [("known", 0.5)]


@pytest.mark.parametrize("score", [1.5, -0.1, math.nan, math.inf])
def test_a_score_outside_the_unit_interval_or_nan_is_refused_by_name(
    log: RoutingLog, score: float
) -> None:
    log.record(decision(), query="q", run_id="r", llm_names=LLMS)
    log.record_outcome("r", 0.25)
    with pytest.raises(core.DataError, match=r"field 'score'.*\[0, 1\]"):
        log.record_outcome("r", score)
    assert log.calls()[0].score == 0.25


def test_a_non_number_score_is_a_type_error(log: RoutingLog) -> None:
    log.record(decision(), query="q", run_id="r", llm_names=LLMS)
    with pytest.raises(core.DataTypeError, match=r"field 'score'.*'good'"):
        log.record_outcome("r", "good")  # type: ignore[arg-type]


def test_one_bad_row_in_an_outcomes_file_records_none_of_it(
    log: RoutingLog, tmp_path: Path
) -> None:
    log.record_batch([decision()] * 2, queries=["a", "b"], run_ids=["x", "y"], llm_names=LLMS)
    (tmp_path / "bad.csv").write_text("run_id,score\nx,1\ny,2\n", encoding="utf-8")
    with pytest.raises(core.DataError, match=r"bad.csv, line 3, field 'score'.*2\.0"):
        log.import_outcomes(tmp_path / "bad.csv")
    (tmp_path / "unknown.jsonl").write_text(
        '{"run_id": "x", "score": 1}\n{"run_id": "ghost", "score": 1}\n', encoding="utf-8"
    )
    with pytest.raises(core.UnknownRunError, match="line 2, field 'run_id': 'ghost'"):
        log.import_outcomes(tmp_path / "unknown.jsonl")
    assert [c.score for c in log.calls()] == [None, None]


def test_a_log_refuses_calls_from_a_router_over_another_llm_set(log: RoutingLog) -> None:
    FixedRouter().route("q", log=log, run_id="first")
    other = FixedRouter(["small", "medium", "huge"])
    with pytest.raises(core.DataError, match=r"field 'llm_names'.*'huge'"):
        other.route("q", log=log, run_id="second")
    with pytest.raises(core.DataError, match="field 'llm_names'"):
        RoutingLog(log.path, llm_names=["small", "huge"])
    assert [c.run_id for c in log.calls()] == ["first"]


def test_a_run_id_already_in_the_log_is_refused_and_the_batch_writes_nothing(
    log: RoutingLog,
) -> None:
    log.record(decision(), query="q", run_id="taken", llm_names=LLMS)
    with pytest.raises(core.DataError, match="field 'run_id': 'taken'"):
        log.record_batch(
            [decision()] * 2, queries=["a", "b"], run_ids=["fresh", "taken"], llm_names=LLMS
        )
    assert [c.run_id for c in log.calls()] == ["taken"]


def test_an_answer_by_an_llm_the_log_does_not_know_is_refused(log: RoutingLog) -> None:
    log.record(decision(), query="q", run_id="r", llm_names=LLMS)
    with pytest.raises(core.UnknownLLMError, match="field 'answered_by': 'gpt-9'"):
        log.record_answer("r", answered_by="gpt-9")
    with pytest.raises(core.DataError, match="field 'cost'"):
        log.record_answer("r", answered_by="small", cost=-1.0)
    assert log.calls()[0].answered_by is None


def test_a_file_that_is_not_a_routing_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(core.DataError, match="not a routing log"):
        RoutingLog(path)


# ---------------------------------------------------------------------- exploration


def test_exploration_picks_the_greedy_llm_with_probability_one_minus_epsilon() -> None:
    rng = np.random.default_rng(7)
    base = Decision("a", {"a": 0.5, "b": 0.2, "c": 0.2, "d": 0.1}, ["a", "b", "c", "d"])
    draws = [explore(base, 0.2, rng) for _ in range(20_000)]
    counts = {n: sum(d.llm == n for d in draws) / len(draws) for n in "abcd"}
    # Greedy 0.8, each other 0.2 / 3; five standard errors of 20,000 draws is about 0.014.
    assert counts["a"] == pytest.approx(0.8, abs=0.015)
    for other in "bcd":
        assert counts[other] == pytest.approx(0.2 / 3, abs=0.01)
    for d in draws:
        assert d.explored == (d.llm != "a")
        assert d.propensity == pytest.approx(0.8 if d.llm == "a" else 0.2 / 3)
        assert d.ranking[0] == d.llm and sorted(d.ranking) == list("abcd")


def test_exploration_is_off_by_default_and_one_candidate_is_never_explored_away() -> None:
    router = FixedRouter()
    assert all(not d.explored and d.propensity == 1.0 for d in router.route_batch(["q"] * 50))
    lone = router.route("q", allowed=["large"], explore=1.0, rng=np.random.default_rng(0))
    assert (lone.llm, lone.explored, lone.propensity) == ("large", False, 1.0)
    always = router.route("q", explore=1.0, rng=np.random.default_rng(0))
    assert always.explored and always.llm != "small" and always.propensity == 0.5


@pytest.mark.parametrize("epsilon", [-0.1, 1.5, math.nan, True])
def test_an_exploration_rate_outside_the_unit_interval_is_refused(epsilon: float) -> None:
    with pytest.raises(core.ConfigError, match="explore must be a number in"):
        FixedRouter().route("q", explore=epsilon)


def test_explored_calls_are_logged_with_their_propensity(log: RoutingLog) -> None:
    FixedRouter().route_batch(["q"] * 300, explore=0.3, rng=np.random.default_rng(1), log=log)
    calls = log.calls()
    explored = [c for c in calls if c.explored]
    assert 0 < len(explored) < len(calls)
    assert all(c.propensity == pytest.approx(0.15) and c.chosen != "small" for c in explored)
    assert all(c.propensity == pytest.approx(0.7) for c in calls if not c.explored)
    assert log.stats()["explored_share"] == pytest.approx(len(explored) / len(calls))


# ---------------------------------------------------------------------- reading back


def test_from_log_gives_one_score_per_query_for_the_llm_that_answered(tmp_path: Path) -> None:
    log = RoutingLog(tmp_path / "routing.db")
    log.record(decision("small", 0.8), query="a", run_id="a", llm_names=LLMS)
    log.record(decision("large", 0.05), query="b", run_id="b", llm_names=LLMS)
    log.record(decision("small", 0.8), query="c", run_id="c", llm_names=LLMS)  # no outcome
    log.record_answer("a", answered_by="medium", cost=0.01)  # a fallback answered
    log.record_outcome("a", 1.0)
    log.record_outcome("b", 0.0)
    data = core.RoutingData.from_log(tmp_path / "routing.db")
    assert isinstance(data, LoggedData) and data.run_ids == ["a", "b"]
    np.testing.assert_array_equal(data.mask, [[False, True, False], [False, False, True]])
    assert data.scores[0, 1] == 1.0 and data.scores[1, 2] == 0.0
    assert data.costs is not None and data.costs[0, 1] == 0.01
    # Weights are 1 / propensity, capped at the clip (1 / 0.05 = 20 -> 3).
    assert data.sample_weights is not None
    np.testing.assert_allclose(data.sample_weights, [1.25, 3.0])
    clipped = core.RoutingData.from_log(tmp_path / "routing.db", clip=10.0)
    assert isinstance(clipped, LoggedData) and clipped.sample_weights is not None
    np.testing.assert_allclose(clipped.sample_weights, [1.25, 10.0])
    plain = core.RoutingData.from_log(tmp_path / "routing.db", weighting="none")
    assert isinstance(plain, LoggedData) and plain.sample_weights is not None
    np.testing.assert_array_equal(plain.sample_weights, [1.0, 1.0])


def test_from_log_without_any_outcome_says_there_is_nothing_to_train_on(log: RoutingLog) -> None:
    log.record(decision(), query="q", run_id="r", llm_names=LLMS)
    with pytest.raises(core.DataError, match="no call has an outcome yet"):
        core.RoutingData.from_log(log.path)
    with pytest.raises(core.DataError, match="no such routing log"):
        core.RoutingData.from_log(log.path.parent / "missing.db")


def test_a_log_without_query_text_keeps_the_vector_and_trains_from_it(tmp_path: Path) -> None:
    log = RoutingLog(tmp_path / "private.db", store_queries=False)
    FixedRouter().route_batch(["secret one", "secret three"], log=log, run_ids=["p1", "p2"])
    log.record_outcome("p1", 1.0)
    log.record_outcome("p2", 0.0)
    with sqlite3.connect(log.path) as raw:
        stored = raw.execute("SELECT query, query_vector FROM calls").fetchall()
    assert all(text is None and blob is not None for text, blob in stored)
    assert b"secret" not in log.path.read_bytes()
    data = core.RoutingData.from_log(log.path)
    assert data.vectors is not None
    np.testing.assert_array_equal(data.vectors[:, 0], [10, 12])  # len("secret one"), ...
    assert data.vector_key == ("all-MiniLM-L6-v2", "mean", 64)
    assert len(data.encoding_cache()) == 2


def test_stats_count_calls_outcomes_shares_and_give_a_wilson_interval(log: RoutingLog) -> None:
    ids = log.record_batch(
        [decision("small")] * 8 + [decision("large")] * 2,
        queries=list("abcdefghij"),
        llm_names=LLMS,
    )
    for run_id, score in zip(ids[:4], [1, 1, 1, 0], strict=True):
        log.record_outcome(run_id, score)
    stats = log.stats()
    assert (stats["calls"], stats["outcomes"]) == (10, 4)
    small = stats["llms"]["small"]
    assert small["share"] == 0.8 and small["mean_score"] == 0.75 and small["outcomes"] == 4
    assert small["interval_95"] == pytest.approx(list(wilson_interval(0.75, 4)))
    low, high = wilson_interval(0.75, 4)
    assert 0.30 < low < 0.31 and 0.95 < high < 0.96  # the textbook Wilson interval for 3/4
    assert stats["llms"]["medium"]["mean_score"] is None


# ---------------------------------------------------------------------- crashes and concurrency

_WRITER = """
import sys, threading
from core.data.log import RoutingLog
from core.routing.base import Decision
path, name = sys.argv[1], sys.argv[2]
count, threads, durable = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
log = RoutingLog(path, durable=durable)
llms = ["small", "medium", "large"]
lock = threading.Lock()
def write(t):
    for i in range(count):
        run_id = f"{name}-{t}-{i}"
        decision = Decision("medium", {n: 1 / 3 for n in llms}, llms, propensity=1.0)
        log.record(decision, query="x" * (i % 50 + 1) + run_id, run_id=run_id, llm_names=llms)
        with lock:
            print(run_id, flush=True)
workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
"""


def _writer(path: Path, name: str, count: int, threads: int, durable: bool) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            _WRITER,
            str(path),
            name,
            str(count),
            str(threads),
            "1" if durable else "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _write_rows(log: RoutingLog, name: str, count: int) -> None:
    for i in range(count):
        log.record(
            decision("large"),
            query=f"thread query {name}-{i}",
            run_id=f"{name}-{i}",
            llm_names=LLMS,
        )


def test_a_writer_killed_mid_stream_loses_no_committed_row_and_leaves_no_half_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "routing.db"
    log = RoutingLog(path)
    threads = [threading.Thread(target=_write_rows, args=(log, f"t{t}", 150)) for t in range(2)]
    child = _writer(path, "child", 100_000, 3, durable=True)
    for thread in threads:
        thread.start()
    assert child.stdout is not None
    committed = []
    for line in child.stdout:  # each id is printed after its commit returned
        committed.append(line.strip())
        if len(committed) >= 60:
            break
    os.kill(child.pid, signal.SIGKILL)
    committed += [line.strip() for line in child.stdout if line.strip()]
    child.stdout.close()
    child.wait()
    for thread in threads:
        thread.join()
    assert child.returncode == -signal.SIGKILL

    reopened = RoutingLog(path)
    calls = {c.run_id: c for c in reopened.calls()}  # every row parses
    assert set(committed) <= set(calls)
    assert sum(i.startswith("t") for i in calls) == 300
    for run_id, call in calls.items():
        assert call.query is not None and call.query.endswith(run_id)
        assert call.allowed == LLMS and call.chosen in LLMS
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    reopened.record(decision(), query="after the crash", run_id="after", llm_names=LLMS)
    assert len(reopened) == len(calls) + 1


def test_eight_threads_and_two_processes_writing_at_once_lose_no_row(tmp_path: Path) -> None:
    path = tmp_path / "routing.db"
    log = RoutingLog(path, durable=False)
    children = [_writer(path, f"p{p}", 1000, 1, durable=False) for p in range(2)]
    threads = [threading.Thread(target=_write_rows, args=(log, f"t{t}", 1000)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outputs = [child.communicate(timeout=300)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert sum(len(o.split()) for o in outputs) == 2000
    ids = [c.run_id for c in RoutingLog(path).calls()]
    assert len(ids) == len(set(ids)) == 10_000
    for prefix in [*(f"t{t}-" for t in range(8)), "p0-", "p1-"]:
        assert sum(i.startswith(prefix) for i in ids) == 1000


def test_each_thread_writes_through_its_own_connection(log: RoutingLog) -> None:
    seen: list[int] = []

    def connect() -> None:
        seen.append(id(log._connect()))

    worker = threading.Thread(target=connect)
    worker.start()
    worker.join()
    connect()
    assert len(set(seen)) == 2


def test_fit_takes_the_logs_weights_in_its_neighbour_means(tmp_path: Path) -> None:
    import torch

    from core.training.trainer import _Targets

    # Two queries, same neighbourhood; LLM 0 scored 1 (weight 1) and 0 (weight 9).
    scores = np.array([[1.0, np.nan], [0.0, 1.0]])
    targets = _Targets(
        ["a", "b"],
        scores,
        np.zeros_like(scores),
        np.zeros(2, dtype=int),
        torch.tensor([[1.0, 0.0], [0.9, 0.1]]),
        np.array([1.0, 9.0]),
    )
    np.testing.assert_allclose(targets(2), [[0.1, 1.0], [0.1, 1.0]])
    plain = _Targets(
        ["a", "b"],
        scores,
        np.zeros_like(scores),
        np.zeros(2, dtype=int),
        torch.tensor([[1.0, 0.0], [0.9, 0.1]]),
    )
    np.testing.assert_allclose(plain(2), [[0.5, 1.0], [0.5, 1.0]])


def test_record_batch_timestamps_are_recent(log: RoutingLog) -> None:
    before = time.time()
    log.record(decision(), query="q", run_id="r", llm_names=LLMS)
    assert before - 1 <= log.calls()[0].created <= time.time() + 1
    assert json.loads(json.dumps(log.stats()))["calls"] == 1


# ---------------------------------------------------------------------- training and the CLI


def _toy_log(path: Path, router: BaseRouter, data: core.RoutingData, **options: object) -> None:
    """Route the toy queries with exploration and reveal the chosen LLM's score for each."""
    log = RoutingLog(path, **options)  # type: ignore[arg-type]
    decisions = router.route_batch(
        data.queries,
        explore=0.5,
        rng=np.random.default_rng(0),
        log=log,
        run_ids=[f"toy-{i}" for i in range(len(data))],
    )
    for i, made in enumerate(decisions):
        log.record_outcome(f"toy-{i}", float(data.scores[i, data.llm_names.index(made.llm)]))


def test_train_and_log_stats_work_from_the_command_line(
    tmp_path: Path,
    toy_data: core.RoutingData,
    tiny_encoder: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from core import cli

    path = tmp_path / "routing.db"
    _toy_log(path, FixedRouter(toy_data.llm_names), toy_data)
    assert cli.main(["log", "stats", str(path)]) == 0
    printed = capsys.readouterr().out
    assert f"{len(toy_data)} calls, {len(toy_data)} outcomes (100.0%)" in printed
    assert "math-llm" in printed and "%" in printed
    out = tmp_path / "router"
    argv = ["train", "--log", str(path), "--out", str(out), "--encoder", tiny_encoder]
    assert cli.main([*argv, "--frozen-encoder", "--steps", "5", "--max-length", "32"]) == 0
    assert core.load(out).llm_names == toy_data.llm_names
    assert "the log holds 120 calls with an outcome" in capsys.readouterr().out


def test_a_log_without_text_trains_a_frozen_router_on_its_vectors_only(
    tmp_path: Path, toy_data: core.RoutingData, tiny_router: core.Router, tiny_encoder: str
) -> None:
    path = tmp_path / "private.db"
    _toy_log(path, tiny_router, toy_data, store_queries=False)
    data = core.RoutingData.from_log(path)
    assert not any(q in toy_data.queries for q in data.queries)
    options = {"encoder": tiny_encoder, "train_encoder": False, "steps": 5, "progress": False}
    trained = core.fit(data, max_length=64, encoding_cache=data.encoding_cache(), **options)
    assert trained.llm_names == toy_data.llm_names
    with pytest.raises(core.DataError, match="vectors from a routing log kept without text"):
        core.fit(data, max_length=32, encoding_cache=data.encoding_cache(), **options)
