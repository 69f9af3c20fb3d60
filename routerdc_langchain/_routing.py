"""What the LangChain classes share: the text to route on, the candidates, and routing many
inputs at once. The fallback loop, the options and the decision record are
``core.routing.dispatch``'s.

Nothing here keeps state between calls: a decision lives in the call that made it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

from langchain_core.messages import BaseMessage, HumanMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue

from core import BaseRouter
from core.errors import (
    ConfigError,
    QueryError,
    QueryTypeError,
    UnknownLLMError,
)
from core.routing.dispatch import Dispatch, FallbackPolicy, RoutingOptions

logger = logging.getLogger(__name__)

QueryFrom = Callable[[list[BaseMessage]], str]
Unmatched = Literal["error", "exclude"]


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


def route_many(
    router: BaseRouter,
    values: Sequence[object],
    options: Sequence[RoutingOptions],
    query_from: QueryFrom | None,
    usable: Sequence[str],
    policy: FallbackPolicy,
    run_ids: Sequence[str] | None = None,
) -> list[Dispatch | Exception]:
    """Route each value; one ``route_batch`` (one encoder pass) per distinct set of options.

    Each routed value gets its own :class:`core.routing.dispatch.Dispatch`, ready to call the LLMs.
    ``run_ids`` (one per value): the LangChain run ids, written to the routing log as the calls'
    ids, so feedback given on a LangChain (LangSmith) run finds its routing decision.

    A value that cannot be routed gets its error in its place, so one bad input in a batch
    fails only its own call.
    """
    results: list[Dispatch | Exception | None] = [None] * len(values)
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
                [queries[i] for i in rows],
                run_ids=None if run_ids is None else [run_ids[i] for i in rows],
                **options[rows[0]].route_kwargs(router.llm_names, usable),
            )
        except Exception as err:  # bad options fail the calls that set them
            for i in rows:
                results[i] = err
            continue
        for i, decision in zip(rows, decisions, strict=True):
            results[i] = Dispatch(decision, policy, query=queries[i], log=options[i].log)
    return [r if r is not None else QueryError("not routed") for r in results]
