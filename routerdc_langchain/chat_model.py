"""ChatRouterDC: a LangChain chat model that answers each call with the candidate chat model a
RouterDC router picks, for code that expects a chat model (agents, tools, structured output)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import ensure_config, run_in_executor
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from core import BaseRouter, RoutingLog
from core.routing.dispatch import ROUTING_OPTIONS, Dispatch, FallbackPolicy, RoutingOptions
from routerdc_langchain._routing import QueryFrom, Unmatched, route_many, usable_llms
from routerdc_langchain.runnable import RunnableRouter

# The call keyword that carries ``config["configurable"]``'s routing options to ``_generate``.
OPTIONS_KWARG = "routerdc_options"
# Keyword arguments LangChain adds for tracing that a model's ``_generate`` never takes.
_TRACING_KWARGS = ("ls_structured_output_format", "structured_output_format")


class ChatRouterDC(BaseChatModel):
    """A chat model that routes each call to one of its candidate chat models.

    Each call goes to the candidate the router picks for the last human message (or for what
    ``query_from`` returns); when it raises or times out, the next candidates of the router's
    ranking are tried, up to ``max_fallbacks`` (while streaming, only until the first chunk).
    The answer is the candidate's own message, usage metadata included, with the decision
    record in its ``response_metadata`` (``routerdc_chosen``, ``routerdc_answered_by``,
    ``routerdc_probability``, ``routerdc_probabilities``, ``routerdc_ranking``,
    ``routerdc_fallbacks``; on a stream's first chunk) and ``response_metadata["model_name"]``
    set to the answering LLM when the candidate did not set it.

    One call is one model run: a candidate that is a chat model (or a binding of one, as
    ``bind_tools`` makes) runs inside this model's run, so callback handlers, ``stream_mode=
    "messages"``, ``astream_events`` and ``get_usage_metadata_callback`` see each token and
    each usage report once. Any other runnable given as a candidate runs as a child run.

    Per call, ``config={"configurable": {...}}`` may set ``cost_weight``, ``costs``,
    ``allowed`` and ``exclude``, as for ``RunnableRouter``. ``bind_tools`` and
    ``with_structured_output`` apply to every candidate.

    Attributes:
        router: a trained router (any ``core.BaseRouter``).
        models: the chat model (or any runnable returning a message) for each router LLM.
        query_from, cost_weight, costs, allowed, exclude, max_fallbacks, timeout,
            exceptions_to_handle, unmatched: as in ``RunnableRouter``.

    Example:
        >>> model = ChatRouterDC(                                   # doctest: +SKIP
        ...     router=core.load("my-router"),
        ...     models={"gpt-4o": ChatOpenAI(model="gpt-4o"), "llama-3-8b": ChatOllama(...)},
        ... )
        >>> model.invoke("Solve 2x + 3 = 7").response_metadata["routerdc_answered_by"]
    """

    router: BaseRouter = Field(exclude=True)
    models: dict[str, Runnable[LanguageModelInput, BaseMessage]]
    query_from: QueryFrom | None = None
    cost_weight: float = 0.0
    costs: dict[str, float] | None = None
    allowed: list[str] | None = None
    exclude: list[str] | None = None
    explore: float = Field(default=0.0, ge=0, le=1)
    log: RoutingLog | None = Field(default=None, exclude=True)
    max_fallbacks: int = Field(default=2, ge=0)
    timeout: float | None = Field(default=None, gt=0)
    exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,)
    unmatched: Unmatched = "error"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Checked here, not in a pydantic validator, so the errors keep their own classes.
        self._policy()
        route_kwargs = self._options().route_kwargs(self.router.llm_names, self._usable())
        self.router.candidates(allowed=route_kwargs["allowed"], exclude=route_kwargs["exclude"])

    @property
    def _llm_type(self) -> str:
        return "routerdc"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "cost_weight": self.cost_weight,
            "allowed": self.allowed,
            "exclude": self.exclude,
            "max_fallbacks": self.max_fallbacks,
            "timeout": self.timeout,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "routerdc"
        params.setdefault("ls_model_name", "routerdc")  # the model is chosen per call
        return params

    # ------------------------------------------------------------------ per-call options

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config = ensure_config(config)
        return super().invoke(input, config, stop=stop, **_with_options(config, kwargs))

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config = ensure_config(config)
        return await super().ainvoke(input, config, stop=stop, **_with_options(config, kwargs))

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        config = ensure_config(config)
        yield from super().stream(input, config, stop=stop, **_with_options(config, kwargs))

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config = ensure_config(config)
        async for chunk in super().astream(
            input, config, stop=stop, **_with_options(config, kwargs)
        ):
            yield chunk

    # ------------------------------------------------------------------ routing

    def _usable(self) -> list[str]:
        return usable_llms(self.router, self.models, self.unmatched, "models")

    def _options(self, per_call: Mapping[str, Any] | None = None) -> RoutingOptions:
        options = RoutingOptions(
            self.cost_weight, self.costs, self.allowed, self.exclude, self.explore, self.log
        )
        return options.overridden_by(per_call or {})

    def _policy(self) -> FallbackPolicy:
        return FallbackPolicy(self.max_fallbacks, self.timeout, self.exceptions_to_handle)

    def _route(
        self,
        messages: list[BaseMessage],
        kwargs: dict[str, Any],
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
    ) -> Dispatch:
        """Route the messages; the routing log records the call under its LangChain run id."""
        options = self._options(kwargs.pop(OPTIONS_KWARG, None))
        run_ids = None if run_manager is None else [str(run_manager.run_id)]
        (routed,) = route_many(
            self.router,
            [messages],
            [options],
            self.query_from,
            self._usable(),
            self._policy(),
            run_ids,
        )
        if isinstance(routed, Exception):
            raise routed
        return routed

    # ------------------------------------------------------------------ calls

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        dispatch = self._route(messages, kwargs, run_manager)

        def attempt(llm: str) -> BaseMessage:
            candidate = _unwrap(self.models[llm])
            if candidate is None:  # not a chat model: a child run of this one
                config: RunnableConfig = {"callbacks": _child_callbacks(run_manager)}
                return self.models[llm].invoke(messages, config, stop=stop, **kwargs)
            model, bound = candidate
            result = model._generate_with_cache(
                messages, stop=stop, run_manager=run_manager, **{**bound, **kwargs}
            )
            return result.generations[0].message

        message = dispatch.call(attempt)
        return _result(message, dispatch)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        dispatch = await run_in_executor(None, self._route, messages, kwargs, run_manager)

        async def attempt(llm: str) -> BaseMessage:
            candidate = _unwrap(self.models[llm])
            if candidate is None:
                config: RunnableConfig = {"callbacks": _child_callbacks(run_manager)}
                return await self.models[llm].ainvoke(messages, config, stop=stop, **kwargs)
            model, bound = candidate
            result = await model._agenerate_with_cache(
                messages, stop=stop, run_manager=run_manager, **{**bound, **kwargs}
            )
            return result.generations[0].message

        message = await dispatch.acall(attempt)
        return _result(message, dispatch)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        dispatch = self._route(messages, kwargs, run_manager)

        def start(llm: str) -> Iterator[ChatGenerationChunk]:
            candidate = _unwrap(self.models[llm])
            if candidate is None:
                chunks = self.models[llm].stream(messages, stop=stop, **kwargs)
                return (_generation_chunk(llm, c) for c in chunks)
            model, bound = candidate
            call_kwargs = {**bound, **kwargs}
            if not model._should_stream(async_api=False, **{**call_kwargs, "stream": True}):
                result = model._generate_with_cache(messages, stop=stop, **call_kwargs)
                return iter([_generation_chunk(llm, result.generations[0].message)])
            if model.rate_limiter:
                model.rate_limiter.acquire(blocking=True)
            return model._stream(messages, stop=stop, **call_kwargs)

        stream = dispatch.stream(start)
        chunks = _Annotator(dispatch)
        for chunk in stream:
            yield chunks.annotate(chunk)
        if closing := chunks.closing():
            yield closing

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        dispatch = await run_in_executor(None, self._route, messages, kwargs, run_manager)

        async def start(llm: str) -> AsyncIterator[ChatGenerationChunk]:
            candidate = _unwrap(self.models[llm])
            if candidate is None:
                async for c in self.models[llm].astream(messages, stop=stop, **kwargs):
                    yield _generation_chunk(llm, c)
                return
            model, bound = candidate
            call_kwargs = {**bound, **kwargs}
            if not model._should_stream(async_api=True, **{**call_kwargs, "stream": True}):
                result = await model._agenerate_with_cache(messages, stop=stop, **call_kwargs)
                yield _generation_chunk(llm, result.generations[0].message)
                return
            if model.rate_limiter:
                await model.rate_limiter.aacquire(blocking=True)
            async for chunk in model._astream(messages, stop=stop, **call_kwargs):
                yield chunk

        stream = await dispatch.astream(start)
        chunks = _Annotator(dispatch)
        async for chunk in stream:
            yield chunks.annotate(chunk)
        if closing := chunks.closing():
            yield closing

    # ------------------------------------------------------------------ tools, structured output

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """A copy whose every candidate has ``tools`` bound (with each candidate's own
        ``bind_tools``, so each gets the tool format its provider expects)."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        bound = {
            name: _each(name, model, "bind_tools", tools, **kwargs)
            for name, model in self.models.items()
        }
        copy = self.model_copy(update={"models": bound})
        copy.__dict__.pop("_serialized", None)  # LangChain's cached description of the original
        return copy.bind()

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """A ``RunnableRouter`` over every candidate's own ``with_structured_output``."""
        structured = {
            name: _each(
                name, model, "with_structured_output", schema, include_raw=include_raw, **kwargs
            )
            for name, model in self.models.items()
        }
        return RunnableRouter(
            router=self.router,
            runnables=structured,
            query_from=self.query_from,
            cost_weight=self.cost_weight,
            costs=self.costs,
            allowed=self.allowed,
            exclude=self.exclude,
            max_fallbacks=self.max_fallbacks,
            timeout=self.timeout,
            exceptions_to_handle=self.exceptions_to_handle,
            unmatched=self.unmatched,
        )


