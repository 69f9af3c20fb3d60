"""RouterDCLLM in agents and RAG: function calling (FunctionAgent), routing a query engine on
the question alone, per-call and per-instance options, unknown options, timeouts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.prompts.default_prompts import DEFAULT_REFINE_PROMPT_TMPL
from llama_index.core.tools import FunctionTool, ToolMetadata
from llama_index.core.tools.types import ToolMetadata as _ToolMetadata

import core
from routerdc_llamaindex import RouterDCLLM, RouterDCSelector
from routerdc_llamaindex.llm import question_of


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def function_calling_llm(name: str) -> MockFunctionCallingLLM:
    """A function-calling mock: with tools, it first calls the first tool with a=2, b=3;
    given a tool's result, it answers "[name] the sum is <result>"."""

    def generate(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        results = [m for m in messages if m.role == MessageRole.TOOL]
        if results:
            return ChatMessage(
                role="assistant", content=f"[{name}] the sum is {results[-1].content}"
            )
        if kwargs.get("tools"):
            tool_name = kwargs["tools"][0].metadata.name
            call = ToolCallBlock(
                tool_call_id="c1", tool_name=tool_name, tool_kwargs={"a": 2, "b": 3}
            )
            return ChatMessage(role="assistant", blocks=[call])
        return ChatMessage(role="assistant", content=f"[{name}] no tools")

    return MockFunctionCallingLLM(response_generator=generate, is_chat_model=True)


def fc_llms() -> dict[str, MockFunctionCallingLLM]:
    return {name: function_calling_llm(name) for name in ("math-llm", "code-llm", "chat-llm")}


def hanging_llm(release: threading.Event) -> MockLLM:
    """A MockLLM whose provider hangs until ``release`` is set."""

    class Hanging(MockLLM):
        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            release.wait(30)
            raise ConnectionError("gave up")

    return Hanging()


# ---------------------------------------------------------------------- function calling


def test_is_a_function_calling_model_only_when_every_candidate_is(
    tiny_router: core.Router,
) -> None:
    assert RouterDCLLM(router=tiny_router, llms=fc_llms()).metadata.is_function_calling_model
    mixed = {**fc_llms(), "chat-llm": MockLLM()}
    assert not RouterDCLLM(router=tiny_router, llms=mixed).metadata.is_function_calling_model


async def test_function_agent_completes_a_tool_call_round_trip(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    llm = RouterDCLLM(router=tiny_router, llms=fc_llms())
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(add)], llm=llm)
    result = await agent.run(user_msg=queries["code-llm"])
    assert str(result) == "[code-llm] the sum is 5"
    assert [call.tool_name for call in result.tool_calls] == ["add"]


