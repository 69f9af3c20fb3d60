"""RouterDCLLM: one LlamaIndex LLM that sends each call to the LLM a RouterDC router picks."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

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
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM, ToolSelection

from core import BaseRouter, RoutingLog
from core.errors import ConfigError, QueryError, UnknownLLMError
from core.routing.dispatch import (
    ANSWERED_BY,
    ROUTING_OPTIONS,
    Dispatch,
    FallbackPolicy,
    RoutingOptions,
)

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

logger = logging.getLogger(__name__)

Response = TypeVar("Response", ChatResponse, CompletionResponse)

QueryFrom = Callable[[Sequence[ChatMessage]], str]

# The chat keyword that carries a tool call's arguments from ``_prepare_chat_with_tools`` to
# ``chat``, where the candidate that was picked prepares them in its own provider's format.
_TOOLS_KWARG = "routerdc_tools"
# RouterDCLLM's own options, the same names as in routerdc_langchain.
OPTIONS = (
    "query_from",
    *ROUTING_OPTIONS,
    *FallbackPolicy.field_names(),
)


@dataclass(frozen=True)
class _ToolRequest:
    """What ``chat_with_tools`` was asked, kept until a candidate is picked to prepare it."""

    tools: Sequence[BaseTool]
    verbose: bool = False
    allow_parallel_tool_calls: bool = False
    tool_required: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)


class RouterDCLLM(FunctionCallingLLM):
    """An LLM that holds several LlamaIndex LLMs and sends each call to the one a router picks.

    The text routed on is what ``query_from`` returns from the call's messages (a completion's
    prompt is one user message); by default the last user message, or, when that message is
    one of LlamaIndex's standard question-answering or refine prompts (a query engine's), the
    user's question inside it (see :func:`question_of`), so retrieved context does not sway
    the router. When the chosen LLM raises or times out (for a stream: before its first chunk),
    the call goes to the next-ranked one, up to ``max_fallbacks``.

    One call is one LLM event: the candidate that answers reports it to its own callback
    manager (this class adds no event of its own), so token counters count each call once,
    under the real model; give the candidates the callback manager you want them to report to.

    Each response (and each streamed chunk) carries the decision record in
    ``additional_kwargs`` (``routerdc_chosen``, ``routerdc_answered_by``,
    ``routerdc_probability``, ``routerdc_probabilities``, ``routerdc_ranking``,
    ``routerdc_fallbacks``). Nothing about a call is kept on the object, so one instance
    serves many threads and tasks at once.

    When every candidate is a function-calling LLM, so is this one
    (``metadata.is_function_calling_model``): ``FunctionAgent``, ``AgentWorkflow``,
    ``predict_and_call`` and ``as_structured_llm`` work, with the tools prepared and the tool
    calls parsed by the candidate that answered (each response names it). Consecutive calls of
    one agent may go to different candidates, which then read each other's tool-call messages:
    mix candidates of one provider family, or pin an agent with ``allowed``.

    Per call, ``cost_weight``, ``costs``, ``allowed`` and ``exclude`` may be given as keyword
    arguments (``llm.complete(q, cost_weight=0.5)``); they are taken out before the call
    reaches a candidate. Other keyword arguments go to the candidate.

    Args:
        router: a trained router (any ``core.BaseRouter``).
        llms: the candidate LLMs, keyed by the router's names for them; every key must be an LLM
            the router knows. The router's other LLMs are never chosen.
        query_from: the text to route on, from the call's messages.
        cost_weight, costs, allowed, exclude: routing options, as in ``core.Router.route``.
        max_fallbacks: how many next-ranked LLMs to try when the chosen one fails (0: none).
        timeout: seconds each LLM has to answer (a stream: to send its first chunk).
        exceptions_to_handle: the errors that trigger a fallback.

    Raises:
        ConfigError: an unknown option (a ``ValueError``).

    Example:
        >>> from llama_index.core import Settings                         # doctest: +SKIP
        >>> Settings.llm = RouterDCLLM(
        ...     router=core.load("my-router"),
        ...     llms={"llama-3-8b": small_llm, "gpt-4": large_llm},
        ... )                                                             # doctest: +SKIP
        >>> answer = Settings.llm.complete("Solve 2x + 3 = 7")           # doctest: +SKIP
        >>> answer.additional_kwargs["routerdc_answered_by"]              # doctest: +SKIP
        'llama-3-8b'
    """

    router: BaseRouter = Field(exclude=True, description="The trained RouterDC router.")
    llms: dict[str, SerializeAsAny[LLM]] = Field(
        description="The candidate LLMs, keyed by the router's names for them."
    )
    query_from: QueryFrom | None = Field(
        default=None, exclude=True, description="The text to route on, from the messages."
    )
    cost_weight: float = Field(default=0.0, ge=0, description="Weight of price in routing.")
    costs: dict[str, float] | None = Field(default=None, description="Dollars per call.")
    allowed: list[str] | None = Field(default=None, description="Route only among these.")
    exclude: list[str] | None = Field(default=None, description="Never route to these.")
    explore: float = Field(default=0.0, ge=0, le=1, description="Share of calls explored.")
    log: RoutingLog | None = Field(default=None, exclude=True, description="Routing log.")
    max_fallbacks: int = Field(default=2, ge=0, description="Next-ranked LLMs to try.")
    timeout: float | None = Field(default=None, gt=0, description="Seconds per LLM.")
    exceptions_to_handle: tuple[type[BaseException], ...] = Field(
        default=(Exception,), exclude=True, description="Errors that trigger a fallback."
    )

    def __init__(self, *, router: BaseRouter, llms: Mapping[str, LLM], **kwargs: Any) -> None:
        known = set(type(self).model_fields)
        unknown = sorted(k for k in kwargs if k not in known)
        if unknown:
            options = [*OPTIONS, "and LlamaIndex's LLM fields"]
            raise ConfigError(f"RouterDCLLM: unknown options {unknown}; the options are {options}")
        _check_candidates(router, llms, kwargs.get("allowed"))
        super().__init__(**{"router": router, "llms": dict(llms), **kwargs})
        # Checked now, so a bad name or value fails here, not on the first call.
        FallbackPolicy(self.max_fallbacks, self.timeout, self.exceptions_to_handle)
        self.candidates  # noqa: B018 (raises on unknown or excluded-away names)

    @classmethod
    def class_name(cls) -> str:
        return "RouterDCLLM"

    @property
    def candidates(self) -> list[str]:
        """The names of the LLMs a call may go to (before per-call options)."""
        route_kwargs = self._route_kwargs(self._options())
        indices = self.router.candidates(
            allowed=route_kwargs["allowed"], exclude=route_kwargs["exclude"]
        )
        return [self.router.llm_names[i] for i in indices]

    @property
    def metadata(self) -> LLMMetadata:
        """What holds for every candidate: the smallest context window and the largest
        ``num_output`` (so a prompt sized for this LLM fits each of them); a chat model when any
        candidate is one (the others take chat messages through ``messages_to_prompt``); a
        function-calling model when every candidate is one."""
        llms = [self.llms[name] for name in self.candidates]
        metas = [llm.metadata for llm in llms]
        roles = {meta.system_role for meta in metas}
        return LLMMetadata(
            context_window=min(meta.context_window for meta in metas),
            num_output=max(meta.num_output for meta in metas),
            is_chat_model=any(meta.is_chat_model for meta in metas),
            is_function_calling_model=all(
                isinstance(llm, FunctionCallingLLM) and llm.metadata.is_function_calling_model
                for llm in llms
            ),
            model_name=f"routerdc({', '.join(self.candidates)})",
            system_role=roles.pop() if len(roles) == 1 else MessageRole.SYSTEM,
        )

    # ------------------------------------------------------------------ routing

    def _options(self, per_call: Mapping[str, Any] | None = None) -> RoutingOptions:
        options = RoutingOptions(
            self.cost_weight, self.costs, self.allowed, self.exclude, self.explore, self.log
        )
        return options.overridden_by(per_call or {}, strict=True)

    def _route_kwargs(self, options: RoutingOptions) -> dict[str, Any]:
        return options.route_kwargs(self.router.llm_names, list(self.llms))

    def _dispatch(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> Dispatch:
        """Route one call; takes the routing options out of ``kwargs``."""
        per_call = {k: kwargs.pop(k) for k in ROUTING_OPTIONS if k in kwargs}
        options = self._options(per_call)
        query = self._query(messages)
        decision = self.router.route(query, run_id=self._span_id(), **self._route_kwargs(options))
        policy = FallbackPolicy(self.max_fallbacks, self.timeout, self.exceptions_to_handle)
        return Dispatch(decision, policy, query=query, log=options.log)

    def _span_id(self) -> str | None:
        """This call's LlamaIndex span id (what its instrumentation events carry), if it has one:
        the routing log records the call under it."""
        span_id = active_span_id.get()
        if span_id is not None and span_id.startswith(f"{type(self).__name__}."):
            return span_id
        return None

    async def _adispatch(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> Dispatch:
        # The encoder pass is CPU/GPU work; keep it off the event loop (routers are thread-safe).
        return await asyncio.to_thread(self._dispatch, messages, kwargs)

    def _query(self, messages: Sequence[ChatMessage]) -> str:
        if self.query_from is not None:
            query = self.query_from(messages)
            if not isinstance(query, str) or not query.strip():
                raise QueryError(f"query_from returned {query!r}, not a non-empty string")
            return query
        return routing_text(messages)

    # ------------------------------------------------------------------ calling candidates

    def _chat_call(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any], stream: bool
    ) -> Callable[[str], Any]:
        """``attempt(llm)`` for a chat call, with tools prepared by that LLM when asked."""
        tools: _ToolRequest | None = kwargs.pop(_TOOLS_KWARG, None)

        def attempt(name: str) -> Any:
            llm = self.llms[name]
            if tools is None:
                return (llm.stream_chat if stream else llm.chat)(messages, **kwargs)
            if not isinstance(llm, FunctionCallingLLM):
                raise ConfigError(f"candidate {name!r} ({type(llm).__name__}) cannot call tools")
            prepared = _prepare(llm, tools, messages)
            chat_messages = prepared.pop("messages")
            if stream:
                return llm.stream_chat(chat_messages, **prepared, **kwargs)
            response = llm.chat(chat_messages, **prepared, **kwargs)
            return llm._validate_chat_with_tools_response(
                response, tools.tools, allow_parallel_tool_calls=tools.allow_parallel_tool_calls
            )

        return attempt

    def _achat_call(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any], stream: bool
    ) -> Callable[[str], Any]:
        tools: _ToolRequest | None = kwargs.pop(_TOOLS_KWARG, None)

        async def attempt(name: str) -> Any:
            llm = self.llms[name]
            if tools is None:
                call = llm.astream_chat if stream else llm.achat
                return await call(messages, **kwargs)
            if not isinstance(llm, FunctionCallingLLM):
                raise ConfigError(f"candidate {name!r} ({type(llm).__name__}) cannot call tools")
            prepared = _prepare(llm, tools, messages)
            chat_messages = prepared.pop("messages")
            if stream:
                return await llm.astream_chat(chat_messages, **prepared, **kwargs)
            response = await llm.achat(chat_messages, **prepared, **kwargs)
            return llm._validate_chat_with_tools_response(
                response, tools.tools, allow_parallel_tool_calls=tools.allow_parallel_tool_calls
            )

        return attempt

    # ------------------------------------------------------------------ sync endpoints
    # Not decorated with LlamaIndex's LLM callbacks: the candidate that answers reports the
    # call, so handlers (token counters among them) see each call once, under its real model.

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        dispatch = self._dispatch(messages, kwargs)
        response = dispatch.call(self._chat_call(messages, kwargs, stream=False))
        return _tag(response, dispatch)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        dispatch = self._dispatch(_as_messages(prompt), kwargs)
        response = dispatch.call(
            lambda name: self.llms[name].complete(prompt, formatted=formatted, **kwargs)
        )
        return _tag(response, dispatch)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        dispatch = self._dispatch(messages, kwargs)
        stream = dispatch.stream(self._chat_call(messages, kwargs, stream=True))
        return _relay(stream, dispatch)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        dispatch = self._dispatch(_as_messages(prompt), kwargs)
        stream = dispatch.stream(
            lambda name: self.llms[name].stream_complete(prompt, formatted=formatted, **kwargs)
        )
        return _relay(stream, dispatch)

    # ------------------------------------------------------------------ async endpoints

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        dispatch = await self._adispatch(messages, kwargs)
        response = await dispatch.acall(self._achat_call(messages, kwargs, stream=False))
        return _tag(response, dispatch)

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        dispatch = await self._adispatch(_as_messages(prompt), kwargs)
        response = await dispatch.acall(
            lambda name: self.llms[name].acomplete(prompt, formatted=formatted, **kwargs)
        )
        return _tag(response, dispatch)

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        dispatch = await self._adispatch(messages, kwargs)
        open_stream = self._achat_call(messages, kwargs, stream=True)

        async def start(name: str) -> AsyncGenerator[ChatResponse, None]:
            async for chunk in await open_stream(name):
                yield chunk

        return _arelay(await dispatch.astream(start), dispatch)

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        dispatch = await self._adispatch(_as_messages(prompt), kwargs)

        async def start(name: str) -> AsyncGenerator[CompletionResponse, None]:
            stream = await self.llms[name].astream_complete(prompt, formatted=formatted, **kwargs)
            async for chunk in stream:
                yield chunk

        return _arelay(await dispatch.astream(start), dispatch)

    # ------------------------------------------------------------------ function calling

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The messages, and the tool request for the candidate that will be picked."""
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(_as_messages(user_msg)[0] if isinstance(user_msg, str) else user_msg)
        request = _ToolRequest(tools, verbose, allow_parallel_tool_calls, tool_required, kwargs)
        return {"messages": messages, _TOOLS_KWARG: request}

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """The tool calls of ``response``, parsed by the candidate that gave it."""
        name = response.additional_kwargs.get(ANSWERED_BY)
        llm = self.llms.get(name) if isinstance(name, str) else None
        if not isinstance(llm, FunctionCallingLLM):
            raise ConfigError(
                f"the response names {name!r} as the LLM that answered "
                f"(additional_kwargs[{ANSWERED_BY!r}]), not a function-calling candidate "
                f"among {list(self.llms)}; pass a response this LLM gave"
            )
        return llm.get_tool_calls_from_response(
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs
        )


