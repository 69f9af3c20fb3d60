"""LangChain's standard chat model integration suite, run offline: ChatRouterDC over fake
provider models that answer, stream and report usage as a provider's model does."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_tests.integration_tests import ChatModelIntegrationTests

import core
from routerdc_langchain import ChatRouterDC

LLMS = ["math-llm", "code-llm", "chat-llm"]


class FakeProviderChatModel(GenericFakeChatModel):
    """GenericFakeChatModel that, like a provider's model, reports token usage and its model
    name, also when it streams (the usage and the name come with the last chunk)."""

    model_name: str

    def _usage(self, messages: list[BaseMessage], text: str) -> dict[str, int]:
        prompt_words = sum(len(str(m.content).split()) for m in messages)
        return {
            "input_tokens": prompt_words,
            "output_tokens": len(text.split()),
            "total_tokens": prompt_words + len(text.split()),
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        message = result.generations[0].message
        result.generations[0].message = message.model_copy(
            update={
                "usage_metadata": self._usage(messages, str(message.content)),
                "response_metadata": {"model_name": self.model_name},
            }
        )
        return result

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text = ""
        for chunk in super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
            text += str(chunk.message.content)
            if getattr(chunk.message, "chunk_position", None) == "last":
                chunk.message.usage_metadata = self._usage(messages, text)  # type: ignore[union-attr]
                chunk.message.response_metadata = {"model_name": self.model_name}
            yield chunk


def provider(llm: str) -> FakeProviderChatModel:
    answer = AIMessage(f"Hello! This is {llm}, answering offline.")
    return FakeProviderChatModel(model_name=f"{llm}-v1", messages=itertools.repeat(answer))


class TestChatRouterDCIntegration(ChatModelIntegrationTests):
    """The standard integration suite, with these capabilities switched off by its own flags.

    - Tool calling, tool choice and structured output: the fake candidates cannot decide to
      call a tool or fill a schema from a prompt. ChatRouterDC's ``bind_tools`` and
      ``with_structured_output`` hand each candidate its own binding; the unit suite and
      test_chat_model.py test that.
    - Model override (``invoke(..., model=...)``): the router, not the caller, picks the model.
    - Image, PDF, audio and Anthropic-format inputs are off by default in the suite; the fakes
      read text only.
    """

    @pytest.fixture(autouse=True)
    def _use_tiny_router(self, tiny_router: core.Router) -> None:
        self.router = tiny_router

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatRouterDC

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": self.router, "models": {llm: provider(llm) for llm in LLMS}}

    @property
    def has_tool_calling(self) -> bool:
        return False  # the fake candidates never call tools; see the class docstring

    @property
    def has_tool_choice(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False  # the fake candidates cannot fill a schema; see the class docstring

    @property
    def supports_model_override(self) -> bool:
        return False  # the router picks the model
