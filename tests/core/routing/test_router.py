"""Router: routing, costs, subsets, bad queries, threads, and save/load."""

from __future__ import annotations

import json
import pickle
import shutil
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModel

import core
from core import (
    ConfigError,
    Decision,
    QueryError,
    QueryTypeError,
    Router,
    RouterConfig,
    RouterDCError,
    RouterFileError,
    RoutingData,
    UnknownLLMError,
)
from core.routing.encoder import load_tokenizer
from core.routing.model import RouterDCModel

TOPIC_QUERIES = {
    "math-llm": "solve the equation integral derivative number",
    "code-llm": "write a python function class loop compile",
    "chat-llm": "tell me a story about friendship holiday weather",
}
MATH = TOPIC_QUERIES["math-llm"]
CHEAP_MATH = {"math-llm": 1.0, "code-llm": 0.01, "chat-llm": 0.01}


def same_decisions(first: list[Decision], second: list[Decision]) -> None:
    assert [d.llm for d in first] == [d.llm for d in second]
    assert [d.ranking for d in first] == [d.ranking for d in second]
    for a, b in zip(first, second, strict=True):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)


# ---------------------------------------------------------------------- a tiny router overfits


def test_tiny_router_routes_each_topic_to_its_llm(tiny_router: Router) -> None:
    for llm, query in TOPIC_QUERIES.items():
        assert tiny_router.route(query).llm == llm


def test_tiny_router_routes_every_training_query_to_its_best_llm(
    tiny_router: Router, toy_data: RoutingData
) -> None:
    decisions = tiny_router.route_batch(toy_data.queries)
    best = [toy_data.llm_names[i] for i in toy_data.scores.argmax(axis=1)]
    assert [d.llm for d in decisions] == best


# ---------------------------------------------------------------------- route, route_batch, rank


