"""RouterDCLLM: each endpoint delegates to the routed LLM, falls back, and is safe to share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms import MockLLM

import core
from routerdc_llamaindex import RouterDCLLM
from routerdc_llamaindex.llm import routing_text

ENDPOINTS = [
    "chat",
    "complete",
    "stream_chat",
    "stream_complete",
    "achat",
    "acomplete",
    "astream_chat",
    "astream_complete",
]


class BrokenLLM(MockLLM):
    """Raises on every call; a stream raises when its first chunk is asked for."""

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise RuntimeError(f"{self.system_prompt} is down")

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def stream() -> Generator[CompletionResponse, None, None]:
            raise RuntimeError(f"{self.system_prompt} is down")
            yield  # a generator that fails lazily, as a network stream does

        return stream()


class HalfwayLLM(MockLLM):
    """Streams one chunk, then fails."""

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def stream() -> Generator[CompletionResponse, None, None]:
            yield CompletionResponse(text="half", delta="half")
            raise RuntimeError("connection lost")

        return stream()


class WindowLLM(MockLLM):
    """A MockLLM with its own context window and chat flag."""

    context_window: int = 4096

    def __init__(self, context_window: int, max_tokens: int, is_chat_model: bool = False) -> None:
        super().__init__(max_tokens=max_tokens, is_chat_model=is_chat_model)
        self.context_window = context_window

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_tokens or -1,
            is_chat_model=bool(self.is_chat_model),
        )


def conversation(last_user_message: str) -> list[ChatMessage]:
    """A chat whose earlier user turn is about something else: only the last one is routed."""
    return [
        ChatMessage(role=MessageRole.SYSTEM, content="You are helpful."),
        ChatMessage(role=MessageRole.USER, content="tell me a story about the weather"),
        ChatMessage(role=MessageRole.ASSISTANT, content="Once upon a time..."),
        ChatMessage(role=MessageRole.USER, content=last_user_message),
    ]


async def call(llm: RouterDCLLM, endpoint: str, text: str) -> tuple[str, list[dict[str, Any]]]:
    """The answer's text and the ``additional_kwargs`` of each response or chunk."""
    argument: Any = conversation(text) if "chat" in endpoint else text
    result = getattr(llm, endpoint)(argument)
    if endpoint.startswith("a"):
        result = await result
    if "stream" not in endpoint:
        text_out = result.message.content if "chat" in endpoint else result.text
        return text_out, [result.additional_kwargs]
    chunks = [chunk async for chunk in result] if endpoint.startswith("a") else list(result)
    return "".join(c.delta or "" for c in chunks), [c.additional_kwargs for c in chunks]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("target", ["math-llm", "code-llm", "chat-llm"])
async def test_each_endpoint_answers_through_the_llm_the_router_picks(
    tiny_router: core.Router,
    queries: dict[str, str],
    mock_llms: dict[str, MockLLM],
    words: dict[str, int],
    endpoint: str,
    target: str,
) -> None:
    llm = RouterDCLLM(router=tiny_router, llms=mock_llms)
    answer, tags = await call(llm, endpoint, queries[target])

    assert len(answer.split()) == words[target]  # the answer came from the target's MockLLM
    assert tags, "no response"
    assert all(tag["routerdc_answered_by"] == target for tag in tags)
    expected = tiny_router.route(queries[target]).probabilities
    assert tags[0]["routerdc_probabilities"] == pytest.approx(expected)


def test_routing_text_is_the_last_user_message_and_its_absence_an_error() -> None:
    assert routing_text(conversation("solve x")) == "solve x"
    system_only = [
        ChatMessage(role=MessageRole.SYSTEM, content="be brief"),
        ChatMessage(role=MessageRole.ASSISTANT, content="ok"),
    ]
    with pytest.raises(core.QueryError, match="query_from"):
        routing_text(system_only)


