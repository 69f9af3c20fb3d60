"""RouterDCMiddleware: a LangChain v1 agent middleware that picks the model of each model call.

Needs the optional ``langchain`` package (``pip install routerdc[langchain-agents]``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables.config import ensure_config
from langgraph.types import Command
from typing_extensions import NotRequired

from core import BaseRouter, RoutingLog
from core.routing.dispatch import Dispatch, FallbackPolicy, RoutingOptions
from routerdc_langchain._routing import QueryFrom, Unmatched, query_of, usable_llms

# The agent state key that holds the decision record of the agent's latest model call.
STATE_KEY = "routerdc"


class RouterDCState(AgentState[Any]):
    """Agent state with the decision record of the latest model call under ``routerdc``."""

    routerdc: NotRequired[dict[str, Any]]


class RouterDCMiddleware(AgentMiddleware[RouterDCState, Any, Any]):
    """Routes each model call of a LangChain v1 agent to the model a RouterDC router picks.

    Before each model call, the router reads the conversation (the last human message, or what
    ``query_from`` returns from the request's messages) and the call goes to that model
    (``request.override(model=...)``), with the agent's tools, system prompt and response
    format unchanged. When the model raises or times out, the next model of the router's
    ranking is tried, up to ``max_fallbacks``. The decision record
    (:meth:`core.routing.dispatch.Dispatch.metadata`: ``routerdc_chosen``, ``routerdc_answered_by``,
    ...) goes into the answer's ``response_metadata`` and into the agent state under
    ``routerdc``.

    The model the agent was created with is never called: it is only the agent's default.
    A fallback re-runs the whole model call on the next model; with ``stream_mode="messages"``,
    tokens a failing model streamed before it failed have already gone out.

    Per call, ``config={"configurable": {...}}`` may set ``cost_weight``, ``costs``,
    ``allowed`` and ``exclude``.

    Args:
        router: a trained router (any ``core.BaseRouter``).
        models: the chat model for each of the router's LLM names.
        query_from: picks the text to route on from the request's messages.
        cost_weight, costs, allowed, exclude: routing options, as in ``core.Router.route``.
        max_fallbacks, timeout, exceptions_to_handle: how to fall back
            (:class:`core.routing.dispatch.FallbackPolicy`).
        unmatched: ``"error"`` raises when ``models`` and the router's LLMs differ;
            ``"exclude"`` routes only among the LLMs that both know.

    Example:
        >>> from langchain.agents import create_agent                          # doctest: +SKIP
        >>> agent = create_agent(
        ...     model=small_model,
        ...     tools=[search],
        ...     middleware=[RouterDCMiddleware(router=core.load("my-router"), models=models)],
        ... )                                                                  # doctest: +SKIP
    """

    state_schema = RouterDCState

    def __init__(
        self,
        *,
        router: BaseRouter,
        models: Mapping[str, BaseChatModel],
        query_from: QueryFrom | None = None,
        cost_weight: float = 0.0,
        costs: Mapping[str, float] | None = None,
        allowed: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        explore: float = 0.0,
        log: RoutingLog | None = None,
        max_fallbacks: int = 2,
        timeout: float | None = None,
        exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,),
        unmatched: Unmatched = "error",
    ) -> None:
        super().__init__()
        if not isinstance(router, BaseRouter):
            raise TypeError(f"router: expected a core.BaseRouter, got {type(router).__name__}")
        for name, model in models.items():
            if not isinstance(model, BaseChatModel):
                raise TypeError(
                    f"models[{name!r}]: expected a chat model, got {type(model).__name__}"
                )
        self.router = router
        self.models = dict(models)
        self.query_from = query_from
        self.options = RoutingOptions(cost_weight, costs, allowed, exclude, explore, log)
        self.policy = FallbackPolicy(max_fallbacks, timeout, exceptions_to_handle)
        self.usable = usable_llms(router, self.models, unmatched, "models")
        route_kwargs = self.options.route_kwargs(router.llm_names, self.usable)
        router.candidates(allowed=route_kwargs["allowed"], exclude=route_kwargs["exclude"])

    def _dispatch(self, request: ModelRequest[Any]) -> Dispatch:
        configurable = ensure_config().get("configurable") or {}  # the agent run's config
        options = self.options.overridden_by(configurable)
        query = query_of(list(request.messages), self.query_from)
        decision = self.router.route(
            query, **options.route_kwargs(self.router.llm_names, self.usable)
        )
        return Dispatch(decision, self.policy, query=query, log=options.log)

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ExtendedModelResponse[Any]:
        """Call the model the router picks for this request, falling back on failure."""
        dispatch = self._dispatch(request)
        response = dispatch.call(lambda llm: handler(request.override(model=self.models[llm])))
        return _recorded(response, dispatch)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ExtendedModelResponse[Any]:
        """Async :meth:`wrap_model_call`; the encoder pass runs off the event loop."""
        dispatch = await asyncio.to_thread(self._dispatch, request)
        response = await dispatch.acall(
            lambda llm: handler(request.override(model=self.models[llm]))
        )
        return _recorded(response, dispatch)


def _recorded(response: Any, dispatch: Dispatch) -> ExtendedModelResponse[Any]:
    """The response with the record on its AI message, and a state update carrying it."""
    record = dispatch.metadata()
    if isinstance(response, AIMessage):
        response = ModelResponse(result=[response])
    messages: list[BaseMessage] = [
        m.model_copy(update={"response_metadata": {**m.response_metadata, **record}})
        if isinstance(m, AIMessage)
        else m
        for m in response.result
    ]
    updated = ModelResponse(result=messages, structured_response=response.structured_response)
    return ExtendedModelResponse(
        model_response=updated, command=Command(update={STATE_KEY: record})
    )