def _with_options(config: RunnableConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` plus the routing options of ``config["configurable"]``, if it sets any.

    LangChain hands ``_generate`` the call's keyword arguments but not its config; the options
    travel as one keyword argument that ``_route`` takes out again.
    """
    configurable = config.get("configurable") or {}
    options = {k: configurable[k] for k in ROUTING_OPTIONS if configurable.get(k) is not None}
    return {**kwargs, OPTIONS_KWARG: options} if options else kwargs


def _unwrap(candidate: Runnable[Any, Any]) -> tuple[BaseChatModel, dict[str, Any]] | None:
    """The chat model under ``candidate`` and the keyword arguments its bindings add.

    None when ``candidate`` is not a chat model or a plain binding of one (a binding with its
    own config is kept whole, so that config applies).
    """
    kwargs: dict[str, Any] = {}
    while isinstance(candidate, RunnableBinding):
        if candidate.config or candidate.config_factories:
            return None
        kwargs = {**candidate.kwargs, **kwargs}  # the outer binding's arguments win
        candidate = candidate.bound
    if not isinstance(candidate, BaseChatModel):
        return None
    for name in _TRACING_KWARGS:
        kwargs.pop(name, None)
    return candidate, kwargs


def _generation_chunk(llm: str, message: object) -> ChatGenerationChunk:
    """A message or message chunk from a candidate, as a generation chunk."""
    if isinstance(message, BaseMessageChunk):
        return ChatGenerationChunk(message=message)
    if isinstance(message, AIMessage):
        return ChatGenerationChunk(message=_as_chunk(message))
    raise TypeError(f"candidate {llm!r} returned a {type(message).__name__}, not an AI message")


def _as_chunk(message: AIMessage) -> AIMessageChunk:
    """An answer given whole, as the one chunk of a stream."""
    return AIMessageChunk(
        content=message.content,
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        id=message.id,
        name=message.name,
        usage_metadata=message.usage_metadata,
        tool_call_chunks=[
            tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
            for i, c in enumerate(message.tool_calls)
        ],
        chunk_position="last",
    )


def _child_callbacks(
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
) -> BaseCallbackManager | None:
    """Callbacks that put the chosen model's run under this model's run.

    This is what ``get_child`` does for chain runs; LLM run managers have no ``get_child``.
    """
    if run_manager is None:
        return None
    manager_class: type[BaseCallbackManager] = (
        AsyncCallbackManager
        if isinstance(run_manager, AsyncCallbackManagerForLLMRun)
        else CallbackManager
    )
    manager = manager_class(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return manager


def _each(name: str, model: Runnable[Any, Any], method: str, /, *args: Any, **kwargs: Any) -> Any:
    """``model.<method>(*args, **kwargs)``, with an error naming the candidate that lacks it."""
    try:
        return getattr(model, method)(*args, **kwargs)
    except (AttributeError, NotImplementedError) as err:
        raise NotImplementedError(
            f"candidate {name!r} ({type(model).__name__}) does not support {method}: {err}"
        ) from err


def _result(message: object, dispatch: Dispatch) -> ChatResult:
    llm = dispatch.answered_by
    if not isinstance(message, BaseMessage):
        raise TypeError(f"candidate {llm!r} returned a {type(message).__name__}, not a message")
    metadata = {**message.response_metadata, **dispatch.metadata()}
    metadata.setdefault("model_name", llm)
    message = message.model_copy(update={"response_metadata": metadata})
    return ChatResult(generations=[ChatGeneration(message=message)])


class _Annotator:
    """Puts the decision record on a stream's first chunk and a ``model_name`` on its last."""

    def __init__(self, dispatch: Dispatch) -> None:
        self.llm = dispatch.answered_by
        self.record: dict[str, Any] | None = dispatch.metadata()
        self.named = False
        self.last: BaseMessageChunk | None = None

    def annotate(self, generation: ChatGenerationChunk) -> ChatGenerationChunk:
        chunk = generation.message
        if not isinstance(chunk, BaseMessageChunk):
            raise TypeError(
                f"candidate {self.llm!r} streamed a {type(chunk).__name__}, not a message chunk"
            )
        self.named = self.named or "model_name" in chunk.response_metadata
        update: dict[str, Any] = {}
        if self.record is not None:
            update, self.record = dict(self.record), None
        if not self.named and getattr(chunk, "chunk_position", None) == "last":
            update["model_name"], self.named = self.llm, True
        if update:
            chunk = chunk.model_copy(
                update={"response_metadata": {**chunk.response_metadata, **update}}
            )
            generation = ChatGenerationChunk(
                message=chunk, generation_info=generation.generation_info
            )
        self.last = chunk
        return generation

    def closing(self) -> ChatGenerationChunk | None:
        """A last, empty chunk naming the model, for a stream that never did."""
        if self.named:
            return None
        if self.last is None:  # the candidate streamed nothing; the decision still goes out
            return ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    response_metadata={**(self.record or {}), "model_name": self.llm},
                    chunk_position="last",
                )
            )
        empty: str | list[Any] = "" if isinstance(self.last.content, str) else []
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content=empty, response_metadata={"model_name": self.llm}, chunk_position="last"
            )
        )
