"""A LlamaIndex FunctionAgent on RouterDCLLM: each model call goes to the LLM the router picks,
and that LLM prepares the tools and parses its own tool calls.

Runs offline with LlamaIndex's MockFunctionCallingLLM (swap in OpenAI, Anthropic, Ollama...):

    python examples/llamaindex_agent.py
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from _toy_router import toy_router
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool

from routerdc_llamaindex import RouterDCLLM


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def fake_llm(label: str) -> MockFunctionCallingLLM:
    """Stands in for a provider's LLM: calls the first tool, then answers with its result."""

    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        results = [m for m in messages if m.role == MessageRole.TOOL]
        if results:
            return ChatMessage(role="assistant", content=f"[{label}] 2 + 3 = {results[-1].content}")
        name = kwargs["tools"][0].metadata.name
        call = ToolCallBlock(tool_call_id="1", tool_name=name, tool_kwargs={"a": 2, "b": 3})
        return ChatMessage(role="assistant", blocks=[call])

    return MockFunctionCallingLLM(response_generator=respond, is_chat_model=True)


async def main() -> None:
    router = toy_router()
    llm = RouterDCLLM(
        router=router, llms={name: fake_llm(name) for name in router.llm_names}, timeout=30
    )
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(add)], llm=llm)
    question = "solve the sum: add two numbers"
    result = await agent.run(user_msg=question)
    print(f"question: {question}\nanswer:   {result}")
    print(f"tool calls: {[(c.tool_name, c.tool_kwargs) for c in result.tool_calls]}")


if __name__ == "__main__":
    asyncio.run(main())
