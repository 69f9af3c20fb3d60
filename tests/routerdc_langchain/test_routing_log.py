"""The LangChain adapters write the routing log: each call's decision, who answered, its id."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel

import core
from routerdc_langchain import ChatRouterDC, RunnableRouter

MATH = "solve the equation integral derivative number"
CODE = "write a python function class loop compile"
LLMS = ("math-llm", "code-llm", "chat-llm")


def chat_models() -> dict[str, FakeListChatModel]:
    return {name: FakeListChatModel(responses=[f"from {name}"] * 50) for name in LLMS}


def test_chat_model_logs_each_call_with_the_llm_that_answered(
    tiny_router: core.Router, tmp_path: Path
) -> None:
    log = core.RoutingLog(tmp_path / "routing.db")
    model = ChatRouterDC(router=tiny_router, models=chat_models(), log=log)

    reply = model.invoke(MATH)

    (call,) = log.calls()
    assert reply.response_metadata["routerdc_run_id"] == call.run_id
    assert call.query == MATH
    assert call.chosen == call.answered_by == tiny_router.route(MATH).llm
    assert call.latency_s is not None and call.latency_s >= 0
    log.record_outcome(call.run_id, 1.0)  # what an app's thumbs-up handler does
    assert log.calls()[0].score == 1.0


def test_runnable_router_explores_per_call_and_logs_the_propensity(
    tiny_router: core.Router, tmp_path: Path
) -> None:
    log = core.RoutingLog(tmp_path / "routing.db")
    router = RunnableRouter(router=tiny_router, runnables=chat_models(), log=log)
    greedy = tiny_router.route(CODE).llm

    replies = [router.invoke(CODE, config={"configurable": {"explore": 1.0}}) for _ in range(20)]

    calls = log.calls()
    assert len(calls) == 20
    # explore=1: every call goes to one of the two other LLMs, each with propensity 1/2.
    assert all(c.explored and c.chosen != greedy for c in calls)
    assert {c.propensity for c in calls} == {0.5}
    assert [r.content for r in replies] == [f"from {c.answered_by}" for c in calls]


def test_without_a_log_nothing_is_recorded_and_no_run_id_is_reported(
    tiny_router: core.Router,
) -> None:
    reply = ChatRouterDC(router=tiny_router, models=chat_models()).invoke(MATH)
    assert "routerdc_run_id" not in reply.response_metadata


def test_the_in_distribution_score_reaches_the_response_metadata(
    tiny_router: core.Router,
) -> None:
    reply = ChatRouterDC(router=tiny_router, models=chat_models()).invoke(MATH)
    expected = tiny_router.route(MATH).in_distribution
    assert expected is not None
    assert reply.response_metadata["routerdc_in_distribution"] == expected
    assert reply.response_metadata["routerdc_backed_off"] is tiny_router.route(MATH).backed_off


class _RunIds(BaseCallbackHandler):
    """Collects the ids of the top-level LangChain runs (what LangSmith feedback is given on)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        if kwargs.get("parent_run_id") is None:
            self.ids.append(str(kwargs["run_id"]))

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        if kwargs.get("parent_run_id") is None:
            self.ids.append(str(kwargs["run_id"]))


def test_runnable_router_logs_each_call_under_its_langchain_run_id(
    tiny_router: core.Router, tmp_path: Path
) -> None:
    log = core.RoutingLog(tmp_path / "routing.db")
    router = RunnableRouter(router=tiny_router, runnables=chat_models(), log=log)
    given = uuid.uuid4()
    seen = _RunIds()

    router.invoke(MATH, config={"run_id": given, "callbacks": [seen]})
    router.batch([MATH, CODE], config={"callbacks": [seen]})

    assert [c.run_id for c in log.calls()] == seen.ids
    assert seen.ids[0] == str(given)
    assert len(set(seen.ids)) == 3


def test_chat_model_logs_each_call_under_its_langchain_run_id(
    tiny_router: core.Router, tmp_path: Path
) -> None:
    log = core.RoutingLog(tmp_path / "routing.db")
    model = ChatRouterDC(router=tiny_router, models=chat_models(), log=log)
    seen = _RunIds()

    model.invoke(MATH, config={"callbacks": [seen]})

    (call,) = log.calls()
    assert seen.ids == [call.run_id]