def test_route_returns_probabilities_over_all_llms_and_a_ranking_best_first(
    tiny_router: Router,
) -> None:
    decision = tiny_router.route(MATH)
    assert set(decision.probabilities) == set(tiny_router.llm_names)
    assert sum(decision.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert decision.ranking == sorted(
        decision.probabilities, key=decision.probabilities.__getitem__, reverse=True
    )
    assert decision.llm == decision.ranking[0]
    assert decision.probability == max(decision.probabilities.values())


def test_route_batch_gives_the_same_decisions_as_routing_one_by_one(tiny_router: Router) -> None:
    queries = [*TOPIC_QUERIES.values(), "a loop about the weather", "number story"]
    one_by_one = [tiny_router.route(q) for q in queries]
    same_decisions(tiny_router.route_batch(queries, batch_size=2), one_by_one)


def test_route_batch_of_no_queries_is_an_empty_list(tiny_router: Router) -> None:
    assert tiny_router.route_batch([]) == []


def test_route_batch_accepts_any_iterable_of_queries(tiny_router: Router) -> None:
    decisions = tiny_router.route_batch(q for q in TOPIC_QUERIES.values())
    assert [d.llm for d in decisions] == list(TOPIC_QUERIES)


def test_rank_lists_every_llm_best_first_with_its_probability(tiny_router: Router) -> None:
    ranked = tiny_router.rank(MATH)
    assert ranked[0][0] == "math-llm"
    assert sorted(name for name, _ in ranked) == sorted(tiny_router.llm_names)
    probabilities = [p for _, p in ranked]
    assert probabilities == sorted(probabilities, reverse=True)
    assert dict(ranked) == pytest.approx(tiny_router.route(MATH).probabilities)


# ---------------------------------------------------------------------- allowed / exclude


def test_exclude_routes_to_the_next_llm_in_the_ranking(tiny_router: Router) -> None:
    full = tiny_router.route(MATH)
    decision = tiny_router.route(MATH, exclude=[full.llm])
    assert decision.llm == full.ranking[1]
    assert full.llm not in decision.probabilities
    assert sum(decision.probabilities.values()) == pytest.approx(1.0, abs=1e-6)


def test_allowed_routes_only_among_the_given_llms(tiny_router: Router) -> None:
    decision = tiny_router.route(MATH, allowed=["code-llm", "chat-llm"])
    assert decision.llm in {"code-llm", "chat-llm"}
    assert set(decision.ranking) == {"code-llm", "chat-llm"}
    only = tiny_router.route(MATH, allowed=["chat-llm"])
    assert only.llm == "chat-llm"
    assert only.probabilities == {"chat-llm": pytest.approx(1.0)}


def test_allowed_and_exclude_combine(tiny_router: Router) -> None:
    decision = tiny_router.route(MATH, allowed=["math-llm", "chat-llm"], exclude=["math-llm"])
    assert decision.llm == "chat-llm"


@pytest.mark.parametrize("option", ["allowed", "exclude"])
def test_an_unknown_llm_in_allowed_or_exclude_is_a_key_error_naming_it(
    tiny_router: Router, option: str
) -> None:
    with pytest.raises(UnknownLLMError, match="gpt-5") as caught:
        options: dict[str, Any] = {option: ["gpt-5"]}
        tiny_router.route(MATH, **options)
    assert isinstance(caught.value, KeyError)
    assert option in str(caught.value)


def test_a_single_string_for_exclude_is_a_type_error(tiny_router: Router) -> None:
    with pytest.raises(QueryTypeError, match="exclude"):
        tiny_router.route(MATH, exclude="math-llm")


def test_excluding_every_llm_is_an_error(tiny_router: Router) -> None:
    with pytest.raises(ConfigError, match="no LLM left"):
        tiny_router.route(MATH, exclude=tiny_router.llm_names)


# ---------------------------------------------------------------------- cost-aware routing


def test_a_cost_weight_moves_the_choice_to_a_cheap_llm(tiny_router: Router) -> None:
    plain = tiny_router.route(MATH)
    assert plain.llm == "math-llm"
    thrifty = tiny_router.route(MATH, cost_weight=1.0, costs=CHEAP_MATH)
    assert thrifty.llm in {"code-llm", "chat-llm"}
    assert thrifty.ranking[-1] == "math-llm"
    # The costs change the choice, not p(t|x).
    assert thrifty.probabilities == plain.probabilities


def test_a_small_cost_weight_keeps_a_clearly_better_llm(tiny_router: Router) -> None:
    assert tiny_router.route(MATH, cost_weight=0.01, costs=CHEAP_MATH).llm == "math-llm"


def test_cost_weight_zero_is_plain_argmax_whatever_the_prices(tiny_router: Router) -> None:
    plain = tiny_router.route(MATH)
    priced = tiny_router.route(MATH, cost_weight=0.0, costs=CHEAP_MATH)
    assert priced == plain
    probabilities = plain.probabilities
    assert plain.llm == max(probabilities, key=probabilities.__getitem__)


def test_the_cost_weight_means_the_same_for_any_price_unit(tiny_router: Router) -> None:
    in_cents = {name: 100 * price for name, price in CHEAP_MATH.items()}
    for weight in (0.1, 0.5, 1.0):
        dollars = tiny_router.route(MATH, cost_weight=weight, costs=CHEAP_MATH)
        cents = tiny_router.route(MATH, cost_weight=weight, costs=in_cents)
        assert dollars.ranking == cents.ranking


def test_a_cost_weight_without_prices_is_an_error(tiny_router: Router) -> None:
    assert tiny_router.config.costs is None  # the toy data has no prices
    with pytest.raises(ConfigError, match="no prices"):
        tiny_router.route(MATH, cost_weight=0.5)


def test_prices_missing_an_llm_are_a_key_error_naming_it(tiny_router: Router) -> None:
    with pytest.raises(UnknownLLMError, match="chat-llm"):
        tiny_router.route(MATH, cost_weight=0.5, costs={"math-llm": 1.0, "code-llm": 0.1})


@pytest.mark.parametrize("weight", [-0.1, float("nan"), float("inf"), "high"])
def test_a_bad_cost_weight_is_an_error(tiny_router: Router, weight: object) -> None:
    with pytest.raises(ConfigError, match="cost_weight"):
        tiny_router.route(MATH, cost_weight=weight, costs=CHEAP_MATH)  # type: ignore[arg-type]


@pytest.mark.parametrize("price", [-1.0, float("nan"), "cheap"])
def test_a_bad_price_is_an_error(tiny_router: Router, price: object) -> None:
    costs = {**CHEAP_MATH, "chat-llm": price}
    with pytest.raises(ConfigError, match="costs"):
        tiny_router.route(MATH, cost_weight=0.5, costs=costs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- bad and huge queries


@pytest.mark.parametrize("query", ["", "   ", "\n\t "])
def test_an_empty_query_is_a_value_error(tiny_router: Router, query: str) -> None:
    with pytest.raises(QueryError, match="empty") as caught:
        tiny_router.route(query)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("query", [None, 42, b"bytes", ["a list"]])
def test_a_query_that_is_not_a_string_is_a_type_error(tiny_router: Router, query: object) -> None:
    with pytest.raises(QueryTypeError, match="string") as caught:
        tiny_router.route(query)  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)


def test_a_bad_query_in_a_batch_is_named_by_its_position(tiny_router: Router) -> None:
    with pytest.raises(QueryTypeError, match="query 1"):
        tiny_router.route_batch(["fine", 5])  # type: ignore[list-item]
    with pytest.raises(QueryError, match="query 2"):
        tiny_router.route_batch(["fine", "also fine", ""])


@pytest.mark.parametrize("queries", ["", "one query as a string"])
def test_route_batch_of_a_single_string_is_a_type_error(tiny_router: Router, queries: str) -> None:
    with pytest.raises(QueryTypeError, match="list of queries"):
        tiny_router.route_batch(queries)


def test_an_enormous_query_is_truncated_on_the_left(tiny_router: Router) -> None:
    # A million characters about the weather, ending in a long math question: the router keeps
    # the last max_length tokens, so it routes as it routes the end of the question alone.
    tail = " ".join(["solve the equation integral derivative number"] * 20)
    enormous = "weather " * 125_000 + tail
    assert len(enormous) > 1_000_000
    decision = tiny_router.route(enormous)
    assert decision.llm == "math-llm"
    assert decision.probabilities == pytest.approx(tiny_router.route(tail).probabilities, abs=1e-6)


def test_an_enormous_query_without_spaces_is_routed_without_error(tiny_router: Router) -> None:
    assert tiny_router.route("x" * 1_000_000).llm in tiny_router.llm_names


def test_max_length_beyond_the_encoder_positions_is_capped_so_long_queries_route(
    tiny_encoder: str,
) -> None:
    # The tiny encoder has 128 positions; a config asking for 512 tokens must not crash torch.
    encoder = AutoModel.from_pretrained(tiny_encoder)
    model = RouterDCModel(encoder, 2, pooling="mean", temperature=1.0, projection=False)
    config = RouterConfig(llm_names=["a", "b"], encoder=tiny_encoder, max_length=512)
    router = Router(model, load_tokenizer(tiny_encoder), config, device="cpu")
    assert router.route("word " * 200_000).llm in {"a", "b"}
    assert router.tokenize(["word " * 1_000])["input_ids"].shape[1] <= 128


def test_tokenize_pads_each_batch_only_to_its_longest_query(tiny_router: Router) -> None:
    short, longer = "solve", "solve the equation integral derivative"
    batch = tiny_router.tokenize([short, longer])
    longest = len(tiny_router.tokenizer(longer)["input_ids"])
    assert batch["input_ids"].shape == (2, longest) < (2, tiny_router.config.max_length)
    assert batch["attention_mask"].sum(dim=1).tolist() == [3, longest]  # [CLS] solve [SEP]


# ---------------------------------------------------------------------- threads


def test_routing_from_eight_threads_gives_the_same_answers_as_serial_routing(
    tiny_router: Router, toy_data: RoutingData
) -> None:
    queries = toy_data.queries[:24]
    serial_single = [tiny_router.route(q) for q in queries]
    serial_batch = tiny_router.route_batch(queries, batch_size=5)
    start = threading.Barrier(8)

    def work(worker: int) -> tuple[list[Decision], list[Decision]]:
        start.wait()
        order = queries[worker:] + queries[:worker]  # each thread in its own order
        singles = [tiny_router.route(q) for q in order]
        singles = singles[len(queries) - worker :] + singles[: len(queries) - worker]
        return singles, tiny_router.route_batch(queries, batch_size=5)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(8)))
    for singles, batch in results:
        same_decisions(singles, serial_single)
        same_decisions(batch, serial_batch)


