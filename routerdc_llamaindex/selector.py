"""RouterDCSelector: a LlamaIndex selector that picks query engines or retrievers with RouterDC."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from llama_index.core.base.base_selector import BaseSelector, SelectorResult, SingleSelection
from llama_index.core.bridge.pydantic import Field
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.schema import QueryBundle
from llama_index.core.tools.types import ToolMetadata

from core import BaseRouter, RoutingLog
from core.errors import ConfigError
from core.routing.base import check_epsilon

logger = logging.getLogger(__name__)


class RouterDCSelectorResult(SelectorResult):
    """A :class:`SelectorResult` that also carries what the router saw.

    Attributes:
        probabilities: p(LLM | query) over the LLMs of the choices the router could pick.
        ranking: those LLMs, best first (less the cost term when ``cost_weight`` is set).
    """

    probabilities: dict[str, float] = Field(default_factory=dict)
    ranking: list[str] = Field(default_factory=list)


class RouterDCSelector(BaseSelector):
    """Select among query engines or retrievers, one per LLM, with a trained RouterDC router.

    A choice is matched to the router's LLMs by ``ToolMetadata.name`` (for a plain string
    choice: the string), through ``choice_to_llm`` when given: a router whose "LLMs" are data
    sources or query engines (trained on which source answered each query best) selects
    among tools named after them, e.g. ``choice_to_llm={"math_docs": "math", ...}``. Choices
    the router does not know are never selected; when it knows none of them,
    :class:`core.ConfigError` (a ``ValueError``) lists both sets of names.

    Args:
        router: a trained router (``core.load(...)`` or ``core.fit(...)``).
        max_outputs: how many choices to return, best first; above 1, ``RouterQueryEngine`` and
            ``RouterRetriever`` query each and combine the results.
        cost_weight: trade quality for price, as in :meth:`core.Router.route`.
        costs: dollars per call of each LLM; defaults to the prices seen in training.
        allowed: select only among choices naming these LLMs.
        choice_to_llm: the router's LLM name for each choice name that is not itself one.

    Example:
        >>> engine = RouterQueryEngine(
        ...     selector=RouterDCSelector(router=core.load("my-router")),
        ...     query_engine_tools=[
        ...         QueryEngineTool(
        ...             query_engine=qe_small,
        ...             metadata=ToolMetadata(name="llama-3-8b", description="small model"),
        ...         ),
        ...         QueryEngineTool(
        ...             query_engine=qe_large,
        ...             metadata=ToolMetadata(name="gpt-4", description="large model"),
        ...         ),
        ...     ],
        ... )                                                             # doctest: +SKIP
    """

    def __init__(
        self,
        router: BaseRouter,
        *,
        max_outputs: int = 1,
        cost_weight: float = 0.0,
        costs: Mapping[str, float] | None = None,
        allowed: Sequence[str] | None = None,
        choice_to_llm: Mapping[str, str] | None = None,
        explore: float = 0.0,
        log: RoutingLog | None = None,
    ) -> None:
        if not isinstance(router, BaseRouter):
            raise TypeError(f"router: expected a core.BaseRouter, got {type(router).__name__}")
        if isinstance(max_outputs, bool) or not isinstance(max_outputs, int) or max_outputs < 1:
            raise ConfigError(f"max_outputs must be an integer >= 1, got {max_outputs!r}")
        router.candidates(allowed=allowed)  # raises on unknown names, before the first query
        mapped = dict(choice_to_llm or {})
        router.candidates(allowed=list(mapped.values()) or None)  # the same for the mapping
        self.choice_to_llm = mapped
        self.router = router
        self.max_outputs = max_outputs
        self.cost_weight = cost_weight
        self.costs = costs
        self.allowed = list(allowed) if allowed is not None else None
        check_epsilon(explore)
        self.explore = explore
        self.log = log

    def _get_prompts(self) -> PromptDictType:
        return {}  # no prompt: the router decides

    def _update_prompts(self, prompts_dict: PromptDictType) -> None:
        pass

    def _select(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> SelectorResult:
        index_of = self._index_of_llm(choices)
        decision = self.router.route(
            query.query_str,
            cost_weight=self.cost_weight,
            costs=self.costs,
            allowed=list(index_of),
            explore=self.explore,
            log=self.log,
        )
        picked = decision.ranking[: self.max_outputs]
        logger.debug("routed %r to %s", query.query_str[:80], picked)
        selections = [
            SingleSelection(
                index=index_of[name],
                reason=(
                    f"RouterDC picked {name!r} (rank {rank} of {len(decision.ranking)}) "
                    f"with probability {decision.probabilities[name]:.3f}"
                ),
            )
            for rank, name in enumerate(picked, start=1)
        ]
        return RouterDCSelectorResult(
            selections=selections,
            probabilities=decision.probabilities,
            ranking=decision.ranking,
        )

    async def _aselect(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> SelectorResult:
        # The encoder pass is CPU/GPU work; keep it off the event loop (Router is thread-safe).
        return await asyncio.to_thread(self._select, choices, query)

    def _index_of_llm(self, choices: Sequence[ToolMetadata]) -> dict[str, int]:
        """Choice index of each LLM the router may pick among ``choices``."""
        offered = [choice.name or choice.description for choice in choices]
        known: dict[str, int] = {}
        for i, choice_name in enumerate(offered):
            name = self.choice_to_llm.get(choice_name, choice_name)
            if name not in self.router.llm_names:
                continue
            if name in known:
                raise ConfigError(f"choices {known[name]} and {i} both stand for the LLM {name!r}")
            known[name] = i
        index_of = {
            name: i for name, i in known.items() if self.allowed is None or name in self.allowed
        }
        if not index_of:
            limit = f" (allowed: {self.allowed})" if self.allowed is not None else ""
            raise ConfigError(
                f"no choice names an LLM the router can pick{limit}: the choices are named "
                f"{offered}; the router knows {self.router.llm_names} (map choice names to "
                "the router's with choice_to_llm={choice: llm})"
            )
        return index_of
