"""Dispatch: the framework-free part of calling the LLM a router picks.

Both adapters (``routerdc_langchain``, ``routerdc_llamaindex``) route a call, then hand this
module the decision and a function that calls one candidate; it tries the candidates in the
router's order, falls back on failure or timeout, and keeps the record of what happened. Neither
adapter repeats the loop, so they agree on the options, the errors and the metadata.

The metadata vocabulary (the keys of :meth:`Dispatch.metadata`), the same in both adapters:

- ``routerdc_chosen``: the LLM the router chose (first in the ranking).
- ``routerdc_answered_by``: the LLM whose answer the caller got (differs after a fallback;
  None while the call runs, and when every LLM failed).
- ``routerdc_probability``: p(chosen LLM | query).
- ``routerdc_probabilities``: p(LLM | query) for every candidate of the call.
- ``routerdc_ranking``: the candidates, best first: the fallback order.
- ``routerdc_fallbacks``: one ``{"llm": ..., "error": "Type: message"}`` per LLM that failed
  before one answered, in the order tried.
- ``routerdc_run_id``: the call's id in the routing log (``log=``), to record its outcome
  with ``log.record_outcome(run_id, score)``; present only when the call was logged.
- ``routerdc_explored``: True when exploration (``explore=``) sent the call to an LLM other
  than the router's first choice; present only when exploring.
- ``routerdc_in_distribution``: how typical of the training queries the query is, in [0, 1]
  (``core.routing.ood``), and ``routerdc_backed_off``: whether the back-off towards the best LLM
  over the training data changed the choice's probabilities; present for routers trained with a
  training-query summary.

Example:
    >>> dispatch = Dispatch(router.route(query), FallbackPolicy(timeout=30))  # doctest: +SKIP
    >>> answer = dispatch.call(lambda llm: clients[llm].complete(query))       # doctest: +SKIP
    >>> dispatch.metadata()["routerdc_answered_by"]                            # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import math
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (
    AllLLMsFailedError,
    ConfigError,
    LLMTimeoutError,
    QueryTypeError,
    RouterDCError,
)
from .base import Decision, check_epsilon

if TYPE_CHECKING:
    from ..data.log import RoutingLog

logger = logging.getLogger(__name__)

T = TypeVar("T")

CHOSEN = "routerdc_chosen"
ANSWERED_BY = "routerdc_answered_by"
PROBABILITY = "routerdc_probability"
PROBABILITIES = "routerdc_probabilities"
RANKING = "routerdc_ranking"
FALLBACKS = "routerdc_fallbacks"
RUN_ID = "routerdc_run_id"
EXPLORED = "routerdc_explored"
IN_DISTRIBUTION = "routerdc_in_distribution"
BACKED_OFF = "routerdc_backed_off"
METADATA_KEYS = (CHOSEN, ANSWERED_BY, PROBABILITY, PROBABILITIES, RANKING, FALLBACKS)

# The per-call routing options both adapters accept (as call keyword arguments in LlamaIndex,
# as ``config["configurable"]`` keys in LangChain).
ROUTING_OPTIONS = ("cost_weight", "costs", "allowed", "exclude", "explore")


# ---------------------------------------------------------------------- options


@dataclass(frozen=True)
class RoutingOptions:
    """The options of ``BaseRouter.route``, as set on an adapter or for one call.

    Attributes:
        cost_weight: w in argmax p(llm|query) - w * cost / max cost; 0 ignores cost.
        costs: dollars per call of each LLM; None keeps the prices seen in training.
        allowed: route only among these LLMs.
        exclude: never route to these LLMs.
        explore: the share of calls sent to another allowed LLM (``core.explore``); 0 never.
        log: a ``core.RoutingLog`` every decision (and who answered) is written to; not a
            per-call option.
    """

    cost_weight: float = 0.0
    costs: Mapping[str, float] | None = None
    allowed: Sequence[str] | None = None
    exclude: Sequence[str] | None = None
    explore: float = 0.0
    log: RoutingLog | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_epsilon(self.explore)
        for name in ("allowed", "exclude"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise QueryTypeError(
                    f"{name}: expected a list of LLM names, got a string {value!r}"
                )

    def overridden_by(self, options: Mapping[str, Any], *, strict: bool = False) -> RoutingOptions:
        """These options with those set (not None) in ``options`` replacing them.

        Args:
            options: per-call options, e.g. ``config["configurable"]`` or call kwargs.
            strict: raise on keys that are not routing options (LangChain's ``configurable``
                holds other runnables' keys too, so it is not strict; a call's kwargs are).

        Raises:
            ConfigError: ``strict`` and a key is not one of ``cost_weight``, ``costs``,
                ``allowed``, ``exclude``.
        """
        if strict:
            unknown = sorted(k for k in options if k not in ROUTING_OPTIONS)
            if unknown:
                raise ConfigError(
                    f"unknown routing options {unknown}; the options are {list(ROUTING_OPTIONS)}"
                )
        given = {k: options[k] for k in ROUTING_OPTIONS if options.get(k) is not None}
        return replace(self, **given) if given else self

    def group_key(self) -> str:
        """Equal for options that route the same way, so their queries share an encoder pass."""
        costs = (
            sorted(self.costs.items(), key=repr) if isinstance(self.costs, Mapping) else self.costs
        )
        return repr((self.cost_weight, costs, self.allowed, self.exclude, self.explore))

    def route_kwargs(self, llm_names: Sequence[str], usable: Sequence[str]) -> dict[str, Any]:
        """Keyword arguments of ``BaseRouter.route``; LLMs with nothing to call are excluded."""
        no_callable = [n for n in llm_names if n not in usable]
        exclude = list(self.exclude) if self.exclude is not None else None
        if no_callable:
            exclude = [*(exclude or ()), *no_callable]
        return {
            "cost_weight": self.cost_weight,
            "costs": self.costs,
            "allowed": list(self.allowed) if self.allowed is not None else None,
            "exclude": exclude,
            "explore": self.explore,
            "log": self.log,
        }


@dataclass(frozen=True)
class FallbackPolicy:
    """How one call falls back from the chosen LLM to the next-ranked ones.

    Attributes:
        max_fallbacks: how many LLMs after the chosen one may be tried.
        timeout: seconds each LLM has to answer (for a stream: to send its first chunk); one
            that takes longer counts as failed (:class:`~core.errors.LLMTimeoutError`) and the
            next is tried, whatever ``exceptions_to_handle`` says. None waits for ever.
        exceptions_to_handle: the errors that make the call try the next LLM; others
            propagate at once.
    """

    max_fallbacks: int = 2
    timeout: float | None = None
    exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        m = self.max_fallbacks
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ConfigError(f"max_fallbacks must be an integer >= 0, got {m!r}")
        t = self.timeout
        if t is not None and (
            isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0
        ):
            raise ConfigError(f"timeout must be a number of seconds > 0 or None, got {t!r}")
        handled = self.exceptions_to_handle
        if not isinstance(handled, tuple) or not all(
            isinstance(e, type) and issubclass(e, BaseException) for e in handled
        ):
            raise ConfigError(
                f"exceptions_to_handle must be a tuple of exception classes, got {handled!r}"
            )

    def order(self, decision: Decision) -> list[str]:
        """The LLMs to try, best first: the chosen one, then up to ``max_fallbacks`` more."""
        return list(decision.ranking[: 1 + self.max_fallbacks])

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The option names, the same in both adapters."""
        return tuple(f.name for f in fields(cls))


