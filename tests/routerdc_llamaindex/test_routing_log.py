"""The LlamaIndex adapters write the routing log: each call's decision and who answered."""

from __future__ import annotations

from pathlib import Path

from llama_index.core.llms import ChatMessage, MockLLM
from llama_index.core.schema import QueryBundle
from llama_index.core.tools import ToolMetadata

import core
from routerdc_llamaindex import RouterDCLLM, RouterDCSelector


def test_llm_logs_each_call_with_the_llm_that_answered(
    tiny_router: core.Router,
    queries: dict[str, str],
    mock_llms: dict[str, MockLLM],
    tmp_path: Path,
) -> None:
    log = core.RoutingLog(tmp_path / "routing.db")
    llm = RouterDCLLM(router=tiny_router, llms=mock_llms, log=log)

    response = llm.chat([ChatMessage(role="user", content=queries["code-llm"])])

    (call,) = log.calls()
    assert response.additional_kwargs["routerdc_run_id"] == call.run_id
    assert call.chosen == call.answered_by == "code-llm"


def test_llm_takes_explore_per_call(
    tiny_router: core.Router,
    queries: dict[str, str],
    mock_llms: dict[str, MockLLM],
    tmp_path: Path,
) -> None:
    log = core.RoutingLog(tmp_path / "routing.db")
    llm = RouterDCLLM(router=tiny_router, llms=mock_llms, log=log)

    llm.complete(queries["math-llm"], explore=1.0)

    (call,) = log.calls()
    assert call.explored and call.chosen != "math-llm" and call.propensity == 0.5


def test_selector_logs_its_decisions(
    tiny_router: core.Router, queries: dict[str, str], tmp_path: Path
) -> None:
    log = core.RoutingLog(tmp_path / "routing.db")
    selector = RouterDCSelector(tiny_router, log=log)
    choices = [ToolMetadata(name=name, description=name) for name in tiny_router.llm_names]

    selector.select(choices, QueryBundle(queries["chat-llm"]))

    (call,) = log.calls()
    assert call.chosen == "chat-llm" and call.query == queries["chat-llm"]


async def test_llm_logs_each_call_under_its_llamaindex_span_id(
    tiny_router: core.Router,
    queries: dict[str, str],
    mock_llms: dict[str, MockLLM],
    tmp_path: Path,
) -> None:
    log = core.RoutingLog(tmp_path / "routing.db")
    llm = RouterDCLLM(router=tiny_router, llms=mock_llms, log=log)

    llm.chat([ChatMessage(role="user", content=queries["code-llm"])])
    await llm.acomplete(queries["math-llm"])

    first, second = (c.run_id for c in log.calls())
    # LlamaIndex's instrumentation opens a span per call, "<class>.<method>-<uuid>": the id its
    # events and span handlers see.
    assert first.startswith("RouterDCLLM.chat-")
    assert second.startswith("RouterDCLLM.acomplete-")
