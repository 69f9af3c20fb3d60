"""RouterDCSelector: which choice it picks, why, and how it treats choices it does not know."""

from __future__ import annotations

import pytest
from llama_index.core.schema import QueryBundle
from llama_index.core.tools import ToolMetadata

import core
from routerdc_llamaindex import RouterDCSelector, RouterDCSelectorResult


def tools(*names: str) -> list[ToolMetadata]:
    return [ToolMetadata(name=name, description=f"answers with {name}") for name in names]


@pytest.mark.parametrize("llm", ["math-llm", "code-llm", "chat-llm"])
def test_select_returns_the_index_of_the_choice_named_after_the_routed_llm(
    tiny_router: core.Router, queries: dict[str, str], llm: str
) -> None:
    choices = tools("chat-llm", "math-llm", "code-llm")  # not the router's order
    result = RouterDCSelector(tiny_router).select(choices, queries[llm])

    assert result.ind == [c.name for c in choices].index(llm)
    probability = tiny_router.route(queries[llm]).probability
    assert (
        result.reason == f"RouterDC picked {llm!r} (rank 1 of 3) with probability {probability:.3f}"
    )


def test_result_carries_the_routers_probabilities_and_ranking(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    result = RouterDCSelector(tiny_router).select(
        tools(*tiny_router.llm_names), queries["code-llm"]
    )
    decision = tiny_router.route(queries["code-llm"])

    assert isinstance(result, RouterDCSelectorResult)
    assert result.probabilities == pytest.approx(decision.probabilities)
    assert result.ranking == decision.ranking


def test_select_accepts_a_query_bundle_and_plain_string_choices(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    result = RouterDCSelector(tiny_router).select(
        ["math-llm", "chat-llm"], QueryBundle(query_str=queries["chat-llm"])
    )
    assert result.ind == 1


def test_choices_the_router_does_not_know_are_never_selected(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    choices = tools("gpt-99", "code-llm", "chat-llm")
    result = RouterDCSelector(tiny_router, max_outputs=3).select(choices, queries["math-llm"])

    assert 0 not in result.inds
    assert sorted(result.inds) == [1, 2]
    assert set(result.probabilities) == {"code-llm", "chat-llm"}
    assert sum(result.probabilities.values()) == pytest.approx(1.0)


def test_select_raises_a_value_error_naming_both_sets_of_names_when_no_choice_is_known(
    tiny_router: core.Router,
) -> None:
    with pytest.raises(ValueError, match="gpt-99") as raised:
        RouterDCSelector(tiny_router).select(tools("gpt-99", "claude-0"), "hello")
    message = str(raised.value)
    assert "claude-0" in message
    assert all(name in message for name in tiny_router.llm_names)


def test_two_choices_with_the_same_llm_name_are_rejected(tiny_router: core.Router) -> None:
    with pytest.raises(ValueError, match="choices 0 and 2 both stand for the LLM 'math-llm'"):
        RouterDCSelector(tiny_router).select(tools("math-llm", "code-llm", "math-llm"), "x")


def test_max_outputs_returns_the_top_k_choices_best_first(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    names = ["code-llm", "chat-llm", "math-llm"]
    result = RouterDCSelector(tiny_router, max_outputs=2).select(tools(*names), queries["math-llm"])
    ranking = tiny_router.route(queries["math-llm"]).ranking

    assert [names[i] for i in result.inds] == ranking[:2]
    assert result.reasons[1].startswith(f"RouterDC picked {ranking[1]!r} (rank 2 of 3)")


def test_max_outputs_above_the_number_of_known_choices_returns_them_all(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    result = RouterDCSelector(tiny_router, max_outputs=5).select(
        tools("math-llm", "chat-llm"), queries["code-llm"]
    )
    assert sorted(result.inds) == [0, 1]


@pytest.mark.parametrize("max_outputs", [0, -1, 1.5, True])
def test_max_outputs_must_be_a_positive_integer(
    tiny_router: core.Router, max_outputs: object
) -> None:
    with pytest.raises(core.ConfigError, match="max_outputs"):
        RouterDCSelector(tiny_router, max_outputs=max_outputs)  # type: ignore[arg-type]


async def test_aselect_gives_the_same_result_as_select(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    selector = RouterDCSelector(tiny_router, max_outputs=2)
    choices = tools("chat-llm", "math-llm", "code-llm")
    for query in queries.values():
        assert await selector.aselect(choices, query) == selector.select(choices, query)


def test_cost_weight_steers_the_choice_away_from_an_expensive_llm(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    costs = {"math-llm": 1.0, "code-llm": 0.0, "chat-llm": 0.0}
    selector = RouterDCSelector(tiny_router, cost_weight=1.0, costs=costs)
    result = selector.select(tools(*tiny_router.llm_names), queries["math-llm"])

    expected = tiny_router.route(queries["math-llm"], cost_weight=1.0, costs=costs).llm
    assert expected != "math-llm"
    assert tiny_router.llm_names[result.ind] == expected


def test_allowed_limits_the_choices_the_selector_may_pick(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    selector = RouterDCSelector(tiny_router, allowed=["code-llm", "chat-llm"], max_outputs=3)
    result = selector.select(tools(*tiny_router.llm_names), queries["math-llm"])

    assert [tiny_router.llm_names[i] for i in result.inds] == tiny_router.route(
        queries["math-llm"], allowed=["code-llm", "chat-llm"]
    ).ranking
    assert "math-llm" not in result.probabilities


def test_allowed_that_leaves_no_offered_choice_raises_a_value_error(
    tiny_router: core.Router,
) -> None:
    selector = RouterDCSelector(tiny_router, allowed=["chat-llm"])
    with pytest.raises(ValueError, match=r"allowed: \['chat-llm'\]"):
        selector.select(tools("math-llm", "code-llm"), "anything")


def test_allowed_naming_an_llm_the_router_does_not_know_fails_at_construction(
    tiny_router: core.Router,
) -> None:
    with pytest.raises(core.UnknownLLMError, match="gpt-99"):
        RouterDCSelector(tiny_router, allowed=["gpt-99"])


def test_selector_has_no_prompts_to_get_or_update(tiny_router: core.Router) -> None:
    selector = RouterDCSelector(tiny_router)
    selector.update_prompts({})
    assert selector.get_prompts() == {}
