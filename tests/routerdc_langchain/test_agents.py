"""LangChain v1 agents: RouterDCMiddleware and ChatRouterDC inside create_agent, with fake models
that stream and report usage. One call is one model run: each token once, usage once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ModelChoice, ModelRouterMiddleware
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool

import core
from routerdc_langchain import ChatRouterDC, RouterDCDecisionModel, RouterDCMiddleware

LLMS = ["math-llm", "code-llm", "chat-llm"]
MATH = "solve the equation integral derivative number"
CODE = "write a python function class loop compile"
CHAT = "tell me a story about friendship holiday weather"
USAGE = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}


class StreamingFakeModel(GenericFakeChatModel):
    """A provider-like fake: answers "[name] the sum is 5" word by word, with usage and its
    model name on the last chunk; with tools bound, its first answer calls the first tool."""

    name_: str
    messages: Iterator[AIMessage | str] = iter(())

    def _answer(self, messages: list[BaseMessage], tools: list[Any]) -> AIMessage:
        called = any(m.type == "tool" for m in messages)
        if tools and not called:
            call = {"name": tools[0]["function"]["name"], "args": {"a": 2, "b": 3}, "id": "c1"}
            return AIMessage(
                content="", tool_calls=[call], usage_metadata=USAGE, response_metadata=self._meta()
            )
        text = f"[{self.name_}] the sum is 5"
        return AIMessage(content=text, usage_metadata=USAGE, response_metadata=self._meta())

    def _meta(self) -> dict[str, Any]:
        return {"model_name": self.name_}  # as a provider's model names itself

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.messages = iter([self._answer(messages, kwargs.get("tools", []))])
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        self.messages = iter([self._answer(messages, kwargs.get("tools", []))])
        for chunk in super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
            if getattr(chunk.message, "chunk_position", None) == "last":
                chunk.message.usage_metadata = USAGE  # type: ignore[union-attr]
                chunk.message.response_metadata = self._meta()
            yield chunk

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


class Hanging(StreamingFakeModel):
    """A model whose provider never answers (until the test releases it)."""

    release: Any = None

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        self.release.wait(30)
        raise ConnectionError("gave up")

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        self.release.wait(30)
        raise ConnectionError("gave up")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def fakes() -> dict[str, StreamingFakeModel]:
    return {llm: StreamingFakeModel(name_=llm) for llm in LLMS}


def streamed_text(agent: Any, query: str, **kwargs: Any) -> str:
    """The text of every AI message chunk the agent streams in ``stream_mode="messages"``."""
    pieces = []
    for chunk, _ in agent.stream(
        {"messages": [HumanMessage(query)]}, stream_mode="messages", **kwargs
    ):
        if isinstance(chunk, AIMessageChunk) and isinstance(chunk.content, str):
            pieces.append(chunk.content)
    return "".join(pieces)


# ---------------------------------------------------------------------- the middleware


def test_middleware_agent_streams_each_token_once(tiny_router: core.Router) -> None:
    middleware = RouterDCMiddleware(router=tiny_router, models=fakes())
    agent = create_agent(model=StreamingFakeModel(name_="default"), middleware=[middleware])
    assert streamed_text(agent, MATH) == "[math-llm] the sum is 5"


def test_middleware_agent_reports_usage_once_per_model_call(tiny_router: core.Router) -> None:
    middleware = RouterDCMiddleware(router=tiny_router, models=fakes())
    agent = create_agent(model=StreamingFakeModel(name_="default"), middleware=[middleware])
    with get_usage_metadata_callback() as usage:
        agent.invoke({"messages": [HumanMessage(CODE)]})
    assert sum(u["total_tokens"] for u in usage.usage_metadata.values()) == 15


def test_middleware_routes_each_model_call_and_records_the_decision(
    tiny_router: core.Router,
) -> None:
    middleware = RouterDCMiddleware(router=tiny_router, models=fakes())
    agent = create_agent(
        model=StreamingFakeModel(name_="default"), tools=[add], middleware=[middleware]
    )
    result = agent.invoke({"messages": [HumanMessage(CHAT)]})
    answers = [m for m in result["messages"] if isinstance(m, AIMessage)]
    assert len(answers) == 2  # the tool call, then the answer
    assert answers[0].tool_calls[0]["name"] == "add"
    assert answers[-1].content == "[chat-llm] the sum is 5"
    assert all(m.response_metadata["routerdc_answered_by"] == "chat-llm" for m in answers)
    assert result["routerdc"]["routerdc_chosen"] == "chat-llm"
    assert result["routerdc"]["routerdc_ranking"] == tiny_router.route(CHAT).ranking


def test_middleware_honours_per_call_routing_options(tiny_router: core.Router) -> None:
    middleware = RouterDCMiddleware(router=tiny_router, models=fakes())
    agent = create_agent(model=StreamingFakeModel(name_="default"), middleware=[middleware])
    result = agent.invoke(
        {"messages": [HumanMessage(MATH)]}, config={"configurable": {"exclude": ["math-llm"]}}
    )
    assert result["routerdc"]["routerdc_answered_by"] != "math-llm"


def test_middleware_falls_back_when_the_chosen_model_times_out(tiny_router: core.Router) -> None:
    release = threading.Event()
    models = fakes()
    ranking = tiny_router.route(MATH).ranking
    models[ranking[0]] = Hanging(name_=ranking[0], release=release)
    middleware = RouterDCMiddleware(router=tiny_router, models=models, timeout=0.2)
    agent = create_agent(model=StreamingFakeModel(name_="default"), middleware=[middleware])
    try:
        result = agent.invoke({"messages": [HumanMessage(MATH)]})
    finally:
        release.set()
    record = result["routerdc"]
    assert record["routerdc_answered_by"] == ranking[1]
    assert record["routerdc_fallbacks"][0]["llm"] == ranking[0]
    assert "LLMTimeoutError" in record["routerdc_fallbacks"][0]["error"]


async def test_middleware_agent_runs_async(tiny_router: core.Router) -> None:
    middleware = RouterDCMiddleware(router=tiny_router, models=fakes())
    agent = create_agent(model=StreamingFakeModel(name_="default"), middleware=[middleware])
    result = await agent.ainvoke({"messages": [HumanMessage(CODE)]})
    assert result["messages"][-1].content == "[code-llm] the sum is 5"


def test_middleware_refuses_models_the_router_does_not_know(tiny_router: core.Router) -> None:
    with pytest.raises(KeyError, match="gpt-5"):
        RouterDCMiddleware(
            router=tiny_router, models={**fakes(), "gpt-5": StreamingFakeModel(name_="x")}
        )


# ---------------------------------------------------------------------- ChatRouterDC in an agent


def test_chat_router_in_an_agent_streams_each_token_once(tiny_router: core.Router) -> None:
    agent = create_agent(model=ChatRouterDC(router=tiny_router, models=fakes()))
    assert streamed_text(agent, MATH) == "[math-llm] the sum is 5"


def test_chat_router_in_an_agent_reports_usage_once(tiny_router: core.Router) -> None:
    agent = create_agent(model=ChatRouterDC(router=tiny_router, models=fakes()))
    with get_usage_metadata_callback() as usage:
        agent.invoke({"messages": [HumanMessage(CODE)]})
    assert sum(u["total_tokens"] for u in usage.usage_metadata.values()) == 15


def test_chat_router_in_an_agent_completes_a_tool_round_trip(tiny_router: core.Router) -> None:
    agent = create_agent(model=ChatRouterDC(router=tiny_router, models=fakes()), tools=[add])
    result = agent.invoke({"messages": [HumanMessage(CODE)]})
    assert [m.type for m in result["messages"]] == ["human", "ai", "tool", "ai"]
    assert result["messages"][2].content == "5"
    assert result["messages"][-1].response_metadata["routerdc_answered_by"] == "code-llm"


async def test_astream_events_emits_each_token_once(tiny_router: core.Router) -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | ChatRouterDC(
        router=tiny_router, models=fakes()
    )
    tokens = [
        event["data"]["chunk"].content
        async for event in chain.astream_events({"q": CHAT}, version="v2")
        if event["event"] == "on_chat_model_stream"
    ]
    assert "".join(tokens) == "[chat-llm] the sum is 5"


def test_chat_router_reports_usage_once_when_streamed(tiny_router: core.Router) -> None:
    model = ChatRouterDC(router=tiny_router, models=fakes())
    with get_usage_metadata_callback() as usage:
        list(model.stream(MATH))
        model.invoke(CODE)
    assert sum(u["total_tokens"] for u in usage.usage_metadata.values()) == 30


def test_chat_router_honours_configurable_routing_options(tiny_router: core.Router) -> None:
    model = ChatRouterDC(router=tiny_router, models=fakes())
    config: Any = {"configurable": {"exclude": ["math-llm"]}}
    assert model.invoke(MATH, config=config).response_metadata["routerdc_answered_by"] != (
        "math-llm"
    )
    allowed: Any = {"configurable": {"allowed": ["chat-llm"]}}
    streamed = "".join(str(c.content) for c in model.stream(MATH, config=allowed))
    assert streamed == "[chat-llm] the sum is 5"


def test_chat_router_falls_back_when_a_candidate_times_out(tiny_router: core.Router) -> None:
    release = threading.Event()
    models = fakes()
    ranking = tiny_router.route(CODE).ranking
    models[ranking[0]] = Hanging(name_=ranking[0], release=release)
    model = ChatRouterDC(router=tiny_router, models=models, timeout=0.2)
    try:
        answer = model.invoke(CODE)
        streamed = "".join(str(c.content) for c in model.stream(CODE))
    finally:
        release.set()
    assert answer.response_metadata["routerdc_answered_by"] == ranking[1]
    assert streamed == f"[{ranking[1]}] the sum is 5"


# ---------------------------------------------------------------------- ModelRouterMiddleware


def test_decision_model_picks_the_model_for_langchains_model_router(
    tiny_router: core.Router,
) -> None:
    models = fakes()
    classifier = RouterDCDecisionModel(
        router=tiny_router, choice_to_llm={"fast": "chat-llm", "careful": "math-llm"}
    )
    middleware = ModelRouterMiddleware(
        choices={
            "fast": ModelChoice(model=models["chat-llm"], criteria="small talk"),
            "careful": ModelChoice(model=models["math-llm"], criteria="maths"),
        },
        instructions="Pick the model the router trusts most.",
        classifier=classifier,
    )
    agent = create_agent(model=StreamingFakeModel(name_="default"), middleware=[middleware])
    result = agent.invoke({"messages": [HumanMessage(MATH)]})
    assert result["model_route"].choice == "careful"
    assert set(result["model_route"].probabilities) == {"fast", "careful"}
    assert result["messages"][-1].content == "[math-llm] the sum is 5"


def test_decision_model_names_choices_it_cannot_map(tiny_router: core.Router) -> None:
    from langchain_core.decisions import Choice

    classifier = RouterDCDecisionModel(router=tiny_router)
    question = Choice(instructions="pick", criteria={"fast": "x", "math-llm": "y"})
    with pytest.raises(KeyError, match="fast"):
        classifier.invoke({"state": MATH, "questions": {"route": question}})


async def test_chat_router_in_an_agent_streams_each_token_once_async(
    tiny_router: core.Router,
) -> None:
    agent = create_agent(model=ChatRouterDC(router=tiny_router, models=fakes()))
    pieces = [
        chunk.content
        async for chunk, _ in agent.astream(
            {"messages": [HumanMessage(CODE)]}, stream_mode="messages"
        )
        if isinstance(chunk, AIMessageChunk) and isinstance(chunk.content, str)
    ]
    assert "".join(pieces) == "[code-llm] the sum is 5"


def test_middleware_routes_on_what_query_from_returns(tiny_router: core.Router) -> None:
    middleware = RouterDCMiddleware(
        router=tiny_router, models=fakes(), query_from=lambda messages: CHAT
    )
    agent = create_agent(model=StreamingFakeModel(name_="default"), middleware=[middleware])
    result = agent.invoke({"messages": [HumanMessage(MATH)]})
    assert result["routerdc"]["routerdc_answered_by"] == "chat-llm"