# ---------------------------------------------------------------------- save and load


def test_save_writes_the_config_weights_and_tokenizer_and_nothing_pickled(
    tiny_router: Router, saved_router: Path
) -> None:
    names = {p.name for p in saved_router.iterdir()}
    assert {"config.json", "model.safetensors", "encoder_config.json"} <= names
    assert any(name.startswith("tokenizer") for name in names)
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    config = json.loads((saved_router / "config.json").read_text())
    assert config["llm_names"] == tiny_router.llm_names
    assert config["pooling"] == tiny_router.config.pooling
    assert config["temperature"] == tiny_router.config.temperature
    assert config["encoder"] == tiny_router.config.encoder
    assert config["version"] == core.__version__


def test_a_saved_router_loads_with_identical_decisions(
    tiny_router: Router, saved_router: Path, toy_data: RoutingData
) -> None:
    loaded = core.load(saved_router)
    assert loaded.llm_names == tiny_router.llm_names
    assert loaded.config == tiny_router.config
    queries = [*toy_data.queries[:20], *TOPIC_QUERIES.values()]
    before, after = tiny_router.route_batch(queries), loaded.route_batch(queries)
    assert [d.llm for d in after] == [d.llm for d in before]
    assert [d.ranking for d in after] == [d.ranking for d in before]
    np.testing.assert_array_equal(loaded.logits(queries), tiny_router.logits(queries))