def test_metadata_reflects_the_candidates(tiny_router: core.Router) -> None:
    llms = {
        "math-llm": WindowLLM(context_window=8000, max_tokens=10),
        "code-llm": WindowLLM(context_window=2000, max_tokens=30, is_chat_model=True),
        "chat-llm": WindowLLM(context_window=1000, max_tokens=50),
    }
    metadata = RouterDCLLM(router=tiny_router, llms=llms, allowed=["math-llm", "code-llm"]).metadata

    assert metadata.context_window == 2000  # the smallest of the allowed ones
    assert metadata.num_output == 30
    assert metadata.is_chat_model
    assert not metadata.is_function_calling_model
    assert metadata.model_name == "routerdc(math-llm, code-llm)"


def test_llms_naming_an_llm_the_router_does_not_know_are_rejected(
    tiny_router: core.Router, mock_llms: dict[str, MockLLM]
) -> None:
    with pytest.raises(core.UnknownLLMError, match=r"does not know \['gpt-99'\]"):
        RouterDCLLM(router=tiny_router, llms={**mock_llms, "gpt-99": MockLLM()})


def test_empty_llms_are_rejected(tiny_router: core.Router) -> None:
    with pytest.raises(core.ConfigError, match="llms is empty"):
        RouterDCLLM(router=tiny_router, llms={})


def test_allowed_must_name_llms_it_holds(
    tiny_router: core.Router, mock_llms: dict[str, MockLLM]
) -> None:
    with pytest.raises(core.UnknownLLMError, match="chat-llm"):
        RouterDCLLM(router=tiny_router, llms={"math-llm": MockLLM()}, allowed=["chat-llm"])


def test_router_must_be_a_router(mock_llms: dict[str, MockLLM]) -> None:
    with pytest.raises(TypeError, match=r"core\.BaseRouter"):
        RouterDCLLM(router="my-router", llms=mock_llms)  # type: ignore[arg-type]


def test_routes_only_among_the_llms_it_holds(
    tiny_router: core.Router, queries: dict[str, str]
) -> None:
    llm = RouterDCLLM(router=tiny_router, llms={"code-llm": MockLLM(), "chat-llm": MockLLM()})
    response = llm.complete(queries["math-llm"])

    expected = tiny_router.route(queries["math-llm"], allowed=["code-llm", "chat-llm"]).llm
    assert response.additional_kwargs["routerdc_answered_by"] == expected
    assert set(response.additional_kwargs["routerdc_probabilities"]) == {"code-llm", "chat-llm"}


def test_allowed_restricts_routing_to_a_subset(
    tiny_router: core.Router, queries: dict[str, str], mock_llms: dict[str, MockLLM]
) -> None:
    llm = RouterDCLLM(router=tiny_router, llms=mock_llms, allowed=["chat-llm"])
    assert llm.complete(queries["math-llm"]).additional_kwargs["routerdc_answered_by"] == "chat-llm"