# ---------------------------------------------------------------------- one call


@dataclass
class Dispatch:
    """One routed call: the decision, the order to try the LLMs in, and what happened.

    Create one per call; it is not shared between calls or threads.

    Attributes:
        decision: the router's decision for this call.
        policy: how to fall back.
        query: the text routed on (for the record; None when not kept).
        log: the routing log the decision was written to; the LLM that answers, and the
            call's latency, are added to its row.
        answered_by: the LLM that answered; None until one has.
        failures: each LLM that failed, in the order tried, and its error.
    """

    decision: Decision
    policy: FallbackPolicy = field(default_factory=FallbackPolicy)
    query: str | None = None
    log: RoutingLog | None = None
    answered_by: str | None = None
    failures: dict[str, BaseException] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def order(self) -> list[str]:
        """The LLMs this call may try, best first."""
        return self.policy.order(self.decision)

    # ------------------------------------------------------------------ the record

    def start_metadata(self) -> dict[str, Any]:
        """What is known before any LLM runs: the choice, its probability, the ranking."""
        record: dict[str, Any] = {
            CHOSEN: self.decision.llm,
            PROBABILITY: self.decision.probability,
            RANKING: list(self.decision.ranking),
        }
        if self.decision.run_id is not None:
            record[RUN_ID] = self.decision.run_id
        if self.decision.explored:
            record[EXPLORED] = True
        if self.decision.in_distribution is not None:
            record[IN_DISTRIBUTION] = self.decision.in_distribution
            record[BACKED_OFF] = self.decision.backed_off
        return record

    def metadata(self) -> dict[str, Any]:
        """The whole record, under the keys of :data:`METADATA_KEYS`, as JSON-friendly values."""
        return {
            **self.start_metadata(),
            ANSWERED_BY: self.answered_by,
            PROBABILITIES: dict(self.decision.probabilities),
            FALLBACKS: [
                {"llm": llm, "error": f"{type(err).__name__}: {err}"}
                for llm, err in self.failures.items()
            ],
        }

    # ------------------------------------------------------------------ the fallback loops

    def call(self, attempt: Callable[[str], T]) -> T:
        """The first successful ``attempt(llm)`` in the order; each failure tries the next.

        With a timeout, each attempt runs in a worker thread (with a copy of the caller's
        context variables). An attempt that times out cannot be stopped: its thread is left to
        finish on its own (a daemon thread, so it never holds up the interpreter's exit) and its
        result is dropped.

        Raises:
            AllLLMsFailedError: every LLM tried failed; ``errors`` lists each, and the chosen
                LLM's error is its ``__cause__``.
        """
        for llm in self.order:
            try:
                result = _within(self.policy.timeout, llm, functools.partial(attempt, llm))
            except self._handled() as err:
                self._failed(llm, err)
                continue
            self._answered(llm)
            return result
        raise self._all_failed()

    async def acall(self, attempt: Callable[[str], Awaitable[T]]) -> T:
        """Async :meth:`call`; a timed-out attempt is cancelled (``asyncio.wait_for``)."""
        for llm in self.order:
            try:
                result = await _awithin(self.policy.timeout, llm, attempt(llm))
            except self._handled() as err:
                self._failed(llm, err)
                continue
            self._answered(llm)
            return result
        raise self._all_failed()

    def stream(self, start: Callable[[str], Iterator[T]]) -> Iterator[T]:
        """The stream of the first LLM that sends a first chunk, that chunk included.

        Falling back is possible only until the first chunk: once a chunk has gone to the
        caller, an error propagates as it is (the caller has part of an answer). The timeout
        bounds starting the stream and waiting for its first chunk only (in a worker thread,
        abandoned on timeout as in :meth:`call`); later chunks come in the caller's thread.
        A stream that ends without any chunk counts as an empty answer, not a failure.
        """
        for llm in self.order:
            try:
                stream, first = _within(
                    self.policy.timeout, llm, functools.partial(_open, start, llm)
                )
            except self._handled() as err:
                self._failed(llm, err)
                continue
            self._answered(llm)  # latency: to the first chunk
            return stream if first is _EMPTY else itertools.chain([first], stream)  # type: ignore[list-item]
        raise self._all_failed()

    async def astream(self, start: Callable[[str], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Async :meth:`stream`; the timeout bounds the wait for the first chunk."""
        for llm in self.order:
            stream = None
            try:
                stream = start(llm)
                first = await _awithin(self.policy.timeout, llm, _anext_or_empty(stream))
            except self._handled() as err:
                if stream is not None:
                    await _aclose(stream)
                self._failed(llm, err)
                continue
            self._answered(llm)  # latency: to the first chunk
            return _prepend(first, stream)
        raise self._all_failed()

    def _answered(self, llm: str) -> None:
        """Note who answered; with a log, add it and the latency to the call's row."""
        self.answered_by = llm
        if self.log is None or self.decision.run_id is None:
            return
        try:
            self.log.record_answer(
                self.decision.run_id,
                answered_by=llm,
                latency_s=time.perf_counter() - self.started,
            )
        except (OSError, RouterDCError, sqlite3.Error) as err:  # the answer matters more
            logger.warning("could not log who answered run %s: %s", self.decision.run_id, err)

    def _handled(self) -> tuple[type[BaseException], ...]:
        return (*self.policy.exceptions_to_handle, LLMTimeoutError)

    def _failed(self, llm: str, err: BaseException) -> None:
        self.failures[llm] = err
        logger.warning("%s failed (%s: %s); trying the next LLM", llm, type(err).__name__, err)

    def _all_failed(self) -> AllLLMsFailedError:
        error = AllLLMsFailedError(self.failures)
        error.__cause__ = next(iter(self.failures.values()), None)
        return error


# ---------------------------------------------------------------------- helpers

_EMPTY = object()  # the first "chunk" of a stream that had none


def _open(start: Callable[[str], Iterator[T]], llm: str) -> tuple[Iterator[T], object]:
    stream = iter(start(llm))
    return stream, next(stream, _EMPTY)


async def _anext_or_empty(stream: AsyncIterator[T]) -> object:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return _EMPTY


async def _prepend(first: object, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    if first is _EMPTY:
        return
    yield first  # type: ignore[misc]
    async for item in rest:
        yield item


async def _aclose(stream: AsyncIterator[Any]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


def _within(timeout: float | None, llm: str, fn: Callable[[], T]) -> T:
    """``fn()``, or LLMTimeoutError when it takes longer than ``timeout`` seconds."""
    if timeout is None:
        return fn()
    outcome: list[Any] = []
    done = threading.Event()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome.append((True, context.run(fn)))
        except BaseException as err:  # handed to the caller's thread below
            outcome.append((False, err))
        finally:
            done.set()

    threading.Thread(target=run, name=f"routerdc-call-{llm}", daemon=True).start()
    if not done.wait(timeout):
        raise LLMTimeoutError(f"{llm} did not answer within its timeout of {timeout} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


async def _awithin(timeout: float | None, llm: str, awaitable: Awaitable[T]) -> T:
    """``await awaitable``, cancelled with LLMTimeoutError after ``timeout`` seconds."""
    if timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError as err:
        raise LLMTimeoutError(f"{llm} did not answer within its timeout of {timeout} s") from err
