"""Adding, removing and renaming an LLM of a trained router without retraining it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import core
from core import ConfigError, DataError, Router, RoutingData, UnknownLLMError
from core.cli import main
from core.training.onboarding import (
    MIN_SCORED_QUERIES,
    choose_warm_start,
    fit_llm_embedding,
)
from tests.conftest import toy_records

MATH = "solve the equation integral derivative number"
CODE = "write a python function class loop compile"
CHAT = "tell me a story about friendship holiday weather"
OLD_LLMS = ["math-llm", "code-llm"]


def without_chat(records: list[dict]) -> list[dict]:
    return [
        {**r, "scores": {k: v for k, v in r["scores"].items() if k != "chat-llm"}} for r in records
    ]


@pytest.fixture(scope="module")
def two_llm_router(tiny_encoder: str) -> Router:
    """A router trained on math-llm and code-llm only: it has never seen chat-llm.

    Its encoder is frozen, as on a CPU by default, so it has a projection that adding keeps.
    """
    return core.fit(
        RoutingData.from_records(without_chat(toy_records())),
        encoder=tiny_encoder,
        train_encoder=False,
        steps=100,
        batch_size=16,
        head_learning_rate=1e-2,
        max_length=64,
        temperature=1.0,
        seed=0,
        progress=False,
    )


@pytest.fixture(scope="module")
def chat_scores() -> RoutingData:
    """New queries (another seed) scored by all three LLMs, chat-llm among them."""
    return RoutingData.from_records(toy_records(n_per_topic=8, seed=1))


@pytest.fixture(scope="module")
def with_chat(two_llm_router: Router, chat_scores: RoutingData) -> Router:
    return two_llm_router.add_llm("chat-llm", chat_scores, cost=0.002)


# ---------------------------------------------------------------------- adding


def test_added_llm_takes_the_queries_it_answers_best(with_chat: Router) -> None:
    assert with_chat.config.llm_names == [*OLD_LLMS, "chat-llm"]
    assert with_chat.route(CHAT).llm == "chat-llm"
    assert with_chat.route(MATH).llm == "math-llm"
    assert with_chat.route(CODE).llm == "code-llm"


def test_adding_leaves_the_original_router_unchanged(
    tiny_encoder: str, two_llm_router: Router, chat_scores: RoutingData
) -> None:
    before = two_llm_router.logits([MATH, CODE, CHAT])
    rows = two_llm_router.model.head.llm_embeddings.detach().clone()
    two_llm_router.add_llm("chat-llm", chat_scores)
    assert two_llm_router.config.llm_names == OLD_LLMS
    assert torch.equal(two_llm_router.model.head.llm_embeddings, rows)
    assert np.array_equal(two_llm_router.logits([MATH, CODE, CHAT]), before)


def test_adding_then_removing_routes_exactly_like_the_original(
    two_llm_router: Router, with_chat: Router
) -> None:
    queries = [MATH, CODE, CHAT, "a query of none of the topics"]
    restored = with_chat.remove_llm("chat-llm")
    assert restored.config == two_llm_router.config
    assert np.array_equal(restored.logits(queries), two_llm_router.logits(queries))


def test_added_router_shares_the_frozen_encoder_and_owns_its_head(
    two_llm_router: Router, with_chat: Router
) -> None:
    assert with_chat.model.encoder is two_llm_router.model.encoder
    assert with_chat.model.head is not two_llm_router.model.head
    assert with_chat.tokenizer is not two_llm_router.tokenizer
    old, new = two_llm_router.model.head, with_chat.model.head
    assert old.projection is not None and new.projection is not None
    assert torch.equal(old.projection.weight, new.projection.weight)
    assert torch.equal(new.llm_embeddings[:2], old.llm_embeddings)


def test_history_records_what_was_added_and_how(
    two_llm_router: Router, with_chat: Router, chat_scores: RoutingData
) -> None:
    assert with_chat.history[: len(two_llm_router.history)] == two_llm_router.history
    entry = with_chat.history[-1]
    assert entry["event"] == "add_llm"
    assert entry["llm"] == "chat-llm"
    assert entry["queries"] == len(chat_scores)
    assert entry["queries_with_old_scores"] == len(chat_scores)
    assert entry["warm_start"].startswith(("correlated", "score_weighted"))
    assert entry["cost"] == 0.002


def test_the_given_cost_is_added_to_the_router_prices(with_chat: Router) -> None:
    assert with_chat.config.costs is not None
    assert with_chat.config.costs["chat-llm"] == 0.002
    assert with_chat.route(CHAT, cost_weight=0.0).llm == "chat-llm"


def test_without_a_cost_the_mean_cost_in_the_data_is_taken(
    two_llm_router: Router, chat_scores: RoutingData
) -> None:
    costs = np.full(chat_scores.scores.shape, np.nan)
    costs[:, chat_scores.llm_names.index("chat-llm")] = 0.004
    priced = RoutingData(
        chat_scores.queries, chat_scores.llm_names, chat_scores.scores, costs, chat_scores.tasks
    )
    added = two_llm_router.add_llm("chat-llm", priced)
    assert added.config.costs is not None
    assert added.config.costs["chat-llm"] == pytest.approx(0.004)


def test_new_llm_scores_alone_suffice_the_router_standing_in_for_the_others(
    two_llm_router: Router, chat_scores: RoutingData
) -> None:
    scores = chat_scores.scores.copy()
    scores[:, [chat_scores.llm_names.index(n) for n in OLD_LLMS]] = np.nan
    only_new = RoutingData(
        chat_scores.queries, chat_scores.llm_names, scores, None, chat_scores.tasks
    )
    added = two_llm_router.add_llm("chat-llm", only_new)
    assert added.history[-1]["queries_with_old_scores"] == 0
    assert added.history[-1]["warm_start"].startswith("score_weighted")
    assert added.route(CHAT).llm == "chat-llm"
    assert added.route(MATH).llm == "math-llm"


def test_queries_the_new_llm_did_not_answer_are_left_out(
    two_llm_router: Router, chat_scores: RoutingData
) -> None:
    scores = chat_scores.scores.copy()
    scores[:3, chat_scores.llm_names.index("chat-llm")] = np.nan
    partly = RoutingData(
        chat_scores.queries, chat_scores.llm_names, scores, None, chat_scores.tasks
    )
    added = two_llm_router.add_llm("chat-llm", partly)
    assert added.history[-1]["queries"] == len(chat_scores) - 3


# ---------------------------------------------------------------------- errors


def test_adding_a_name_the_router_has_is_refused(
    two_llm_router: Router, chat_scores: RoutingData
) -> None:
    with pytest.raises(ConfigError, match="'math-llm' is already one of the router's LLMs"):
        two_llm_router.add_llm("math-llm", chat_scores)


def test_data_without_scores_for_the_new_llm_is_refused(
    two_llm_router: Router, chat_scores: RoutingData
) -> None:
    with pytest.raises(DataError, match="data has no scores for 'gpt-99'"):
        two_llm_router.add_llm("gpt-99", chat_scores)


def test_too_few_scored_queries_are_refused_with_the_floor_and_why(
    two_llm_router: Router, chat_scores: RoutingData
) -> None:
    few = chat_scores.subset(range(MIN_SCORED_QUERIES - 1))
    with pytest.raises(DataError, match="on 9 queries; add_llm needs at least 10: fewer leave"):
        two_llm_router.add_llm("chat-llm", few)
    enough = chat_scores.subset(range(MIN_SCORED_QUERIES))
    assert two_llm_router.add_llm("chat-llm", enough).config.llm_names[-1] == "chat-llm"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("warm_start", "random", "warm_start must be one of"),
        ("neighbours", 0, "neighbours must be an integer >= 1, got 0"),
        ("steps", 2.5, "steps must be an integer >= 1, got 2.5"),
        ("anchor_weight", -1.0, "anchor_weight must be a finite number >= 0, got -1.0"),
        ("learning_rate", 0.0, "learning_rate must be a finite number > 0, got 0.0"),
        ("cost", -0.1, "cost must be a finite number of dollars >= 0, got -0.1"),
    ],
)
def test_out_of_range_options_are_refused_by_name(
    two_llm_router: Router, chat_scores: RoutingData, option: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        two_llm_router.add_llm("chat-llm", chat_scores, **{option: value})


def test_removing_or_renaming_an_unknown_llm_names_it(two_llm_router: Router) -> None:
    with pytest.raises(UnknownLLMError, match="unknown LLM 'gpt-99'"):
        two_llm_router.remove_llm("gpt-99")
    with pytest.raises(UnknownLLMError, match="unknown LLM 'gpt-99'"):
        two_llm_router.rename_llm("gpt-99", "gpt-100")


def test_a_router_keeps_at_least_two_llms(two_llm_router: Router) -> None:
    with pytest.raises(ConfigError, match="a router needs at least two"):
        two_llm_router.remove_llm("math-llm")


def test_renaming_to_a_name_in_use_is_refused(two_llm_router: Router) -> None:
    with pytest.raises(ConfigError, match="'code-llm' is already one of the router's LLMs"):
        two_llm_router.rename_llm("math-llm", "code-llm")


# ---------------------------------------------------------------------- removing, renaming


def test_removing_drops_the_llm_its_price_and_nothing_else(with_chat: Router) -> None:
    smaller = with_chat.remove_llm("math-llm")
    assert smaller.config.llm_names == ["code-llm", "chat-llm"]
    assert smaller.config.costs is not None and "math-llm" not in smaller.config.costs
    assert smaller.route(CHAT).llm == "chat-llm"
    full = with_chat.logits([CHAT, CODE])
    assert np.array_equal(smaller.logits([CHAT, CODE]), full[:, 1:])
    assert smaller.history[-1] == {"event": "remove_llm", "llm": "math-llm"}


def test_renaming_changes_the_name_and_price_key_not_the_routing(with_chat: Router) -> None:
    renamed = with_chat.rename_llm("chat-llm", "chat-llm-v2")
    assert renamed.config.llm_names == [*OLD_LLMS, "chat-llm-v2"]
    assert renamed.config.costs is not None and renamed.config.costs["chat-llm-v2"] == 0.002
    assert renamed.route(CHAT).llm == "chat-llm-v2"
    assert np.array_equal(renamed.logits([CHAT, MATH]), with_chat.logits([CHAT, MATH]))
    assert with_chat.config.llm_names[-1] == "chat-llm"


def test_an_added_router_saves_and_loads_routing_the_same(
    with_chat: Router, tmp_path: Path
) -> None:
    loaded = core.load(with_chat.save(tmp_path / "added"))
    assert loaded.config.llm_names == with_chat.config.llm_names
    queries = [MATH, CODE, CHAT]
    np.testing.assert_allclose(loaded.logits(queries), with_chat.logits(queries), atol=1e-6)


# ---------------------------------------------------------------------- the maths alone


def test_fit_moves_the_new_row_towards_the_queries_where_it_wins() -> None:
    # Two old LLMs along e0 and e1; the new LLM is right on queries along e2, wrong elsewhere.
    queries = torch.eye(3).repeat_interleave(4, dim=0)  # (12, 3)
    old = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    new_wins = (torch.arange(12) >= 8).float()
    scores = torch.stack([1 - new_wins, 1 - new_wins, new_wins], dim=1)  # (12, 3)
    row, loss = fit_llm_embedding(
        queries, old, scores, torch.tensor([1.0, 1.0, 1.0]), temperature=0.1, anchor_weight=0.0
    )
    assert torch.isclose(row.norm(), torch.tensor(1.0))
    assert int(row.argmax()) == 2
    logits = torch.cat([queries @ old.T, (queries @ row)[:, None]], dim=1)
    assert (logits.argmax(dim=1) == 2).tolist() == new_wins.bool().tolist()
    assert loss >= 0


def test_warm_start_is_the_embedding_of_the_most_correlated_llm() -> None:
    rng = np.random.default_rng(0)
    new = rng.integers(0, 2, 20).astype(float)
    old = np.stack([1 - new, new, rng.random(20)], axis=1)  # the second copies the new LLM
    embeddings = rng.normal(size=(3, 4))
    vectors = rng.normal(size=(20, 4))
    start, rule = choose_warm_start(
        vectors, new, old, np.ones(20, bool), embeddings, ["a", "b", "c"]
    )
    assert np.array_equal(start, embeddings[1])
    assert rule == "correlated: b (r=1.00)"


def test_without_old_scores_the_warm_start_is_the_score_weighted_query_mean() -> None:
    vectors = np.array([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    new = np.array([1.0, 0.0, 0.0])
    start, rule = choose_warm_start(
        vectors, new, np.full((3, 2), np.nan), np.zeros(3, bool), np.eye(2), ["a", "b"]
    )
    assert rule.startswith("score_weighted")
    assert start[0] > 0 > start[1]  # towards the query it answers, away from the others


# ---------------------------------------------------------------------- the command line


def test_cli_adds_renames_and_removes_an_llm(
    two_llm_router: Router, chat_scores: RoutingData, tmp_path: Path
) -> None:
    source = two_llm_router.save(tmp_path / "two")
    scored = tmp_path / "scored.jsonl"
    records = toy_records(n_per_topic=8, seed=1)
    scored.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    added, renamed, removed = tmp_path / "added", tmp_path / "renamed", tmp_path / "removed"
    assert main(["add-llm", "--router", str(source), "--name", "chat-llm", "--data",
                 str(scored), "--cost", "0.002", "--out", str(added)]) == 0  # fmt: skip
    assert core.load(added).route(CHAT).llm == "chat-llm"
    assert main(["rename-llm", "--router", str(added), "--name", "chat-llm",
                 "--new-name", "chatty", "--out", str(renamed)]) == 0  # fmt: skip
    assert core.load(renamed).config.llm_names == [*OLD_LLMS, "chatty"]
    assert main(["remove-llm", "--router", str(renamed), "--name", "chatty",
                 "--out", str(removed)]) == 0  # fmt: skip
    assert core.load(removed).config.llm_names == OLD_LLMS


def test_cli_reports_a_name_already_present_as_an_error(
    two_llm_router: Router, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = two_llm_router.save(tmp_path / "two")
    scored = tmp_path / "scored.jsonl"
    records = toy_records(n_per_topic=8, seed=1)
    scored.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    code = main(["add-llm", "--router", str(source), "--name", "code-llm", "--data",
                 str(scored), "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert "'code-llm' is already one of the router's LLMs" in capsys.readouterr().err
