"""RouterDCLLM: one LlamaIndex LLM that sends each call to the LLM a RouterDC router picks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, SerializeAsAny
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.llm import LLM

import core

logger = logging.getLogger(__name__)

# Keys this LLM adds to every response's (and every streamed chunk's) ``additional_kwargs``.
ANSWERED_BY = "routerdc_llm"
PROBABILITIES = "routerdc_probabilities"

Response = TypeVar("Response", ChatResponse, CompletionResponse)
T = TypeVar("T")


class RouterDCLLM(LLM):
    """An LLM that holds several LlamaIndex LLMs and sends each call to the one a router picks.

    The text routed on is the last user message of a chat, or the prompt of a completion. When
    the chosen LLM raises (for a stream: before its first chunk), the call goes to the
    next-ranked one. Each response names the LLM that answered in
    ``additional_kwargs["routerdc_llm"]`` and carries the router's probabilities in
    ``additional_kwargs["routerdc_probabilities"]``. Nothing about a call is kept on the object,
    so one instance serves many threads and tasks at once.

    Args:
        router: a trained router (``core.load(...)`` or ``core.fit(...)``).
        llms: the candidate LLMs, keyed by the router's names for them; every key must be an LLM
            the router knows. The router's other LLMs are never chosen.
        cost_weight: trade quality for price, as in :meth:`core.Router.route`.
        costs: dollars per call of each LLM; defaults to the prices seen in training.
        allowed: route only among these of ``llms``.
        fallback: try the next-ranked LLM when the chosen one raises.

    Example:
        >>> from llama_index.core import Settings                         # doctest: +SKIP
        >>> Settings.llm = RouterDCLLM(
        ...     router=core.load("my-router"),
        ...     llms={"llama-3-8b": small_llm, "gpt-4": large_llm},
        ... )                                                             # doctest: +SKIP
        >>> answer = Settings.llm.complete("Solve 2x + 3 = 7")           # doctest: +SKIP
        >>> answer.additional_kwargs["routerdc_llm"]                      # doctest: +SKIP
        'llama-3-8b'
    """

    router: core.BaseRouter = Field(exclude=True, description="The trained RouterDC router.")
    llms: dict[str, SerializeAsAny[LLM]] = Field(
        description="The candidate LLMs, keyed by the router's names for them."
    )
    cost_weight: float = Field(default=0.0, ge=0, description="Weight of price in routing.")
    costs: dict[str, float] | None = Field(default=None, description="Dollars per call.")
    allowed: list[str] | None = Field(default=None, description="Route only among these.")
    fallback: bool = Field(default=True, description="Fall back to the next-ranked LLM.")

    def __init__(self, *, router: core.BaseRouter, llms: Mapping[str, LLM], **kwargs: Any) -> None:
        _check_candidates(router, llms, kwargs.get("allowed"))
        fields: dict[str, Any] = {"router": router, "llms": dict(llms), **kwargs}
        super().__init__(**fields)

    @classmethod
    def class_name(cls) -> str:
        return "RouterDCLLM"

    @property
    def candidates(self) -> list[str]:
        """The names of the LLMs a call may go to."""
        return [name for name in self.llms if self.allowed is None or name in self.allowed]

    @property
    def metadata(self) -> LLMMetadata:
        """What holds for every candidate: the smallest context window and the largest
        ``num_output`` (so a prompt sized for this LLM fits each of them); a chat model when any
        candidate is one (the others take chat messages through ``messages_to_prompt``)."""
        metas = [self.llms[name].metadata for name in self.candidates]
        roles = {meta.system_role for meta in metas}
        return LLMMetadata(
            context_window=min(meta.context_window for meta in metas),
            num_output=max(meta.num_output for meta in metas),
            is_chat_model=any(meta.is_chat_model for meta in metas),
            # Tool calls are formatted and parsed per provider; this class does not relay them.
            is_function_calling_model=False,
            model_name=f"routerdc({', '.join(self.candidates)})",
            system_role=roles.pop() if len(roles) == 1 else MessageRole.SYSTEM,
        )

    # ------------------------------------------------------------------ routing

    def _route(self, text: str) -> core.Decision:
        return self.router.route(
            text, cost_weight=self.cost_weight, costs=self.costs, allowed=self.candidates
        )

    async def _aroute(self, text: str) -> core.Decision:
        # The encoder pass is CPU/GPU work; keep it off the event loop (Router is thread-safe).
        return await asyncio.to_thread(self._route, text)

    def _order(self, decision: core.Decision) -> list[str]:
        return decision.ranking if self.fallback else decision.ranking[:1]

    def _first_that_works(self, decision: core.Decision, attempt: Callable[[str], T]) -> T:
        """``attempt(name)`` for the chosen LLM, then the next-ranked ones while it raises."""
        errors: dict[str, Exception] = {}
        for name in self._order(decision):
            try:
                return attempt(name)
            except Exception as error:
                errors[name] = error
                _log_failure(name, error)
        raise core.AllLLMsFailedError(errors) from next(iter(errors.values()))

    async def _afirst_that_works(
        self, decision: core.Decision, attempt: Callable[[str], Awaitable[T]]
    ) -> T:
        errors: dict[str, Exception] = {}
        for name in self._order(decision):
            try:
                return await attempt(name)
            except Exception as error:
                errors[name] = error
                _log_failure(name, error)
        raise core.AllLLMsFailedError(errors) from next(iter(errors.values()))

    def _call(self, decision: core.Decision, call: Callable[[LLM], Response]) -> Response:
        return self._first_that_works(
            decision, lambda name: _tag(call(self.llms[name]), name, decision)
        )

    async def _acall(
        self, decision: core.Decision, call: Callable[[LLM], Awaitable[Response]]
    ) -> Response:
        async def attempt(name: str) -> Response:
            return _tag(await call(self.llms[name]), name, decision)

        return await self._afirst_that_works(decision, attempt)

    def _stream(
        self, decision: core.Decision, open_stream: Callable[[LLM], Iterator[Response]]
    ) -> Generator[Response, None, None]:
        def attempt(name: str) -> Generator[Response, None, None]:
            stream = open_stream(self.llms[name])
            head = next(stream, None)  # a failure before the first chunk still falls back
            return _relay(head, stream, name, decision)

        return self._first_that_works(decision, attempt)

    async def _astream(
        self,
        decision: core.Decision,
        open_stream: Callable[[LLM], Awaitable[AsyncIterator[Response]]],
    ) -> AsyncGenerator[Response, None]:
        async def attempt(name: str) -> AsyncGenerator[Response, None]:
            stream = await open_stream(self.llms[name])
            head = await anext(stream, None)  # a failure before the first chunk still falls back
            return _arelay(head, stream, name, decision)

        return await self._afirst_that_works(decision, attempt)

    # ------------------------------------------------------------------ sync endpoints

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        decision = self._route(routing_text(messages))
        return self._call(decision, lambda llm: llm.chat(messages, **kwargs))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        decision = self._route(prompt)
        return self._call(decision, lambda llm: llm.complete(prompt, formatted=formatted, **kwargs))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        decision = self._route(routing_text(messages))
        return self._stream(decision, lambda llm: llm.stream_chat(messages, **kwargs))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        decision = self._route(prompt)
        return self._stream(
            decision, lambda llm: llm.stream_complete(prompt, formatted=formatted, **kwargs)
        )

    # ------------------------------------------------------------------ async endpoints

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        decision = await self._aroute(routing_text(messages))
        return await self._acall(decision, lambda llm: llm.achat(messages, **kwargs))

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        decision = await self._aroute(prompt)
        return await self._acall(
            decision, lambda llm: llm.acomplete(prompt, formatted=formatted, **kwargs)
        )

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        decision = await self._aroute(routing_text(messages))
        return await self._astream(decision, lambda llm: llm.astream_chat(messages, **kwargs))

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        decision = await self._aroute(prompt)
        return await self._astream(
            decision, lambda llm: llm.astream_complete(prompt, formatted=formatted, **kwargs)
        )


def routing_text(messages: Sequence[ChatMessage]) -> str:
    """The last user message with text; failing that, all the messages' text."""
    for message in reversed(messages):
        if message.role == MessageRole.USER and message.content and message.content.strip():
            return message.content
    return "\n".join(message.content for message in messages if message.content)


