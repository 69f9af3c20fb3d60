"""ChatRouterDC: a LangChain chat model that answers each call with the candidate chat model a
RouterDC router picks, for code that expects a chat model (agents, tools, structured output)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
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
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import run_in_executor
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from core import BaseRouter
from routerdc_langchain._routing import (
    QueryFrom,
    Routed,
    RoutingOptions,
    Unmatched,
    acall_in_order,
    aopen_in_order,
    call_in_order,
    decision_record,
    open_in_order,
    route_many,
    usable_llms,
)
from routerdc_langchain.runnable import RunnableRouter


class ChatRouterDC(BaseChatModel):
    """A chat model that routes each call to one of its candidate chat models.

    Each call goes to the candidate the router picks for the last human message (or for what
    ``query_from`` returns); when it raises, the next candidates of the router's ranking are
    tried, up to ``max_fallbacks`` (while streaming, only until the first chunk). The answer is
    the candidate's own message, usage metadata included, with ``response_metadata["routerdc"]``
    holding the decision (``llm``, ``probability``, ``ranking``, ``probabilities``,
    ``answered_by``, ``fallbacks``) and ``response_metadata["model_name"]`` set to the
    answering LLM when the candidate did not set it.

    ``bind_tools`` and ``with_structured_output`` apply to every candidate. To change a routing
    option per call, use LangChain's ``configurable_fields``, e.g.
    ``model.configurable_fields(cost_weight=ConfigurableField(id="cost_weight"))``.

    The chosen candidate's run is a child of this model's run on invoke; LangChain hands no run
    manager to ``_stream``, so a streamed candidate's run sits beside this one instead. Either
    way callback handlers see two LLM runs per call, and one that sums the tokens of every LLM
    run (``get_usage_metadata_callback``) counts them twice; ``RunnableRouter`` is a chain, not
    an LLM run, and has no such double.

    Attributes:
        router: a trained router.
        models: the chat model (or any runnable returning a message) for each router LLM.
        query_from, cost_weight, costs, allowed, exclude, max_fallbacks, exceptions_to_handle,
            unmatched: as in ``RunnableRouter``.

    Example:
        >>> model = ChatRouterDC(                                   # doctest: +SKIP
        ...     router=core.load("my-router"),
        ...     models={"gpt-4o": ChatOpenAI(model="gpt-4o"), "llama-3-8b": ChatOllama(...)},
        ... )
        >>> model.invoke("Solve 2x + 3 = 7").response_metadata["routerdc"]["answered_by"]
    """

    router: BaseRouter = Field(exclude=True)
    models: dict[str, Runnable[LanguageModelInput, BaseMessage]]
    query_from: QueryFrom | None = None
    cost_weight: float = 0.0
    costs: dict[str, float] | None = None
    allowed: list[str] | None = None
    exclude: list[str] | None = None
    max_fallbacks: int = Field(default=2, ge=0)
    exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,)
    unmatched: Unmatched = "error"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Checked here, not in a pydantic validator, so the errors keep their own classes.
        route_kwargs = self._options().route_kwargs(self.router, self._usable())
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
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "routerdc"
        params.setdefault("ls_model_name", "routerdc")  # the model is chosen per call
        return params

    # ------------------------------------------------------------------ routing

    def _usable(self) -> list[str]:
        return usable_llms(self.router, self.models, self.unmatched, "models")

    def _options(self) -> RoutingOptions:
        return RoutingOptions(self.cost_weight, self.costs, self.allowed, self.exclude)

    def _route(self, messages: list[BaseMessage]) -> Routed:
        (routed,) = route_many(
            self.router, [messages], [self._options()], self.query_from, self._usable()
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
        routed = self._route(messages)
        config: RunnableConfig = {"callbacks": _child_callbacks(run_manager)}
        errors: dict[str, BaseException] = {}
        message, llm = call_in_order(
            routed.order(self.max_fallbacks),
            lambda llm: self.models[llm].invoke(messages, config, stop=stop, **kwargs),
            self.exceptions_to_handle,
            errors,
        )
        return _result(message, llm, decision_record(routed.decision, llm, errors))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        routed = await run_in_executor(None, self._route, messages)
        config: RunnableConfig = {"callbacks": _child_callbacks(run_manager)}
        errors: dict[str, BaseException] = {}
        message, llm = await acall_in_order(
            routed.order(self.max_fallbacks),
            lambda llm: self.models[llm].ainvoke(messages, config, stop=stop, **kwargs),
            self.exceptions_to_handle,
            errors,
        )
        return _result(message, llm, decision_record(routed.decision, llm, errors))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        routed = self._route(messages)
        errors: dict[str, BaseException] = {}
        llm, stream = open_in_order(
            routed.order(self.max_fallbacks),
            lambda llm: iter(self.models[llm].stream(messages, stop=stop, **kwargs)),
            self.exceptions_to_handle,
            errors,
        )
        chunks = _Annotator(llm, decision_record(routed.decision, llm, errors))
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
        routed = await run_in_executor(None, self._route, messages)
        errors: dict[str, BaseException] = {}
        llm, stream = await aopen_in_order(
            routed.order(self.max_fallbacks),
            lambda llm: aiter(self.models[llm].astream(messages, stop=stop, **kwargs)),
            self.exceptions_to_handle,
            errors,
        )
        chunks = _Annotator(llm, decision_record(routed.decision, llm, errors))
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
            exceptions_to_handle=self.exceptions_to_handle,
            unmatched=self.unmatched,
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


def _result(message: object, llm: str, record: dict[str, Any]) -> ChatResult:
    if not isinstance(message, BaseMessage):
        raise TypeError(f"candidate {llm!r} returned a {type(message).__name__}, not a message")
    metadata = {**message.response_metadata, "routerdc": record}
    metadata.setdefault("model_name", llm)
    message = message.model_copy(update={"response_metadata": metadata})
    return ChatResult(generations=[ChatGeneration(message=message)])


class _Annotator:
    """Puts the decision on a stream's first chunk and a ``model_name`` on its last, once."""

    def __init__(self, llm: str, record: dict[str, Any]) -> None:
        self.llm = llm
        self.record: dict[str, Any] | None = record
        self.named = False
        self.last: BaseMessageChunk | None = None

    def annotate(self, chunk: object) -> ChatGenerationChunk:
        if not isinstance(chunk, BaseMessageChunk):
            raise TypeError(
                f"candidate {self.llm!r} streamed a {type(chunk).__name__}, not a message chunk"
            )
        self.named = self.named or "model_name" in chunk.response_metadata
        update: dict[str, Any] = {}
        if self.record is not None:
            update["routerdc"], self.record = self.record, None
        if not self.named and getattr(chunk, "chunk_position", None) == "last":
            update["model_name"], self.named = self.llm, True
        if update:
            chunk = chunk.model_copy(
                update={"response_metadata": {**chunk.response_metadata, **update}}
            )
        self.last = chunk
        return ChatGenerationChunk(message=chunk)

    def closing(self) -> ChatGenerationChunk | None:
        """A last, empty chunk naming the model, for a stream that never did."""
        if self.named:
            return None
        if self.last is None:  # the candidate streamed nothing; the decision still goes out
            return ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    response_metadata={"routerdc": self.record, "model_name": self.llm},
                    chunk_position="last",
                )
            )
        empty: str | list[Any] = "" if isinstance(self.last.content, str) else []
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content=empty, response_metadata={"model_name": self.llm}, chunk_position="last"
            )
        )
