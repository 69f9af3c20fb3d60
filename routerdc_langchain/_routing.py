"""What RunnableRouter and ChatRouterDC share: the text to route on, the routing options, the
fallback loop, and the record of a decision that callbacks and response metadata carry.

Nothing here keeps state between calls: a decision lives in the call that made it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from langchain_core.messages import BaseMessage, HumanMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue

from core import BaseRouter, Decision
from core.errors import (
    AllLLMsFailedError,
    ConfigError,
    QueryError,
    QueryTypeError,
    UnknownLLMError,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

QueryFrom = Callable[[list[BaseMessage]], str]
Unmatched = Literal["error", "exclude"]
# Keys of ``config["configurable"]`` that RunnableRouter reads per call.
ROUTING_OPTIONS = ("cost_weight", "costs", "allowed", "exclude")


# ---------------------------------------------------------------------- the text to route on


def to_messages(value: object) -> list[BaseMessage]:
    """The chat messages of anything a chat model accepts: a string, messages, a PromptValue."""
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    if isinstance(value, Sequence):
        try:
            return convert_to_messages(value)
        except (ValueError, TypeError, KeyError, NotImplementedError) as err:
            raise QueryTypeError(f"the input is not a list of chat messages: {err}") from err
    hint = (
        "; put a prompt template before the router to turn a dict into messages"
        if isinstance(value, Mapping)
        else ""
    )
    raise QueryTypeError(
        f"expected a string, a list of messages or a PromptValue, got {type(value).__name__}{hint}"
    )


def text_of(message: BaseMessage, where: str) -> str:
    """The text of a message: its string content, or its string and text blocks joined."""
    content = message.content
    if isinstance(content, str):
        return content
    texts, other_kinds = [], []
    for i, block in enumerate(content):
        if isinstance(block, str):
            texts.append(block)
        elif isinstance(block, Mapping):
            if block.get("type") == "text":
                text = block.get("text")
                if not isinstance(text, str):
                    raise QueryTypeError(
                        f"{where}: content block {i} is a text block whose text is a "
                        f"{type(text).__name__}, not a string"
                    )
                texts.append(text)
            else:
                other_kinds.append(str(block.get("type")))
        else:
            raise QueryTypeError(
                f"{where}: content block {i} is a {type(block).__name__}; "
                "expected a string or a dict"
            )
    if not "".join(texts).strip() and other_kinds:
        raise QueryError(
            f"{where} has no text to route on, only {other_kinds} blocks; "
            "pass query_from=... to choose the text"
        )
    return "".join(texts)


def query_of(value: object, query_from: QueryFrom | None) -> str:
    """The text to route ``value`` on: the last human message, or what ``query_from`` returns."""
    messages = to_messages(value)
    if not messages:
        raise QueryError("the input has no messages to route on")
    if query_from is not None:
        query = query_from(messages)
        if not isinstance(query, str):
            raise QueryTypeError(f"query_from returned a {type(query).__name__}, not a string")
        if not query.strip():
            raise QueryError("query_from returned an empty string")
        return query
    human = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
    if human is None:
        kinds = sorted({m.type for m in messages})
        raise QueryError(
            f"no human message to route on (the input has {kinds} messages); "
            "pass query_from=... to choose the text"
        )
    query = text_of(human, "the last human message")
    if not query.strip():
        raise QueryError("the last human message is empty; there is no text to route on")
    return query


# ---------------------------------------------------------------------- candidates and options


def usable_llms(
    router: BaseRouter, names: Iterable[str], unmatched: Unmatched, what: str
) -> list[str]:
    """Router LLMs that have a runnable, in the router's order; mismatches raise unless excluded."""
    known = router.llm_names
    given = list(names)
    unknown = [n for n in given if n not in known]
    missing = [n for n in known if n not in given]
    usable = [n for n in known if n in given]
    if unmatched not in ("error", "exclude"):
        raise ConfigError(f"unmatched must be 'error' or 'exclude', got {unmatched!r}")
    if unmatched == "error" and unknown:
        raise UnknownLLMError(
            f"{what}: {unknown} are not LLMs the router knows; it knows {known} "
            "(pass unmatched='exclude' to ignore them)"
        )
    if unmatched == "error" and missing:
        raise ConfigError(
            f"{what}: nothing to call for the router's LLMs {missing}; add them, "
            f"or pass unmatched='exclude' to route only among {usable}"
        )
    if not usable:
        raise ConfigError(f"{what}: none of {given} is an LLM the router knows ({known})")
    if unknown or missing:
        logger.info("routing among %s (ignored: %s; no runnable: %s)", usable, unknown, missing)
    return usable


@dataclass(frozen=True)
class RoutingOptions:
    """The options of ``Router.route``, as set on an adapter or for one call."""

    cost_weight: float = 0.0
    costs: Mapping[str, float] | None = None
    allowed: Sequence[str] | None = None
    exclude: Sequence[str] | None = None

    def overridden_by(self, configurable: Mapping[str, Any]) -> RoutingOptions:
        """These options with those set (not None) in ``config["configurable"]`` replacing them."""
        given = {k: configurable[k] for k in ROUTING_OPTIONS if configurable.get(k) is not None}
        return RoutingOptions(**{**self.__dict__, **given})

    def group_key(self) -> str:
        """Equal for options that route the same way, so their queries share an encoder pass."""
        costs = (
            sorted(self.costs.items(), key=repr) if isinstance(self.costs, Mapping) else self.costs
        )
        return repr((self.cost_weight, costs, self.allowed, self.exclude))

    def route_kwargs(self, router: BaseRouter, usable: Sequence[str]) -> dict[str, Any]:
        """Keyword arguments of ``Router.route_batch``; LLMs with nothing to call are excluded."""
        no_runnable = [n for n in router.llm_names if n not in usable]
        exclude = self.exclude
        if no_runnable and not isinstance(exclude, str):  # a string is left for core to reject
            exclude = [*(exclude or ()), *no_runnable]
        return {
            "cost_weight": self.cost_weight,
            "costs": self.costs,
            "allowed": self.allowed,
            "exclude": exclude,
        }