def test_tool_calls_are_parsed_by_the_candidate_that_answered(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    llm = RouterDCLLM(router=tiny_router, llms=fc_llms())
    response = llm.chat_with_tools([FunctionTool.from_defaults(add)], user_msg=queries["math-llm"])
    assert response.additional_kwargs["routerdc_answered_by"] == "math-llm"
    (call,) = llm.get_tool_calls_from_response(response)
    assert (call.tool_name, call.tool_kwargs) == ("add", {"a": 2, "b": 3})


def test_structured_predict_works_through_function_calling(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    from pydantic import BaseModel

    class Sum(BaseModel):
        a: int = 2
        b: int = 3

    llm = RouterDCLLM(router=tiny_router, llms=fc_llms())
    structured = llm.as_structured_llm(Sum)
    # The mock calls the output "tool" with its default arguments.
    response = structured.chat([ChatMessage(role="user", content=queries["chat-llm"])])
    assert isinstance(response.raw, Sum)


# ---------------------------------------------------------------------- RAG


def test_a_query_engine_routes_on_the_question_alone(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    # The retrieved context is all maths words; the question is a coding one.
    math_text = " ".join([queries["math-llm"]] * 20)
    index = VectorStoreIndex.from_documents(
        [Document(text=math_text)], embed_model=MockEmbedding(embed_dim=8)
    )
    prompts: dict[str, list[str]] = {name: [] for name in fc_llms()}

    def recording(name: str) -> MockLLM:
        class Recording(MockLLM):
            def complete(
                self, prompt: str, formatted: bool = False, **kw: Any
            ) -> CompletionResponse:
                prompts[name].append(prompt)
                return CompletionResponse(text=name)

        return Recording()

    llm = RouterDCLLM(router=tiny_router, llms={name: recording(name) for name in prompts})
    response = index.as_query_engine(llm=llm).query(queries["code-llm"])
    assert str(response) == "code-llm"
    (prompt,) = prompts["code-llm"]
    assert math_text in prompt  # the context was in the prompt, and did not sway the router
    assert prompts["math-llm"] == prompts["chat-llm"] == []


def _qa_prompt(context: str, question: str) -> str:
    from llama_index.core.prompts.default_prompts import DEFAULT_TEXT_QA_PROMPT_TMPL

    return DEFAULT_TEXT_QA_PROMPT_TMPL.format(context_str=context, query_str=question)


def test_question_of_finds_the_question_in_the_standard_prompts() -> None:
    question = "What is the integral of 2x?"
    assert question_of(_qa_prompt("long context\nwith lines", question)) == question
    refine = DEFAULT_REFINE_PROMPT_TMPL.format(
        query_str=question, existing_answer="x^2", context_msg="more context"
    )
    assert question_of(refine) == question
    assert question_of("just a question") == "just a question"


def test_query_from_chooses_the_text_to_route_on(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    llm = RouterDCLLM(
        router=tiny_router,
        llms={n: MockLLM() for n in fc_llms()},
        query_from=lambda messages: queries["chat-llm"],
    )
    answer = llm.complete(queries["math-llm"])
    assert answer.additional_kwargs["routerdc_answered_by"] == "chat-llm"


# ---------------------------------------------------------------------- options


def test_unknown_options_are_refused(tiny_router: core.Router) -> None:
    with pytest.raises(core.ConfigError, match="fallback"):
        RouterDCLLM(router=tiny_router, llms={"math-llm": MockLLM()}, fallback=False)


def test_exclude_keeps_an_llm_out_per_instance_and_per_call(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    llms = {n: MockLLM() for n in fc_llms()}
    excluding = RouterDCLLM(router=tiny_router, llms=llms, exclude=["math-llm"])
    answer = excluding.complete(queries["math-llm"])
    assert answer.additional_kwargs["routerdc_answered_by"] != "math-llm"
    llm = RouterDCLLM(router=tiny_router, llms=llms)
    per_call = llm.complete(queries["math-llm"], exclude=["math-llm"])
    assert per_call.additional_kwargs["routerdc_answered_by"] != "math-llm"
    only = llm.chat([ChatMessage(role="user", content=queries["math-llm"])], allowed=["code-llm"])
    assert only.additional_kwargs["routerdc_answered_by"] == "code-llm"


def test_per_call_routing_options_never_reach_the_candidate(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    seen: list[dict[str, Any]] = []

    class Recording(MockLLM):
        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            seen.append(kw)
            return CompletionResponse(text="ok")

    llm = RouterDCLLM(router=tiny_router, llms={n: Recording() for n in fc_llms()})
    llm.complete(queries["code-llm"], cost_weight=0.0, temperature=0.1)
    assert seen == [{"temperature": 0.1}]


def test_a_hung_llm_times_out_and_the_next_one_answers(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    release = threading.Event()
    ranking = tiny_router.route(queries["chat-llm"]).ranking
    llms: dict[str, MockLLM] = {n: MockLLM() for n in fc_llms()}
    llms[ranking[0]] = hanging_llm(release)
    llm = RouterDCLLM(router=tiny_router, llms=llms, timeout=0.2)
    try:
        answer = llm.complete(queries["chat-llm"])
    finally:
        release.set()
    assert answer.additional_kwargs["routerdc_answered_by"] == ranking[1]
    assert answer.additional_kwargs["routerdc_fallbacks"][0]["llm"] == ranking[0]


# ---------------------------------------------------------------------- the selector


def test_selector_maps_data_source_names_to_the_routers_llms(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    from llama_index.core.schema import QueryBundle

    selector = RouterDCSelector(
        tiny_router,
        choice_to_llm={"math_docs": "math-llm", "code_docs": "code-llm", "chat_docs": "chat-llm"},
    )
    choices = [
        ToolMetadata(name=name, description=f"{name} documents")
        for name in ("math_docs", "code_docs", "chat_docs")
    ]
    result = selector.select(choices, QueryBundle(queries["code-llm"]))
    assert result.ind == 1
    assert isinstance(choices[0], _ToolMetadata)


# ---------------------------------------------------------------------- callbacks


def test_one_call_is_one_llm_event_for_callback_handlers(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    from llama_index.core.callbacks import CallbackManager, TokenCountingHandler

    counter = TokenCountingHandler()
    manager = CallbackManager([counter])
    llms = {n: MockLLM(max_tokens=2, callback_manager=manager) for n in fc_llms()}
    llm = RouterDCLLM(router=tiny_router, llms=llms, callback_manager=manager)
    llm.complete(queries["code-llm"])
    llm.complete(queries["math-llm"])
    # (A chat call on MockLLM would count twice whatever the router does: LlamaIndex's
    # CustomLLM answers a chat through its own complete, and both report.)
    assert len(counter.llm_token_counts) == 2