def test_cost_weight_steers_calls_away_from_an_expensive_llm(
    tiny_router: core.Router, queries: dict[str, str], mock_llms: dict[str, MockLLM]
) -> None:
    costs = {"math-llm": 1.0, "code-llm": 0.0, "chat-llm": 0.0}
    llm = RouterDCLLM(router=tiny_router, llms=mock_llms, cost_weight=1.0, costs=costs)

    answered = llm.complete(queries["math-llm"]).additional_kwargs["routerdc_answered_by"]
    assert answered != "math-llm"
    assert answered == tiny_router.route(queries["math-llm"], cost_weight=1.0, costs=costs).llm


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_falls_back_to_the_next_ranked_llm_when_the_chosen_one_raises(
    tiny_router: core.Router,
    queries: dict[str, str],
    mock_llms: dict[str, MockLLM],
    words: dict[str, int],
    endpoint: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    llms = {**mock_llms, "math-llm": BrokenLLM(system_prompt="math-llm")}
    llm = RouterDCLLM(router=tiny_router, llms=llms)
    runner_up = tiny_router.route(queries["math-llm"]).ranking[1]

    with caplog.at_level(logging.WARNING, logger="routerdc_llamaindex.llm"):
        answer, tags = await call(llm, endpoint, queries["math-llm"])

    assert len(answer.split()) == words[runner_up]
    assert all(tag["routerdc_answered_by"] == runner_up for tag in tags)
    assert "math-llm failed (RuntimeError: math-llm is down)" in caplog.text


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_raises_one_error_listing_every_llm_tried_when_all_fail(
    tiny_router: core.Router, queries: dict[str, str], endpoint: str
) -> None:
    llms = {name: BrokenLLM(system_prompt=name) for name in tiny_router.llm_names}
    llm = RouterDCLLM(router=tiny_router, llms=llms)

    with pytest.raises(core.AllLLMsFailedError) as caught:
        await call(llm, endpoint, queries["code-llm"])
    assert next(iter(caught.value.errors)) == "code-llm"  # the chosen one was tried first
    assert set(caught.value.errors) == set(tiny_router.llm_names)
    assert "code-llm: RuntimeError: code-llm is down" in str(caught.value)


async def test_no_fallback_when_fallback_is_off(
    tiny_router: core.Router, queries: dict[str, str], mock_llms: dict[str, MockLLM]
) -> None:
    llms = {**mock_llms, "chat-llm": BrokenLLM(system_prompt="chat-llm")}
    llm = RouterDCLLM(router=tiny_router, llms=llms, max_fallbacks=0)

    with pytest.raises(RuntimeError, match="chat-llm is down"):
        llm.complete(queries["chat-llm"])
    with pytest.raises(RuntimeError, match="chat-llm is down"):
        await llm.achat(conversation(queries["chat-llm"]))


@pytest.mark.parametrize("endpoint", ["stream_complete", "stream_chat", "astream_complete"])
async def test_a_stream_that_fails_after_its_first_chunk_is_not_restarted_elsewhere(
    tiny_router: core.Router, queries: dict[str, str], mock_llms: dict[str, MockLLM], endpoint: str
) -> None:
    llm = RouterDCLLM(router=tiny_router, llms={**mock_llms, "code-llm": HalfwayLLM()})
    received: list[str] = []

    stream = getattr(llm, endpoint)(
        conversation(queries["code-llm"]) if "chat" in endpoint else queries["code-llm"]
    )
    with pytest.raises(RuntimeError, match="connection lost"):
        if endpoint.startswith("a"):
            async for chunk in await stream:
                received.append(chunk.delta)
        else:
            for chunk in stream:
                received.append(chunk.delta)
    assert received == ["half"]  # the half answer, and nothing from another LLM after it


def test_threads_sharing_one_llm_each_get_the_llm_routed_for_their_own_query(
    tiny_router: core.Router, queries: dict[str, str], mock_llms: dict[str, MockLLM]
) -> None:
    llm = RouterDCLLM(router=tiny_router, llms=mock_llms)
    targets = list(queries) * 8

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda target: llm.complete(queries[target]), targets))

    assert [r.additional_kwargs["routerdc_answered_by"] for r in responses] == targets


async def test_concurrent_async_calls_each_get_the_llm_routed_for_their_own_query(
    tiny_router: core.Router, queries: dict[str, str], mock_llms: dict[str, MockLLM]
) -> None:
    llm = RouterDCLLM(router=tiny_router, llms=mock_llms)
    targets = list(queries) * 8

    responses = await asyncio.gather(
        *(llm.achat(conversation(queries[target])) for target in targets)
    )

    assert [r.additional_kwargs["routerdc_answered_by"] for r in responses] == targets


async def test_an_exported_onnx_router_answers_through_the_llm_the_torch_router_picks(
    tiny_router: core.Router,
    queries: dict[str, str],
    mock_llms: dict[str, MockLLM],
    tmp_path: Path,
) -> None:
    exported = core.load(tiny_router.export(tmp_path / "onnx"))
    assert isinstance(exported, core.OnnxRouter)
    llm = RouterDCLLM(router=exported, llms=mock_llms)
    for target, query in queries.items():
        _, tags = await call(llm, "achat", query)
        assert all(tag["routerdc_answered_by"] == target for tag in tags)
