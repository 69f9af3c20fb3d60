"""core.routing.dispatch: candidate order, fallback loops (sync, async, streams), timeouts."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from core.errors import AllLLMsFailedError, ConfigError, LLMTimeoutError, QueryTypeError
from core.routing.base import Decision
from core.routing.dispatch import (
    METADATA_KEYS,
    Dispatch,
    FallbackPolicy,
    RoutingOptions,
)

DECISION = Decision(llm="a", probabilities={"a": 0.6, "b": 0.3, "c": 0.1}, ranking=["a", "b", "c"])


def failing(message: str) -> Exception:
    return ConnectionError(message)


def test_order_is_the_ranking_cut_after_max_fallbacks() -> None:
    assert FallbackPolicy().order(DECISION) == ["a", "b", "c"]
    assert FallbackPolicy(max_fallbacks=1).order(DECISION) == ["a", "b"]
    assert FallbackPolicy(max_fallbacks=0).order(DECISION) == ["a"]


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_fallbacks", -1), ("max_fallbacks", 1.5), ("timeout", 0), ("timeout", float("nan"))],
)
def test_bad_policy_values_are_refused_naming_the_option(option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=option):
        FallbackPolicy(**{option: value})  # type: ignore[arg-type]


def test_exceptions_to_handle_must_be_exception_classes() -> None:
    with pytest.raises(ConfigError, match="exceptions_to_handle"):
        FallbackPolicy(exceptions_to_handle=(ValueError, "oops"))  # type: ignore[arg-type]


def test_call_answers_with_the_chosen_llm_and_records_it() -> None:
    dispatch = Dispatch(DECISION)
    assert dispatch.call(lambda llm: f"{llm} answers") == "a answers"
    record = dispatch.metadata()
    assert set(record) == set(METADATA_KEYS)
    assert record["routerdc_chosen"] == record["routerdc_answered_by"] == "a"
    assert record["routerdc_probability"] == pytest.approx(0.6)
    assert record["routerdc_ranking"] == ["a", "b", "c"]
    assert record["routerdc_fallbacks"] == []


def test_call_falls_back_to_the_next_llm_when_the_chosen_one_raises() -> None:
    def attempt(llm: str) -> str:
        if llm == "a":
            raise failing("provider is down")
        return llm

    dispatch = Dispatch(DECISION)
    assert dispatch.call(attempt) == "b"
    assert dispatch.metadata()["routerdc_answered_by"] == "b"
    assert dispatch.metadata()["routerdc_fallbacks"] == [
        {"llm": "a", "error": "ConnectionError: provider is down"}
    ]


def test_when_every_llm_fails_one_error_lists_each_and_chains_the_chosen_ones() -> None:
    def attempt(llm: str) -> str:
        raise failing(f"{llm} is down")

    with pytest.raises(AllLLMsFailedError) as caught:
        Dispatch(DECISION, FallbackPolicy(max_fallbacks=1)).call(attempt)
    assert list(caught.value.errors) == ["a", "b"]
    assert str(caught.value.__cause__) == "a is down"
    assert "b: ConnectionError: b is down" in str(caught.value)


def test_errors_not_listed_propagate_without_a_fallback() -> None:
    def attempt(llm: str) -> str:
        raise KeyError(llm)

    with pytest.raises(KeyError):
        Dispatch(DECISION, FallbackPolicy(exceptions_to_handle=(ConnectionError,))).call(attempt)


def test_a_hung_llm_times_out_and_the_next_one_answers() -> None:
    release = threading.Event()

    def attempt(llm: str) -> str:
        if llm == "a":
            release.wait(30)  # hangs until the test ends
        return llm

    dispatch = Dispatch(DECISION, FallbackPolicy(timeout=0.05))
    try:
        assert dispatch.call(attempt) == "b"
    finally:
        release.set()
    assert isinstance(dispatch.failures["a"], LLMTimeoutError)


def test_a_timeout_falls_back_even_when_timeouts_are_not_listed() -> None:
    release = threading.Event()

    def attempt(llm: str) -> str:
        if llm == "a":
            release.wait(30)
        return llm

    policy = FallbackPolicy(timeout=0.05, exceptions_to_handle=(ConnectionError,))
    try:
        assert Dispatch(DECISION, policy).call(attempt) == "b"
    finally:
        release.set()


def test_the_worker_thread_sees_the_callers_context_variables() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("the caller's")
    assert Dispatch(DECISION, FallbackPolicy(timeout=5)).call(lambda _: var.get()) == "the caller's"


def test_an_error_within_the_timeout_still_falls_back() -> None:
    def attempt(llm: str) -> str:
        if llm == "a":
            raise failing("down")
        return llm

    assert Dispatch(DECISION, FallbackPolicy(timeout=5)).call(attempt) == "b"


async def test_acall_falls_back_on_errors_and_on_timeouts() -> None:
    async def attempt(llm: str) -> str:
        if llm == "a":
            await asyncio.sleep(3600)
        if llm == "b":
            raise failing("down")
        return llm

    dispatch = Dispatch(DECISION, FallbackPolicy(timeout=0.05))
    assert await dispatch.acall(attempt) == "c"
    assert isinstance(dispatch.failures["a"], LLMTimeoutError)
    assert [f["llm"] for f in dispatch.metadata()["routerdc_fallbacks"]] == ["a", "b"]


async def test_acall_when_every_llm_fails_raises_one_error() -> None:
    async def attempt(llm: str) -> str:
        raise failing(llm)

    with pytest.raises(AllLLMsFailedError) as caught:
        await Dispatch(DECISION).acall(attempt)
    assert list(caught.value.errors) == ["a", "b", "c"]


def test_stream_falls_back_before_the_first_chunk_only() -> None:
    def start(llm: str) -> Iterator[str]:
        if llm == "a":
            raise failing("down")
        yield f"{llm}1"
        raise failing("mid-stream")

    dispatch = Dispatch(DECISION)
    stream = dispatch.stream(start)
    assert next(stream) == "b1"
    assert dispatch.answered_by == "b"
    with pytest.raises(ConnectionError, match="mid-stream"):
        next(stream)


def test_stream_timeout_bounds_the_first_chunk() -> None:
    release = threading.Event()

    def start(llm: str) -> Iterator[str]:
        if llm == "a":
            release.wait(30)
        yield from (f"{llm}1", f"{llm}2")

    try:
        chunks = list(Dispatch(DECISION, FallbackPolicy(timeout=0.05)).stream(start))
    finally:
        release.set()
    assert chunks == ["b1", "b2"]


def test_a_stream_without_chunks_is_an_empty_answer() -> None:
    dispatch = Dispatch(DECISION)
    assert list(dispatch.stream(lambda llm: iter(()))) == []
    assert dispatch.answered_by == "a"


async def test_astream_falls_back_on_errors_and_timeouts_before_the_first_chunk() -> None:
    async def start(llm: str) -> AsyncIterator[str]:
        if llm == "a":
            await asyncio.sleep(3600)
        if llm == "b":
            raise failing("down")
        yield f"{llm}1"
        yield f"{llm}2"

    dispatch = Dispatch(DECISION, FallbackPolicy(timeout=0.05))
    chunks = [chunk async for chunk in await dispatch.astream(start)]
    assert chunks == ["c1", "c2"]
    assert list(dispatch.failures) == ["a", "b"]


async def test_astream_when_every_llm_fails_raises_one_error() -> None:
    async def start(llm: str) -> AsyncIterator[str]:
        raise failing(llm)
        yield ""  # an async generator

    with pytest.raises(AllLLMsFailedError):
        await Dispatch(DECISION).astream(start)


def test_routing_options_take_per_call_values_and_refuse_unknown_ones() -> None:
    options = RoutingOptions(cost_weight=0.1, exclude=["c"])
    call = options.overridden_by({"cost_weight": 0.5, "allowed": None}, strict=True)
    assert call == RoutingOptions(cost_weight=0.5, exclude=["c"])
    with pytest.raises(ConfigError, match="temperature"):
        options.overridden_by({"temperature": 0.2}, strict=True)
    assert options.overridden_by({"temperature": 0.2}) == options  # LangChain's configurable


def test_routing_options_refuse_a_string_for_a_list_of_names() -> None:
    with pytest.raises(QueryTypeError, match="exclude"):
        RoutingOptions(exclude="a")  # type: ignore[arg-type]


def test_route_kwargs_exclude_llms_with_nothing_to_call() -> None:
    kwargs = RoutingOptions(exclude=["a"]).route_kwargs(["a", "b", "c"], usable=["a", "b"])
    assert kwargs["exclude"] == ["a", "c"]