@dataclass(frozen=True)
class Routed:
    """One call's routing: the text routed on and the router's decision."""

    query: str
    decision: Decision

    def order(self, max_fallbacks: int) -> list[str]:
        """The LLMs to try, best first: the chosen one, then up to ``max_fallbacks`` more."""
        return self.decision.ranking[: 1 + max_fallbacks]


def route_many(
    router: BaseRouter,
    values: Sequence[object],
    options: Sequence[RoutingOptions],
    query_from: QueryFrom | None,
    usable: Sequence[str],
) -> list[Routed | Exception]:
    """Route each value; one ``route_batch`` (one encoder pass) per distinct set of options.

    A value that cannot be routed gets its error in its place, so one bad input in a batch
    fails only its own call.
    """
    results: list[Routed | Exception | None] = [None] * len(values)
    queries: dict[int, str] = {}
    for i, value in enumerate(values):
        try:
            queries[i] = query_of(value, query_from)
        except Exception as err:  # the error belongs to this input alone
            results[i] = err
    groups: dict[str, list[int]] = {}
    for i in queries:
        groups.setdefault(options[i].group_key(), []).append(i)
    for rows in groups.values():
        try:
            decisions = router.route_batch(
                [queries[i] for i in rows], **options[rows[0]].route_kwargs(router, usable)
            )
        except Exception as err:  # bad options fail the calls that set them
            for i in rows:
                results[i] = err
            continue
        for i, decision in zip(rows, decisions, strict=True):
            results[i] = Routed(queries[i], decision)
    return [r if r is not None else QueryError("not routed") for r in results]


# ---------------------------------------------------------------------- records


def decision_metadata(decision: Decision) -> dict[str, Any]:
    """Run metadata known when the run starts: the chosen LLM, its probability, the ranking."""
    return {
        "routerdc_llm": decision.llm,
        "routerdc_probability": decision.probability,
        "routerdc_ranking": list(decision.ranking),
    }


def decision_record(
    decision: Decision, answered_by: str | None, errors: Mapping[str, BaseException]
) -> dict[str, Any]:
    """The whole decision of one call, fallbacks included, as plain JSON-friendly values."""
    return {
        "llm": decision.llm,
        "probability": decision.probability,
        "ranking": list(decision.ranking),
        "probabilities": dict(decision.probabilities),
        "answered_by": answered_by,
        "fallbacks": [
            {"llm": llm, "error": f"{type(err).__name__}: {err}"} for llm, err in errors.items()
        ],
    }


# ---------------------------------------------------------------------- fallbacks


def _note_failure(llm: str, err: BaseException, errors: dict[str, BaseException]) -> None:
    errors[llm] = err
    logger.warning("%s failed (%s: %s); trying the next LLM", llm, type(err).__name__, err)


def call_in_order(
    order: Sequence[str],
    call: Callable[[str], T],
    handled: tuple[type[BaseException], ...],
    errors: dict[str, BaseException],
) -> tuple[T, str]:
    """The first successful ``call(llm)`` and its LLM; failures are added to ``errors``."""
    for llm in order:
        try:
            return call(llm), llm
        except handled as err:
            _note_failure(llm, err, errors)
    raise AllLLMsFailedError(errors) from errors[order[-1]]


async def acall_in_order(
    order: Sequence[str],
    call: Callable[[str], Awaitable[T]],
    handled: tuple[type[BaseException], ...],
    errors: dict[str, BaseException],
) -> tuple[T, str]:
    """Async :func:`call_in_order`."""
    for llm in order:
        try:
            return await call(llm), llm
        except handled as err:
            _note_failure(llm, err, errors)
    raise AllLLMsFailedError(errors) from errors[order[-1]]


def open_in_order(
    order: Sequence[str],
    start: Callable[[str], Iterator[T]],
    handled: tuple[type[BaseException], ...],
    errors: dict[str, BaseException],
) -> tuple[str, Iterator[T]]:
    """The first LLM whose stream yields a first chunk, and that whole stream.

    Falling back is possible only until a chunk has gone out; an error after it propagates.
    """
    for llm in order:
        try:
            stream = start(llm)
            first = next(stream)
        except StopIteration:
            return llm, iter(())
        except handled as err:
            _note_failure(llm, err, errors)
            continue
        return llm, itertools.chain([first], stream)
    raise AllLLMsFailedError(errors) from errors[order[-1]]


async def aopen_in_order(
    order: Sequence[str],
    start: Callable[[str], AsyncIterator[T]],
    handled: tuple[type[BaseException], ...],
    errors: dict[str, BaseException],
) -> tuple[str, AsyncIterator[T]]:
    """Async :func:`open_in_order`."""
    for llm in order:
        try:
            stream = start(llm)
            first = await stream.__anext__()
        except StopAsyncIteration:
            return llm, _aprepend([], None)
        except handled as err:
            _note_failure(llm, err, errors)
            continue
        return llm, _aprepend([first], stream)
    raise AllLLMsFailedError(errors) from errors[order[-1]]


async def _aprepend(head: list[T], rest: AsyncIterator[T] | None) -> AsyncIterator[T]:
    for item in head:
        yield item
    if rest is not None:
        async for item in rest:
            yield item