def test_loading_never_unpickles_and_never_touches_the_network(
    saved_router: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("load must not unpickle or connect")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    assert core.load(saved_router).route(MATH).llm == "math-llm"


@pytest.mark.parametrize(
    "missing", ["config.json", "model.safetensors", "encoder_config.json", "tokenizer.json"]
)
def test_a_missing_file_is_a_router_file_error_naming_it(saved_router: Path, missing: str) -> None:
    (saved_router / missing).unlink()
    with pytest.raises(RouterFileError, match=missing.replace(".", r"\.")):
        core.load(saved_router)


def test_a_folder_that_is_not_there_is_a_router_file_error(tmp_path: Path) -> None:
    with pytest.raises(RouterFileError, match=r"config\.json"):
        core.load(tmp_path / "nowhere")


@pytest.mark.parametrize("keep", [0.5, 0.999, 8 / 4_000_000])
def test_a_truncated_weights_file_is_a_router_file_error(saved_router: Path, keep: float) -> None:
    weights = saved_router / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as handle:
        handle.truncate(max(1, int(size * keep)))
    with pytest.raises(RouterFileError, match="truncated"):
        core.load(saved_router)


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["llm_names"].append("extra-llm"),
        lambda c: c.update(llm_names=c["llm_names"][:2]),
        lambda c: c.update(projection=True),
    ],
    ids=["more-llms", "fewer-llms", "projection"],
)
def test_weights_that_do_not_match_the_config_are_a_router_file_error(
    saved_router: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    edit_json(saved_router / "config.json", change)
    with pytest.raises(RouterFileError, match="does not match"):
        core.load(saved_router)


def test_weights_that_do_not_match_the_encoder_config_are_a_router_file_error(
    saved_router: Path,
) -> None:
    edit_json(saved_router / "encoder_config.json", lambda c: c.update(hidden_size=64))
    with pytest.raises(RouterFileError, match="does not match"):
        core.load(saved_router)


@pytest.mark.parametrize(
    ("name", "text", "named"),
    [
        ("config.json", "{not json", "config.json"),
        ("config.json", '{"llm_names": ["a", "b"], "pooling": "median"}', "pooling"),
        ("config.json", '{"llm_names": ["a"]}', "llm_names"),
        ("encoder_config.json", "{not json", "encoder_config.json"),
        ("encoder_config.json", '{"model_type": "no-such-model"}', "encoder_config.json"),
        ("encoder_config.json", '{"hidden_size": 32}', "model_type"),
    ],
)
def test_an_unreadable_config_is_a_router_file_error_naming_the_problem(
    saved_router: Path, name: str, text: str, named: str
) -> None:
    (saved_router / name).write_text(text)
    with pytest.raises(RouterFileError, match=named):
        core.load(saved_router)


def test_a_tokenizer_from_another_encoder_is_a_router_file_error(
    saved_router: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    shutil.copytree(saved_router, other)
    tokenizer = json.loads((other / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    for token in list(vocab)[-100:]:
        del vocab[token]
    (other / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(RouterFileError, match="tokenizer"):
        core.load(other)


def test_router_file_error_is_an_os_error_and_a_routerdc_error() -> None:
    assert issubclass(RouterFileError, OSError)
    assert issubclass(RouterFileError, RouterDCError)