# ---------------------------------------------------------------------- the text to route on


def routing_text(messages: Sequence[ChatMessage]) -> str:
    """The last user message with text, or the question in it (see :func:`question_of`).

    Raises:
        QueryError: no user message has text; pass ``query_from`` to choose the text.
    """
    for message in reversed(messages):
        if message.role == MessageRole.USER and message.content and message.content.strip():
            return question_of(message.content)
    roles = sorted({str(m.role.value) for m in messages})
    raise QueryError(
        f"no user message with text to route on (the messages are {roles}); "
        "pass query_from=... to choose the text"
    )


def question_of(text: str) -> str:
    """The user's question when ``text`` is one of LlamaIndex's standard QA, tree-summarize or
    refine prompts (text or chat form, as query engines send them); else ``text`` itself."""
    for pattern in _template_patterns():
        match = pattern.search(text)
        if match and match.group("query").strip():
            return match.group("query").strip()
    return text


@cache
def _template_patterns() -> tuple[re.Pattern[str], ...]:
    from llama_index.core.prompts.chat_prompts import (
        CHAT_REFINE_PROMPT_TMPL_MSGS,
        TEXT_QA_PROMPT_TMPL_MSGS,
        TREE_SUMMARIZE_PROMPT_TMPL_MSGS,
    )
    from llama_index.core.prompts.default_prompts import (
        DEFAULT_REFINE_PROMPT_TMPL,
        DEFAULT_TEXT_QA_PROMPT_TMPL,
        DEFAULT_TREE_SUMMARIZE_TMPL,
    )

    chat = [
        *TEXT_QA_PROMPT_TMPL_MSGS,
        *TREE_SUMMARIZE_PROMPT_TMPL_MSGS,
        *CHAT_REFINE_PROMPT_TMPL_MSGS,
    ]
    templates = [
        DEFAULT_TEXT_QA_PROMPT_TMPL,
        DEFAULT_TREE_SUMMARIZE_TMPL,
        DEFAULT_REFINE_PROMPT_TMPL,
    ]
    templates += [m.content for m in chat if m.content and "{query_str}" in m.content]
    return tuple(_pattern(t) for t in dict.fromkeys(templates))


