"""ChatRouterDC: its own unit tests, and LangChain's standard chat model unit suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import ConfigurableField, Runnable, RunnableBinding, RunnableLambda
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import BaseModel

import core
from core.errors import ConfigError, QueryError, UnknownLLMError
from routerdc_langchain import AllLLMsFailedError, ChatRouterDC, RunnableRouter

LLMS = ["math-llm", "code-llm", "chat-llm"]
MATH = "solve the equation integral derivative number"
CODE = "write a python function class loop compile"
CHAT = "tell me a story about friendship holiday weather"
COSTS = {"math-llm": 1.0, "code-llm": 0.01, "chat-llm": 0.01}
USAGE = {"input_tokens": 7, "output_tokens": 4, "total_tokens": 11}


class ToolFakeChatModel(GenericFakeChatModel):
    """GenericFakeChatModel plus what a provider's model has: usage, tools, structured output.

    It answers with its reply and the names of the tools bound to it, so a test can see which
    candidate answered and what it was given.
    """

    reply: str = "hello world"
    messages: Iterator[AIMessage | str] = iter(())

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = [t["function"]["name"] for t in kwargs.get("tools", [])]
        text = f"{self.reply} tools={tools}" if tools else self.reply
        self.messages = iter([AIMessage(content=text, usage_metadata=USAGE)])
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
            if getattr(chunk.message, "chunk_position", None) == "last":
                chunk.message.usage_metadata = USAGE  # type: ignore[union-attr]
            yield chunk

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def with_structured_output(
        self, schema: Any, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[Any, Any]:
        # Accepts (and ignores) method= and strict=, as providers' models do.
        return RunnableLambda(lambda _: {"answered_by": self.reply, "schema": schema, **kwargs})


def candidates() -> dict[str, BaseChatModel]:
    return {llm: ToolFakeChatModel(reply=llm) for llm in LLMS}


class Failing(GenericFakeChatModel):
    """A chat model whose provider is down."""

    messages: Iterator[AIMessage | str] = iter(())

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        raise ConnectionError("provider is down")


@pytest.fixture
def model(tiny_router: core.Router) -> ChatRouterDC:
    return ChatRouterDC(router=tiny_router, models=candidates())


def test_invoke_answers_with_the_candidate_the_router_picks(model: ChatRouterDC) -> None:
    for query, llm in [(MATH, "math-llm"), (CODE, "code-llm"), (CHAT, "chat-llm")]:
        result = model.invoke(query)
        assert isinstance(result, AIMessage)
        assert result.content == llm


def test_response_metadata_names_the_llm_that_answered(
    model: ChatRouterDC, tiny_router: core.Router
) -> None:
    result = model.invoke([HumanMessage(CODE)])
    record = result.response_metadata
    assert record["routerdc_answered_by"] == "code-llm"
    assert record["routerdc_chosen"] == "code-llm"
    assert record["routerdc_ranking"] == tiny_router.route(CODE).ranking
    assert record["routerdc_fallbacks"] == []
    assert result.response_metadata["model_name"] == "code-llm"


def test_usage_metadata_of_the_chosen_model_passes_through(model: ChatRouterDC) -> None:
    assert model.invoke(MATH).usage_metadata == USAGE
    streamed = None
    for chunk in model.stream(MATH):
        streamed = chunk if streamed is None else streamed + chunk
    assert isinstance(streamed, AIMessageChunk)
    assert streamed.usage_metadata == USAGE


def test_stream_passes_the_chosen_models_tokens_through(model: ChatRouterDC) -> None:
    model.models["chat-llm"] = ToolFakeChatModel(reply="once upon a time")
    chunks = list(model.stream(CHAT))
    texts = [c.content for c in chunks if c.content]
    assert texts == ["once", " ", "upon", " ", "a", " ", "time"]
    assert chunks[0].response_metadata["routerdc_answered_by"] == "chat-llm"
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    # Named once, so merging the chunks does not repeat it.
    assert full.response_metadata["model_name"] == "chat-llm"


async def test_astream_and_ainvoke_route_the_same_way(model: ChatRouterDC) -> None:
    assert (await model.ainvoke(CODE)).content == "code-llm"
    texts = [c.content async for c in model.astream(MATH)]
    assert "".join(str(t) for t in texts) == "math-llm"


def test_falls_back_to_the_next_llm_in_the_ranking(tiny_router: core.Router) -> None:
    ranking = tiny_router.route(MATH).ranking
    models = candidates()
    models[ranking[0]] = Failing()
    result = ChatRouterDC(router=tiny_router, models=models).invoke(MATH)
    assert result.content == ranking[1]
    assert result.response_metadata["routerdc_fallbacks"] == [
        {"llm": ranking[0], "error": "ConnectionError: provider is down"}
    ]


def test_stream_falls_back_before_the_first_chunk(tiny_router: core.Router) -> None:
    ranking = tiny_router.route(CHAT).ranking
    models = candidates()
    models[ranking[0]] = Failing()
    chunks = list(ChatRouterDC(router=tiny_router, models=models).stream(CHAT))
    assert "".join(str(c.content) for c in chunks) == ranking[1]


def test_when_all_candidates_fail_one_error_lists_them(tiny_router: core.Router) -> None:
    models: dict[str, BaseChatModel] = {llm: Failing() for llm in LLMS}
    with pytest.raises(AllLLMsFailedError) as caught:
        ChatRouterDC(router=tiny_router, models=models, max_fallbacks=2).invoke(CODE)
    assert sorted(caught.value.errors) == sorted(LLMS)
    assert all(isinstance(e, ConnectionError) for e in caught.value.errors.values())


def test_bind_tools_binds_every_candidate(model: ChatRouterDC) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    bound = model.bind_tools([add])
    assert isinstance(bound, RunnableBinding)
    assert bound.invoke(CODE).content == "code-llm tools=['add']"
    assert bound.invoke(MATH).content == "math-llm tools=['add']"
    # The original keeps its unbound candidates.
    assert model.invoke(CODE).content == "code-llm"


def test_bind_tools_names_a_candidate_that_cannot_bind_tools(tiny_router: core.Router) -> None:
    models = candidates()
    models["chat-llm"] = GenericFakeChatModel(messages=iter(()))
    with pytest.raises(NotImplementedError, match="chat-llm"):
        ChatRouterDC(router=tiny_router, models=models).bind_tools([convert_to_openai_tool(len)])


def test_with_structured_output_routes_among_every_candidates_structured_form(
    model: ChatRouterDC,
) -> None:
    class Person(BaseModel):
        name: str

    structured = model.with_structured_output(Person, method="json_schema")
    assert isinstance(structured, RunnableRouter)
    assert structured.invoke(CHAT) == {
        "answered_by": "chat-llm",
        "schema": Person,
        "method": "json_schema",
    }
    assert structured.invoke(MATH)["answered_by"] == "math-llm"


def test_configurable_fields_set_the_cost_weight_per_call(tiny_router: core.Router) -> None:
    model = ChatRouterDC(router=tiny_router, models=candidates(), costs=COSTS)
    configurable = model.configurable_fields(cost_weight=ConfigurableField(id="cost_weight"))
    assert configurable.invoke(MATH).content == "math-llm"
    cheap = configurable.invoke(MATH, config={"configurable": {"cost_weight": 1.0}})
    assert cheap.content != "math-llm"


def test_bad_inputs_get_clear_errors(model: ChatRouterDC) -> None:
    with pytest.raises(QueryError, match="no messages"):
        model.invoke([])
    with pytest.raises(QueryError, match="no human message"):
        model.invoke([AIMessage("hi")])
    image_only = HumanMessage(content=[{"type": "image_url", "image_url": {"url": "http://x"}}])
    with pytest.raises(QueryError, match="image_url"):
        model.invoke([image_only])


def test_candidates_must_match_the_routers_llms(tiny_router: core.Router) -> None:
    with pytest.raises(UnknownLLMError, match="gpt-5"):
        ChatRouterDC(router=tiny_router, models={**candidates(), "gpt-5": Failing()})
    models = candidates()
    del models["math-llm"]
    with pytest.raises(ConfigError, match="math-llm"):
        ChatRouterDC(router=tiny_router, models=models)
    excluded = ChatRouterDC(router=tiny_router, models=models, unmatched="exclude")
    assert excluded.invoke(MATH).content in {"code-llm", "chat-llm"}


def test_routing_leaves_the_model_unchanged(model: ChatRouterDC) -> None:
    model.invoke(CHAT)  # LangChain caches the model's serialized form on the first call
    before = dict(vars(model))
    model.invoke(MATH)
    list(model.stream(CODE))
    assert vars(model) == before


# ---------------------------------------------------------------------- the standard suite


class TestChatRouterDCStandard(ChatModelUnitTests):
    """LangChain's standard unit tests for chat models.

    Two of them skip themselves, by the suite's own rules: ``test_serdes`` (a router holds
    torch weights, so ChatRouterDC is not ``lc_serializable``) and ``test_init_from_env``
    (ChatRouterDC reads no environment variables; its candidates do).
    """

    @pytest.fixture(autouse=True)
    def _use_tiny_router(self, tiny_router: core.Router) -> None:
        self.router = tiny_router

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatRouterDC

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": self.router, "models": candidates()}
