"""A LangChain v1 agent whose every model call goes to the model a RouterDC router picks.

Runs offline with fake chat models (swap in ChatOpenAI, ChatAnthropic, ChatOllama...):

    python examples/langchain_agent.py

It streams the agent's answer token by token (each token once), then prints the routing
decision the middleware put in the agent's state.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from _toy_router import toy_router
from langchain.agents import create_agent
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from routerdc_langchain import RouterDCMiddleware


class FakeToolModel(GenericFakeChatModel):
    """Stands in for a provider's model: calls the first tool, then answers with its result."""

    label: str
    messages: Iterator[AIMessage | str] = iter(())

    def _answer(self, messages: list[BaseMessage], tools: list[Any]) -> AIMessage:
        results = [m for m in messages if m.type == "tool"]
        if results:
            return AIMessage(f"[{self.label}] 2 + 3 = {results[-1].content}")
        if tools:
            name = tools[0]["function"]["name"]
            return AIMessage("", tool_calls=[{"name": name, "args": {"a": 2, "b": 3}, "id": "1"}])
        return AIMessage(f"[{self.label}] hello")

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.messages = iter([self._answer(messages, kwargs.get("tools", []))])
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        answer = self._answer(messages, kwargs.get("tools", []))
        if answer.tool_calls:  # a tool call comes as one chunk
            calls = [
                tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=0)
                for c in answer.tool_calls
            ]
            yield ChatGenerationChunk(message=AIMessageChunk("", tool_call_chunks=calls))
            return
        self.messages = iter([answer])
        yield from super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)

    def bind_tools(
        self, tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool], **kwargs: Any
    ) -> Runnable[Any, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools])


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def main() -> None:
    router = toy_router()
    models = {name: FakeToolModel(label=name) for name in router.llm_names}
    agent = create_agent(
        model=models["chat-llm"],  # the default; the middleware picks per model call
        tools=[add],
        middleware=[RouterDCMiddleware(router=router, models=models, timeout=30)],
    )
    question = "solve the sum: add two numbers"
    print(f"question: {question}\nanswer:   ", end="")
    final: dict[str, Any] = {}
    for mode, payload in agent.stream(
        {"messages": [HumanMessage(question)]}, stream_mode=["messages", "values"]
    ):
        if mode == "messages" and isinstance(payload[0], AIMessageChunk):
            print(payload[0].content, end="", flush=True)
        elif mode == "values":
            final = payload
    record = final["routerdc"]
    print(
        f"\nrouted to {record['routerdc_chosen']} "
        f"(p={record['routerdc_probability']:.2f}), answered by "
        f"{record['routerdc_answered_by']}; ranking {record['routerdc_ranking']}"
    )


if __name__ == "__main__":
    main()