def _pattern(template: str) -> re.Pattern[str]:
    """A regex matching ``template`` filled in, with the question as group ``query``."""
    parts = re.split(r"\{(\w+)\}", template.strip())  # literal, name, literal, name, ...
    regex = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            regex.append(r"\s+".join(re.escape(word) for word in part.split()))
        else:
            regex.append(r"\s*(?P<query>.+?)\s*" if part == "query_str" else r"\s*.*?\s*")
    return re.compile("".join(regex) + r"\s*$", re.DOTALL)


# ---------------------------------------------------------------------- helpers


def _as_messages(prompt: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=prompt)]


def _prepare(
    llm: FunctionCallingLLM, tools: _ToolRequest, messages: Sequence[ChatMessage]
) -> dict[str, Any]:
    return llm._prepare_chat_with_tools_compat(
        tools.tools,
        chat_history=list(messages),
        verbose=tools.verbose,
        allow_parallel_tool_calls=tools.allow_parallel_tool_calls,
        tool_required=tools.tool_required,
        **tools.kwargs,
    )


def _check_candidates(
    router: object, llms: Mapping[str, object], allowed: Sequence[str] | None
) -> None:
    if not isinstance(router, BaseRouter):
        raise TypeError(f"router: expected a core.BaseRouter, got {type(router).__name__}")
    if not llms:
        raise ConfigError("llms is empty: give at least one {name: LLM}")
    unknown = [name for name in llms if name not in router.llm_names]
    if unknown:
        raise UnknownLLMError(
            f"llms: the router does not know {unknown}; it knows {router.llm_names}"
        )
    if allowed is not None and not isinstance(allowed, str):
        missing = [name for name in allowed if name not in llms]
        if missing:
            raise UnknownLLMError(f"allowed: {missing} are not among llms {list(llms)}")


def _tag(response: Response, dispatch: Dispatch) -> Response:
    response.additional_kwargs = {**response.additional_kwargs, **dispatch.metadata()}
    return response


def _relay(stream: Iterator[Response], dispatch: Dispatch) -> Generator[Response, None, None]:
    for chunk in stream:
        yield _tag(chunk, dispatch)


async def _arelay(stream: Any, dispatch: Dispatch) -> AsyncGenerator[Any, None]:
    async for chunk in stream:
        yield _tag(chunk, dispatch)