def _check_candidates(
    router: object, llms: Mapping[str, object], allowed: Sequence[str] | None
) -> None:
    if not isinstance(router, core.BaseRouter):
        raise TypeError(
            f"router: expected a core.Router or an exported OnnxRouter, got {type(router).__name__}"
        )
    if not llms:
        raise core.ConfigError("llms is empty: give at least one {name: LLM}")
    unknown = [name for name in llms if name not in router.llm_names]
    if unknown:
        raise core.UnknownLLMError(
            f"llms: the router does not know {unknown}; it knows {router.llm_names}"
        )
    if allowed is not None:
        if isinstance(allowed, str):
            raise TypeError("allowed: expected a list of LLM names, got a string")
        missing = [name for name in allowed if name not in llms]
        if missing:
            raise core.UnknownLLMError(f"allowed: {missing} are not among llms {list(llms)}")
        if not allowed:
            raise core.ConfigError("allowed is empty: no LLM left to route to")


def _tag(response: Response, name: str, decision: core.Decision) -> Response:
    response.additional_kwargs = {
        **response.additional_kwargs,
        ANSWERED_BY: name,
        PROBABILITIES: decision.probabilities,
    }
    return response


def _relay(
    head: Response | None, stream: Iterator[Response], name: str, decision: core.Decision
) -> Generator[Response, None, None]:
    if head is None:
        return
    yield _tag(head, name, decision)
    for chunk in stream:
        yield _tag(chunk, name, decision)


async def _arelay(
    head: Response | None, stream: AsyncIterator[Response], name: str, decision: core.Decision
) -> AsyncGenerator[Response, None]:
    if head is None:
        return
    yield _tag(head, name, decision)
    async for chunk in stream:
        yield _tag(chunk, name, decision)


def _log_failure(name: str, error: Exception) -> None:
    logger.warning("%s failed (%s: %s)", name, type(error).__name__, error)
