"""RunnableRouter: a LangChain runnable that sends each input to the runnable of the LLM that
a RouterDC router picks for it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from functools import partial
from typing import Any, Generic, TypeVar

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.language_models import LanguageModelInput
from langchain_core.runnables import (
    ConfigurableFieldSpec,
    Runnable,
    RunnableConfig,
    RunnableSerializable,
)
from langchain_core.runnables.config import (
    ensure_config,
    get_config_list,
    get_executor_for_config,
    merge_configs,
    run_in_executor,
)
from langchain_core.runnables.utils import gather_with_concurrency, get_unique_config_specs
from pydantic import ConfigDict, Field

from core import BaseRouter, RoutingLog
from core.routing.dispatch import Dispatch, FallbackPolicy, RoutingOptions
from routerdc_langchain._routing import QueryFrom, Unmatched, route_many, usable_llms

Output = TypeVar("Output")


class RunnableRouter(RunnableSerializable[LanguageModelInput, Output], Generic[Output]):
    """Routes each input to the runnable of the LLM the router picks, falling back on errors.

    The input is anything a chat model accepts (a string, a list of messages, a PromptValue);
    it goes unchanged to the chosen runnable, and the output is whatever that runnable returns.
    The router reads the last human message unless ``query_from`` says otherwise.

    Per call, ``config={"configurable": {...}}`` may set ``cost_weight``, ``costs``,
    ``allowed`` and ``exclude`` (as in ``core.Router.route``); unset keys keep the values given
    here. The decision is recorded on each call's run, never on this object: the run's
    metadata holds ``routerdc_chosen``, ``routerdc_probability`` and ``routerdc_ranking``, and
    a child run named ``router_name`` has the query as input and the whole record
    (:meth:`core.routing.dispatch.Dispatch.metadata`) as output.

    The output type is the runnables' own when they agree (``RunnableRouter[AIMessage]`` for
    chat models, to a type checker and in ``output_schema``), ``Any`` otherwise.

    Attributes:
        router: a trained router (``core.load(...)`` or ``core.fit(...)``).
        runnables: the runnable to call for each of the router's LLM names.
        query_from: picks the text to route on from the input's messages.
        cost_weight, costs, allowed, exclude: routing options, as in ``core.Router.route``.
        max_fallbacks: how many further LLMs of the ranking to try when the chosen one raises;
            while streaming, only until the first chunk has gone out.
        timeout: seconds each LLM has to answer (a stream: to send its first chunk) before
            the next is tried; see :class:`core.routing.dispatch.FallbackPolicy`.
        exceptions_to_handle: the errors that trigger a fallback.
        unmatched: ``"error"`` raises at construction when ``runnables`` and the router's LLMs
            differ; ``"exclude"`` routes only among the LLMs that both know.
        router_name: the name of the child run that records the decision.

    Example:
        >>> router = RunnableRouter(                                   # doctest: +SKIP
        ...     router=core.load("my-router"),
        ...     runnables={"gpt-4o": ChatOpenAI(model="gpt-4o"), "llama-3-8b": ChatOllama(...)},
        ... )
        >>> chain = prompt | router | StrOutputParser()               # doctest: +SKIP
        >>> chain.invoke({"question": "..."}, config={"configurable": {"cost_weight": 0.3}})
    """

    router: BaseRouter
    runnables: dict[str, Runnable[Any, Output]]
    query_from: QueryFrom | None = None
    cost_weight: float = 0.0
    costs: dict[str, float] | None = None
    allowed: list[str] | None = None
    exclude: list[str] | None = None
    explore: float = Field(default=0.0, ge=0, le=1)
    log: RoutingLog | None = None
    max_fallbacks: int = Field(default=2, ge=0)
    timeout: float | None = Field(default=None, gt=0)
    exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,)
    unmatched: Unmatched = "error"
    router_name: str = "RouterDC"

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    def __init__(
        self,
        *,
        router: BaseRouter,
        runnables: Mapping[str, Runnable[Any, Output]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**{"router": router, "runnables": dict(runnables), **kwargs})
        # Checked here, not in a pydantic validator, so the errors keep their own classes.
        self._policy()
        usable = usable_llms(self.router, self.runnables, self.unmatched, "runnables")
        route_kwargs = self._options().route_kwargs(self.router.llm_names, usable)
        self.router.candidates(allowed=route_kwargs["allowed"], exclude=route_kwargs["exclude"])

    @property
    def OutputType(self) -> Any:
        """The runnables' output type when they all agree, else ``Any``."""
        kinds = {r.OutputType for r in self.runnables.values()}
        return kinds.pop() if len(kinds) == 1 else Any

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        # Defaults are None ("as set on the router") so that two routers in one chain agree.
        own = [
            ConfigurableFieldSpec(
                id="cost_weight",
                annotation=float | None,
                name="Cost weight",
                description="w in argmax p(llm|query) - w * cost / max cost; 0 ignores cost.",
            ),
            ConfigurableFieldSpec(
                id="costs",
                annotation=dict[str, float] | None,
                name="Costs",
                description="Dollars per call of each LLM.",
            ),
            ConfigurableFieldSpec(
                id="allowed",
                annotation=list[str] | None,
                name="Allowed LLMs",
                description="Route only among these LLMs.",
            ),
            ConfigurableFieldSpec(
                id="exclude",
                annotation=list[str] | None,
                name="Excluded LLMs",
                description="Never route to these LLMs.",
            ),
        ]
        nested = [spec for r in self.runnables.values() for spec in r.config_specs]
        return get_unique_config_specs([*own, *nested])

    # ------------------------------------------------------------------ routing

    def _options(self, config: RunnableConfig | None = None) -> RoutingOptions:
        options = RoutingOptions(
            self.cost_weight, self.costs, self.allowed, self.exclude, self.explore, self.log
        )
        return options.overridden_by((config or {}).get("configurable") or {})

    def _policy(self) -> FallbackPolicy:
        return FallbackPolicy(self.max_fallbacks, self.timeout, self.exceptions_to_handle)

    def _route(
        self, inputs: list[LanguageModelInput], configs: list[RunnableConfig]
    ) -> list[Dispatch | Exception]:
        """One encoder pass for all the inputs (per distinct set of per-call options).

        Each config gets its LangChain run id now (the caller's, or a new one), before the run
        starts: the routing log records the call under the id its LangChain run will carry.
        """
        usable = usable_llms(self.router, self.runnables, self.unmatched, "runnables")
        options = [self._options(c) for c in configs]
        run_ids = [str(c.setdefault("run_id", uuid.uuid4())) for c in configs]
        return route_many(
            self.router, inputs, options, self.query_from, usable, self._policy(), run_ids
        )

    async def _aroute(
        self, inputs: list[LanguageModelInput], configs: list[RunnableConfig]
    ) -> list[Dispatch | Exception]:
        # The encoder pass is CPU or GPU work: keep it off the event loop.
        return await run_in_executor(None, self._route, inputs, configs)

    @staticmethod
    def _traced(config: RunnableConfig, routed: Dispatch | Exception) -> RunnableConfig:
        """The call's config with the decision in its run metadata."""
        if isinstance(routed, Exception):
            return config
        return merge_configs(config, {"metadata": routed.start_metadata()})

    # ------------------------------------------------------------------ one call, routed

    def _invoke_routed(
        self,
        input: LanguageModelInput,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        routed: Dispatch | Exception,
        call_kwargs: dict[str, Any],
    ) -> Output:
        if isinstance(routed, Exception):
            raise routed
        decision_run = run_manager.get_child().on_chain_start(
            None, {"query": routed.query}, name=self.router_name
        )
        try:
            return routed.call(lambda llm: self.runnables[llm].invoke(input, config, **call_kwargs))
        finally:
            decision_run.on_chain_end(routed.metadata())

    async def _ainvoke_routed(
        self,
        input: LanguageModelInput,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        routed: Dispatch | Exception,
        call_kwargs: dict[str, Any],
    ) -> Output:
        if isinstance(routed, Exception):
            raise routed
        decision_run = await run_manager.get_child().on_chain_start(
            None, {"query": routed.query}, name=self.router_name
        )
        try:
            return await routed.acall(
                lambda llm: self.runnables[llm].ainvoke(input, config, **call_kwargs)
            )
        finally:
            await decision_run.on_chain_end(routed.metadata())

    def _stream_routed(
        self,
        inputs: Iterator[LanguageModelInput],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        routed: Dispatch | Exception,
        call_kwargs: dict[str, Any],
    ) -> Iterator[Output]:
        input = next(inputs)
        if isinstance(routed, Exception):
            raise routed
        decision_run = run_manager.get_child().on_chain_start(
            None, {"query": routed.query}, name=self.router_name
        )
        try:
            yield from routed.stream(
                lambda llm: iter(self.runnables[llm].stream(input, config, **call_kwargs))
            )
        finally:
            decision_run.on_chain_end(routed.metadata())

    async def _astream_routed(
        self,
        inputs: AsyncIterator[LanguageModelInput],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        routed: Dispatch | Exception,
        call_kwargs: dict[str, Any],
    ) -> AsyncIterator[Output]:
        input = await inputs.__anext__()
        if isinstance(routed, Exception):
            raise routed
        decision_run = await run_manager.get_child().on_chain_start(
            None, {"query": routed.query}, name=self.router_name
        )
        try:
            stream = await routed.astream(
                lambda llm: aiter(self.runnables[llm].astream(input, config, **call_kwargs))
            )
            async for chunk in stream:
                yield chunk
        finally:
            await decision_run.on_chain_end(routed.metadata())

    # ------------------------------------------------------------------ the Runnable interface

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Output:
        config = ensure_config(config)
        (routed,) = self._route([input], [config])
        func = partial(self._invoke_routed, routed=routed, call_kwargs=kwargs)
        return self._call_with_config(func, input, self._traced(config, routed))

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Output:
        config = ensure_config(config)
        (routed,) = await self._aroute([input], [config])
        func = partial(self._ainvoke_routed, routed=routed, call_kwargs=kwargs)
        return await self._acall_with_config(func, input, self._traced(config, routed))

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Route all inputs in one encoder pass, then run the chosen runnables concurrently
        (at most ``config["max_concurrency"]`` at once)."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        routed = self._route(inputs, configs)

        def run_all(
            inputs: list[LanguageModelInput],
            run_manager: list[CallbackManagerForChainRun],
            config: list[RunnableConfig],
        ) -> list[Any]:
            def one(i: int) -> Any:
                try:
                    return self._invoke_routed(
                        inputs[i], run_manager[i], config[i], routed=routed[i], call_kwargs=kwargs
                    )
                except Exception as err:  # returned in place; raised by the caller
                    return err

            with get_executor_for_config(configs[0]) as executor:
                return list(executor.map(one, range(len(inputs))))

        traced = [self._traced(c, r) for c, r in zip(configs, routed, strict=True)]
        return self._batch_with_config(run_all, inputs, traced, return_exceptions=return_exceptions)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Async :meth:`batch`: one encoder pass, then the chosen runnables concurrently."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        routed = await self._aroute(inputs, configs)

        async def run_all(
            inputs: list[LanguageModelInput],
            run_manager: list[AsyncCallbackManagerForChainRun],
            config: list[RunnableConfig],
        ) -> list[Any]:
            async def one(i: int) -> Any:
                try:
                    return await self._ainvoke_routed(
                        inputs[i], run_manager[i], config[i], routed=routed[i], call_kwargs=kwargs
                    )
                except Exception as err:  # returned in place; raised by the caller
                    return err

            coros = [one(i) for i in range(len(inputs))]
            return await gather_with_concurrency(configs[0].get("max_concurrency"), *coros)

        traced = [self._traced(c, r) for c, r in zip(configs, routed, strict=True)]
        return await self._abatch_with_config(
            run_all, inputs, traced, return_exceptions=return_exceptions
        )

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Output]:
        """Stream the chosen runnable's chunks as they come."""
        config = ensure_config(config)
        (routed,) = self._route([input], [config])
        func = partial(self._stream_routed, routed=routed, call_kwargs=kwargs)
        yield from self._transform_stream_with_config(
            iter([input]), func, self._traced(config, routed)
        )

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        """Async :meth:`stream`."""
        config = ensure_config(config)
        (routed,) = await self._aroute([input], [config])
        func = partial(self._astream_routed, routed=routed, call_kwargs=kwargs)

        async def single() -> AsyncIterator[LanguageModelInput]:
            yield input

        async for chunk in self._atransform_stream_with_config(
            single(), func, self._traced(config, routed)
        ):
            yield chunk
