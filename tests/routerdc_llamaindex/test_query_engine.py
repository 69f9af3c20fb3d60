"""End to end: the selector inside RouterQueryEngine and RouterRetriever, and RouterDCLLM as
Settings.llm inside a query engine and a ReAct agent; indexes built offline with MockEmbedding."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.agent.workflow import ReActAgent
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RouterQueryEngine
from llama_index.core.retrievers import RouterRetriever
from llama_index.core.tools import QueryEngineTool, RetrieverTool, ToolMetadata

import core
from routerdc_llamaindex import RouterDCLLM, RouterDCSelector, RouterDCSelectorResult

# One handbook per LLM; an engine's answer (MockLLM echoes its prompt) shows which one it read.
HANDBOOKS = {
    "math-llm": "MATH-HANDBOOK: the integral of 2x is x squared.",
    "code-llm": "CODE-HANDBOOK: a python function starts with def.",
    "chat-llm": "CHAT-HANDBOOK: a story needs a beginning and an end.",
}


@pytest.fixture(scope="module")
def indexes() -> dict[str, VectorStoreIndex]:
    embed_model = MockEmbedding(embed_dim=8)
    return {
        name: VectorStoreIndex.from_documents([Document(text=text)], embed_model=embed_model)
        for name, text in HANDBOOKS.items()
    }


def engine_tools(indexes: dict[str, VectorStoreIndex]) -> list[QueryEngineTool]:
    return [
        QueryEngineTool(
            query_engine=index.as_query_engine(llm=MockLLM()),
            metadata=ToolMetadata(name=name, description=f"questions for {name}"),
        )
        for name, index in indexes.items()
    ]


def handbooks_in(text: str) -> set[str]:
    return {name for name, handbook in HANDBOOKS.items() if handbook in text}


@pytest.mark.parametrize("target", ["math-llm", "code-llm", "chat-llm"])
async def test_router_query_engine_answers_through_the_selected_engine(
    tiny_router: core.Router,
    queries: dict[str, str],
    indexes: dict[str, VectorStoreIndex],
    target: str,
) -> None:
    engine = RouterQueryEngine(
        selector=RouterDCSelector(tiny_router),
        query_engine_tools=engine_tools(indexes),
        llm=MockLLM(),
    )
    names = list(indexes)

    for response in (engine.query(queries[target]), await engine.aquery(queries[target])):
        assert handbooks_in(str(response)) == {target}
        result = response.metadata["selector_result"]
        assert isinstance(result, RouterDCSelectorResult)
        assert names[result.ind] == target


async def test_router_query_engine_queries_the_top_two_and_summarises_them(
    tiny_router: core.Router, queries: dict[str, str], indexes: dict[str, VectorStoreIndex]
) -> None:
    engine = RouterQueryEngine(
        selector=RouterDCSelector(tiny_router, max_outputs=2),
        query_engine_tools=engine_tools(indexes),
        llm=MockLLM(),  # the summariser: it echoes both answers
    )
    top_two = set(tiny_router.route(queries["chat-llm"]).ranking[:2])

    assert handbooks_in(str(engine.query(queries["chat-llm"]))) == top_two
    assert handbooks_in(str(await engine.aquery(queries["chat-llm"]))) == top_two


def test_router_retriever_retrieves_from_the_selected_retriever(
    tiny_router: core.Router, queries: dict[str, str], indexes: dict[str, VectorStoreIndex]
) -> None:
    retriever = RouterRetriever(
        selector=RouterDCSelector(tiny_router),
        retriever_tools=[
            RetrieverTool(
                retriever=index.as_retriever(),
                metadata=ToolMetadata(name=name, description=f"documents for {name}"),
            )
            for name, index in indexes.items()
        ],
        llm=MockLLM(),
    )

    nodes = retriever.retrieve(queries["code-llm"])
    assert [node.get_content() for node in nodes] == [HANDBOOKS["code-llm"]]


def test_router_dc_llm_answers_as_settings_llm_inside_a_query_engine(
    tiny_router: core.Router,
    indexes: dict[str, VectorStoreIndex],
    mock_llms: dict[str, MockLLM],
    words: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Settings, "_llm", None)  # restores the global after the test
    Settings.llm = RouterDCLLM(router=tiny_router, llms=mock_llms)

    answer = str(indexes["math-llm"].as_query_engine().query("what is the integral of 2x?"))

    assert len(answer.split()) in set(words.values())  # one of the candidates wrote it
    assert answer.split() == ["text"] * len(answer.split())


class ReActLLM(MockLLM):
    """Answers every ReAct step at once, signing the answer with its name."""

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text = f"Thought: I can answer without any tool.\nAnswer: {self.system_prompt} says 4"
        return CompletionResponse(text=text)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        response = self.complete(prompt)

        def stream() -> CompletionResponseGen:
            yield CompletionResponse(text=response.text, delta=response.text)

        return stream()


async def test_router_dc_llm_drives_a_react_agent(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    llms = {name: ReActLLM(system_prompt=name) for name in tiny_router.llm_names}
    agent = ReActAgent(tools=[], llm=RouterDCLLM(router=tiny_router, llms=llms))

    output = await agent.run(user_msg=queries["code-llm"])

    assert str(output).strip() == "code-llm says 4"
