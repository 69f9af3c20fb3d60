"""RunnableRouter on the tiny router of conftest (math / code / chat queries), with fake models."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda
from pydantic import ValidationError

import core
from core.errors import ConfigError, QueryError, QueryTypeError, UnknownLLMError
from routerdc_langchain import AllLLMsFailedError, RunnableRouter

LLMS = ["math-llm", "code-llm", "chat-llm"]
MATH = "solve the equation integral derivative number"
CODE = "write a python function class loop compile"
CHAT = "tell me a story about friendship holiday weather"
EXPECTED = {MATH: "math-llm", CODE: "code-llm", CHAT: "chat-llm"}
TOPIC_WORDS = [MATH.split(), CODE.split(), CHAT.split()]
# Dear math, cheap rest: with a cost weight, math queries go elsewhere.
COSTS = {"math-llm": 1.0, "code-llm": 0.01, "chat-llm": 0.01}


def answer(llm: str) -> str:
    return f"{llm} says hello world"


def fake_models() -> dict[str, Runnable[Any, Any]]:
    """A streaming fake chat model per LLM that always gives the same answer."""
    return {
        llm: GenericFakeChatModel(messages=iter([AIMessage(answer(llm))] * 200)) for llm in LLMS
    }


def raising(message: str) -> Runnable[Any, Any]:
    def fail(_: Any) -> Any:
        raise RuntimeError(message)

    return RunnableLambda(fail)


class Recorder(BaseCallbackHandler):
    """Keeps every chain and LLM run it sees: name, parent, metadata, inputs, outputs, error."""

    run_inline = True

    def __init__(self) -> None:
        self.runs: dict[UUID, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def _start(self, run_id: UUID, **fields: Any) -> None:
        with self.lock:
            self.runs[run_id] = fields

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self._start(
            run_id,
            kind="chain",
            name=kw.get("name"),
            parent=kw.get("parent_run_id"),
            metadata=kw.get("metadata") or {},
            inputs=inputs,
        )

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, **kw: Any
    ) -> None:
        self._start(run_id, kind="llm", name=kw.get("name"), parent=kw.get("parent_run_id"))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self.runs[run_id]["outputs"] = outputs

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self.runs[run_id]["error"] = error

    def named(self, name: str) -> list[dict[str, Any]]:
        return [run for run in self.runs.values() if run["name"] == name]

    def id_of(self, name: str) -> UUID:
        (run_id,) = [i for i, run in self.runs.items() if run["name"] == name]
        return run_id


@pytest.fixture
def router(tiny_router: core.Router) -> RunnableRouter:
    return RunnableRouter(router=tiny_router, runnables=fake_models())


@pytest.fixture
def count_encoder_passes(tiny_router: core.Router) -> Iterator[list[int]]:
    """A list whose length is the number of forward passes of the router's model."""
    passes: list[int] = []
    handle = tiny_router.model.register_forward_hook(lambda *_: passes.append(1))
    yield passes
    handle.remove()


# ---------------------------------------------------------------------- routing


def test_invoke_answers_with_the_model_the_router_picks(router: RunnableRouter) -> None:
    for query, llm in EXPECTED.items():
        assert router.invoke(query).content == answer(llm)


def test_chain_with_prompt_and_parser_returns_the_chosen_models_text(
    router: RunnableRouter,
) -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{question}")])
    chain = prompt | router | StrOutputParser()
    assert chain.invoke({"question": CODE}) == answer("code-llm")


def test_routes_on_the_last_human_message_by_default(router: RunnableRouter) -> None:
    messages = [HumanMessage(MATH), AIMessage("Noted."), HumanMessage(CODE), AIMessage("...")]
    assert router.invoke(messages).content == answer("code-llm")


def test_query_from_chooses_the_text_to_route_on(tiny_router: core.Router) -> None:
    router = RunnableRouter(
        router=tiny_router, runnables=fake_models(), query_from=lambda ms: str(ms[0].content)
    )
    assert router.invoke([SystemMessage(CHAT), HumanMessage(MATH)]).content == answer("chat-llm")


def test_the_chosen_runnable_gets_the_input_unchanged(tiny_router: core.Router) -> None:
    echo = {llm: RunnableLambda(lambda value: value) for llm in LLMS}
    router = RunnableRouter(router=tiny_router, runnables=echo)
    messages = [HumanMessage(MATH)]
    assert router.invoke(messages) is messages
    assert router.invoke(MATH) == MATH


# ---------------------------------------------------------------------- batch


def test_batch_routes_all_inputs_in_one_encoder_pass(
    router: RunnableRouter, count_encoder_passes: list[int]
) -> None:
    queries = [MATH, CODE, CHAT, CODE, MATH]
    outputs = router.batch(queries)
    assert [o.content for o in outputs] == [answer(EXPECTED[q]) for q in queries]
    assert len(count_encoder_passes) == 1


async def test_abatch_routes_all_inputs_in_one_encoder_pass(
    router: RunnableRouter, count_encoder_passes: list[int]
) -> None:
    queries = [CHAT, CODE, MATH, CHAT]
    outputs = await router.abatch(queries)
    assert [o.content for o in outputs] == [answer(EXPECTED[q]) for q in queries]
    assert len(count_encoder_passes) == 1


def test_batch_runs_the_chosen_runnables_concurrently_up_to_max_concurrency(
    tiny_router: core.Router,
) -> None:
    lock, active, most = threading.Lock(), [0], [0]

    def slow(value: Any) -> str:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return "done"

    runnables = {llm: RunnableLambda(slow) for llm in LLMS}
    router = RunnableRouter(router=tiny_router, runnables=runnables)
    assert router.batch([MATH, CODE, CHAT] * 2, config={"max_concurrency": 2}) == ["done"] * 6
    assert most[0] == 2


async def test_abatch_runs_the_chosen_runnables_concurrently_up_to_max_concurrency(
    tiny_router: core.Router,
) -> None:
    active, most = [0], [0]

    async def slow(value: Any) -> str:
        active[0] += 1
        most[0] = max(most[0], active[0])
        await asyncio.sleep(0.02)
        active[0] -= 1
        return "done"

    runnables = {llm: RunnableLambda(lambda v: "sync", afunc=slow) for llm in LLMS}
    router = RunnableRouter(router=tiny_router, runnables=runnables)
    outputs = await router.abatch([MATH, CODE, CHAT] * 3, config={"max_concurrency": 3})
    assert outputs == ["done"] * 9
    assert most[0] == 3


def test_batch_gives_a_bad_input_its_own_error_and_routes_the_rest(router: RunnableRouter) -> None:
    outputs = router.batch([MATH, [], CHAT], return_exceptions=True)
    assert outputs[0].content == answer("math-llm")
    assert isinstance(outputs[1], QueryError)
    assert outputs[2].content == answer("chat-llm")
    with pytest.raises(QueryError):
        router.batch([MATH, []])


# ---------------------------------------------------------------------- streaming


def test_stream_passes_the_chosen_models_tokens_through(router: RunnableRouter) -> None:
    chunks = list(router.stream(CODE))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert [c.content for c in chunks] == ["code-llm", " ", "says", " ", "hello", " ", "world"]


def test_chain_stream_yields_the_tokens_as_strings(router: RunnableRouter) -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | router | StrOutputParser()
    tokens = list(chain.stream({"question": MATH}))
    assert len(tokens) > 1
    assert "".join(tokens) == answer("math-llm")


def test_stream_hands_each_chunk_over_before_the_next_one_exists(
    tiny_router: core.Router,
) -> None:
    handed_over = threading.Event()

    def tokens(inputs: Iterator[Any]) -> Iterator[str]:
        for _ in inputs:
            pass
        yield "first"
        # Fails the stream if the router held the first chunk back until the end.
        assert handed_over.wait(timeout=10), "the first chunk never reached the caller"
        yield "second"

    runnables = {llm: RunnableGenerator(tokens) for llm in LLMS}
    stream = RunnableRouter(router=tiny_router, runnables=runnables).stream(MATH)
    assert next(stream) == "first"
    handed_over.set()
    assert list(stream) == ["second"]


async def test_astream_passes_the_chosen_models_tokens_through(router: RunnableRouter) -> None:
    chunks = [c async for c in router.astream(CHAT)]
    assert [c.content for c in chunks] == ["chat-llm", " ", "says", " ", "hello", " ", "world"]


# ---------------------------------------------------------------------- fallbacks


def test_falls_back_to_the_next_llm_in_the_ranking_when_the_chosen_one_raises(
    tiny_router: core.Router,
) -> None:
    ranking = tiny_router.route(MATH).ranking
    runnables = {llm: RunnableLambda(lambda _, llm=llm: llm) for llm in LLMS}
    runnables[ranking[0]] = raising("rate limited")
    recorder = Recorder()
    router = RunnableRouter(router=tiny_router, runnables=runnables)
    assert router.invoke(MATH, config={"callbacks": [recorder]}) == ranking[1]
    (decision,) = recorder.named("RouterDC")
    assert decision["outputs"]["routerdc_answered_by"] == ranking[1]
    assert decision["outputs"]["routerdc_fallbacks"] == [
        {"llm": ranking[0], "error": "RuntimeError: rate limited"}
    ]


def test_when_all_fail_one_error_lists_each_llm_tried_and_its_error(
    tiny_router: core.Router,
) -> None:
    ranking = tiny_router.route(CODE).ranking
    runnables = {llm: raising(f"{llm} is down") for llm in LLMS}
    router = RunnableRouter(router=tiny_router, runnables=runnables, max_fallbacks=1)
    with pytest.raises(AllLLMsFailedError) as caught:
        router.invoke(CODE)
    assert list(caught.value.errors) == ranking[:2]
    for llm in ranking[:2]:
        assert f"{llm}: RuntimeError: {llm} is down" in str(caught.value)
    assert ranking[2] not in str(caught.value)


def test_max_fallbacks_zero_tries_only_the_chosen_llm(tiny_router: core.Router) -> None:
    runnables = {llm: raising("down") for llm in LLMS}
    router = RunnableRouter(router=tiny_router, runnables=runnables, max_fallbacks=0)
    with pytest.raises(AllLLMsFailedError) as caught:
        router.invoke(CHAT)
    assert list(caught.value.errors) == ["chat-llm"]


async def test_ainvoke_falls_back_too(tiny_router: core.Router) -> None:
    ranking = tiny_router.route(CHAT).ranking
    runnables = {llm: RunnableLambda(lambda _, llm=llm: llm) for llm in LLMS}
    runnables[ranking[0]] = raising("timeout")
    router = RunnableRouter(router=tiny_router, runnables=runnables)
    assert await router.ainvoke(CHAT) == ranking[1]


def test_only_the_listed_exceptions_trigger_a_fallback(tiny_router: core.Router) -> None:
    runnables: dict[str, Runnable[Any, Any]] = {llm: RunnableLambda(lambda _: "ok") for llm in LLMS}
    runnables["math-llm"] = raising("bug")
    router = RunnableRouter(
        router=tiny_router, runnables=runnables, exceptions_to_handle=(TimeoutError,)
    )
    with pytest.raises(RuntimeError, match="bug"):
        router.invoke(MATH)


def test_stream_falls_back_when_the_chosen_stream_fails_before_its_first_chunk(
    tiny_router: core.Router,
) -> None:
    ranking = tiny_router.route(MATH).ranking
    runnables = fake_models()
    runnables[ranking[0]] = raising("connection refused")
    chunks = list(RunnableRouter(router=tiny_router, runnables=runnables).stream(MATH))
    assert "".join(str(c.content) for c in chunks) == answer(ranking[1])


def test_stream_does_not_fall_back_after_the_first_chunk(tiny_router: core.Router) -> None:
    def breaks_midway(inputs: Iterator[Any]) -> Iterator[str]:
        for _ in inputs:
            pass
        yield "half an answer"
        raise RuntimeError("connection reset")

    called = []
    runnables: dict[str, Runnable[Any, Any]] = {
        llm: RunnableLambda(lambda _, llm=llm: called.append(llm)) for llm in LLMS
    }
    runnables["math-llm"] = RunnableGenerator(breaks_midway)
    stream = RunnableRouter(router=tiny_router, runnables=runnables).stream(MATH)
    assert next(stream) == "half an answer"
    with pytest.raises(RuntimeError, match="connection reset"):
        next(stream)
    assert called == []


# ---------------------------------------------------------------------- options per call


def test_configurable_cost_weight_changes_the_decision(tiny_router: core.Router) -> None:
    router = RunnableRouter(router=tiny_router, runnables=fake_models(), costs=COSTS)
    assert router.invoke(MATH).content == answer("math-llm")
    cheap = router.invoke(MATH, config={"configurable": {"cost_weight": 1.0}})
    assert cheap.content != answer("math-llm")
    # The router's own setting is untouched by the call.
    assert router.invoke(MATH).content == answer("math-llm")


def test_configurable_costs_apply_per_call(tiny_router: core.Router) -> None:
    router = RunnableRouter(router=tiny_router, runnables=fake_models(), cost_weight=1.0)
    configured = router.with_config(configurable={"costs": COSTS})
    assert configured.invoke(MATH).content != answer("math-llm")


def test_configurable_allowed_and_exclude_restrict_the_candidates(router: RunnableRouter) -> None:
    excluded = router.invoke(MATH, config={"configurable": {"exclude": ["math-llm"]}})
    assert excluded.content != answer("math-llm")
    allowed = router.invoke(MATH, config={"configurable": {"allowed": ["chat-llm"]}})
    assert allowed.content == answer("chat-llm")


def test_batch_routes_each_input_with_its_own_config(router: RunnableRouter) -> None:
    configs: list[Any] = [{}, {"configurable": {"allowed": ["code-llm"]}}]
    outputs = router.batch([MATH, MATH], config=configs)
    assert [o.content for o in outputs] == [answer("math-llm"), answer("code-llm")]


def test_config_specs_list_the_routing_options_without_conflict_in_a_chain(
    router: RunnableRouter, tiny_router: core.Router
) -> None:
    other = RunnableRouter(router=tiny_router, runnables=fake_models(), cost_weight=0.5)
    chain = router | StrOutputParser() | other
    ids = {spec.id for spec in chain.config_specs}
    assert {"cost_weight", "costs", "allowed", "exclude"} <= ids
    configurable = chain.config_schema().model_json_schema()["$defs"]["Configurable"]
    assert {"cost_weight", "costs", "allowed", "exclude"} <= set(configurable["properties"])


# ---------------------------------------------------------------------- observability


def test_decision_is_recorded_as_run_metadata_and_as_a_child_run(
    router: RunnableRouter, tiny_router: core.Router
) -> None:
    decision = tiny_router.route(CODE)
    recorder = Recorder()
    router.invoke(CODE, config={"callbacks": [recorder]})

    parent_id = recorder.id_of("RunnableRouter")
    metadata = recorder.runs[parent_id]["metadata"]
    assert metadata["routerdc_chosen"] == "code-llm"
    assert metadata["routerdc_probability"] == pytest.approx(decision.probability)
    assert metadata["routerdc_ranking"] == decision.ranking

    (child,) = recorder.named("RouterDC")
    assert child["parent"] == parent_id
    assert child["inputs"] == {"query": CODE}
    assert child["outputs"]["routerdc_chosen"] == "code-llm"
    assert child["outputs"]["routerdc_answered_by"] == "code-llm"
    assert child["outputs"]["routerdc_ranking"] == decision.ranking
    assert child["outputs"]["routerdc_fallbacks"] == []
    (model_run,) = [run for run in recorder.runs.values() if run["kind"] == "llm"]
    assert model_run["parent"] == parent_id


def test_stream_records_the_decision_too(router: RunnableRouter) -> None:
    recorder = Recorder()
    list(router.stream(CHAT, config={"callbacks": [recorder]}))
    assert (
        recorder.runs[recorder.id_of("RunnableRouter")]["metadata"]["routerdc_chosen"] == "chat-llm"
    )
    assert recorder.named("RouterDC")[0]["outputs"]["routerdc_answered_by"] == "chat-llm"


def test_routing_leaves_the_object_unchanged(router: RunnableRouter) -> None:
    before = dict(vars(router))
    router.invoke(MATH)
    router.batch([CODE, CHAT])
    assert vars(router) == before


async def test_100_concurrent_ainvoke_give_the_same_decisions_as_serial_calls(
    tiny_router: core.Router,
) -> None:
    rng = random.Random(0)
    queries = [" ".join(rng.sample(rng.choice(TOPIC_WORDS), 4)) for _ in range(100)]
    serial = [tiny_router.route(q).llm for q in queries]
    assert len(set(serial)) == 3  # the check means something only if the decisions differ

    runnables = {llm: FakeListChatModel(responses=[llm]) for llm in LLMS}
    router = RunnableRouter(router=tiny_router, runnables=runnables)
    recorder = Recorder()
    outputs = await asyncio.gather(
        *(
            router.ainvoke(q, config={"callbacks": [recorder], "metadata": {"row": i}})
            for i, q in enumerate(queries)
        )
    )
    assert [o.content for o in outputs] == serial
    recorded = {
        run["metadata"]["row"]: run["metadata"]["routerdc_chosen"]
        for run in recorder.named("RunnableRouter")
    }
    assert [recorded[i] for i in range(100)] == serial


# ---------------------------------------------------------------------- bad inputs and setup


@pytest.mark.parametrize(
    ("bad_input", "error", "message"),
    [
        ([], QueryError, "no messages"),
        ([AIMessage("hello")], QueryError, "no human message"),
        ([HumanMessage("   ")], QueryError, "empty"),
        (
            [HumanMessage(content=[{"type": "image_url", "image_url": {"url": "http://x/y.png"}}])],
            QueryError,
            "image_url",
        ),
        ([HumanMessage(content=[{"type": "text", "text": 42}])], QueryTypeError, "not a string"),
        ({"question": MATH}, QueryTypeError, "prompt template"),
        (42, QueryTypeError, "got int"),
    ],
)
def test_bad_inputs_get_clear_errors(
    router: RunnableRouter, bad_input: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        router.invoke(bad_input)


async def test_bad_inputs_get_clear_errors_when_streamed_or_awaited(router: RunnableRouter) -> None:
    with pytest.raises(QueryError, match="no messages"):
        list(router.stream([]))
    with pytest.raises(QueryError, match="no messages"):
        await router.ainvoke([])
    with pytest.raises(QueryError, match="no human message"):
        [c async for c in router.astream([SystemMessage("hi")])]


def test_a_bad_input_is_recorded_as_the_runs_error(router: RunnableRouter) -> None:
    recorder = Recorder()
    with pytest.raises(QueryError):
        router.invoke([], config={"callbacks": [recorder]})
    assert isinstance(recorder.runs[recorder.id_of("RunnableRouter")]["error"], QueryError)


def test_a_runnable_the_router_does_not_know_is_an_error(tiny_router: core.Router) -> None:
    runnables = {**fake_models(), "gpt-5": RunnableLambda(lambda _: "")}
    with pytest.raises(UnknownLLMError, match="gpt-5"):
        RunnableRouter(router=tiny_router, runnables=runnables)


def test_a_router_llm_with_no_runnable_is_an_error(tiny_router: core.Router) -> None:
    runnables = fake_models()
    del runnables["code-llm"]
    with pytest.raises(ConfigError, match="code-llm"):
        RunnableRouter(router=tiny_router, runnables=runnables)


def test_unmatched_exclude_routes_only_among_llms_with_a_runnable(
    tiny_router: core.Router,
) -> None:
    runnables = {**fake_models(), "gpt-5": RunnableLambda(lambda _: "")}
    del runnables["math-llm"]
    router = RunnableRouter(router=tiny_router, runnables=runnables, unmatched="exclude")
    assert router.invoke(MATH).content in {answer("code-llm"), answer("chat-llm")}
    with pytest.raises(ConfigError, match="no LLM left"):
        router.invoke(MATH, config={"configurable": {"allowed": ["math-llm"]}})


def test_bad_settings_fail_at_construction(tiny_router: core.Router) -> None:
    with pytest.raises(UnknownLLMError, match="gpt-5"):
        RunnableRouter(router=tiny_router, runnables=fake_models(), exclude=["gpt-5"])
    with pytest.raises(ValidationError, match="max_fallbacks"):
        RunnableRouter(router=tiny_router, runnables=fake_models(), max_fallbacks=-1)
    with pytest.raises(ValidationError, match="cost_wieght"):
        RunnableRouter(router=tiny_router, runnables=fake_models(), cost_wieght=0.5)


# ---------------------------------------------------------------------- timeouts and types


def test_a_hung_runnable_times_out_and_the_next_one_answers(tiny_router: core.Router) -> None:
    release = threading.Event()
    ranking = tiny_router.route(MATH).ranking
    runnables = fake_models()

    def hang(_: Any) -> Any:
        release.wait(30)
        raise RuntimeError("gave up")

    runnables[ranking[0]] = RunnableLambda(hang)
    router = RunnableRouter(router=tiny_router, runnables=runnables, timeout=0.2)
    try:
        reply = router.invoke(MATH)
        streamed = "".join(str(c.content) for c in router.stream(MATH))
    finally:
        release.set()
    assert reply.content == streamed == answer(ranking[1])


async def test_a_hung_runnable_times_out_in_async_calls_too(tiny_router: core.Router) -> None:
    ranking = tiny_router.route(CODE).ranking
    runnables = fake_models()

    async def hang(_: Any) -> Any:
        await asyncio.sleep(3600)

    runnables[ranking[0]] = RunnableLambda(hang)
    router = RunnableRouter(router=tiny_router, runnables=runnables, timeout=0.2)
    assert (await router.ainvoke(CODE)).content == answer(ranking[1])


def test_output_type_is_the_runnables_when_they_agree(tiny_router: core.Router) -> None:
    models = fake_models()
    typed = RunnableRouter(router=tiny_router, runnables=models)
    assert typed.OutputType == next(iter(models.values())).OutputType
    mixed = {**models, "chat-llm": RunnableLambda(lambda _: "text")}
    assert RunnableRouter(router=tiny_router, runnables=mixed).OutputType is Any


def test_timeout_must_be_positive(tiny_router: core.Router) -> None:
    with pytest.raises(ValidationError, match="timeout"):
        RunnableRouter(router=tiny_router, runnables=fake_models(), timeout=0)


def test_an_exported_onnx_router_routes_the_runnable_as_the_torch_router_does(
    tiny_router: core.Router, tmp_path: Path
) -> None:
    exported = core.load(tiny_router.export(tmp_path / "onnx"))
    assert isinstance(exported, core.OnnxRouter)
    router = RunnableRouter(router=exported, runnables=fake_models())
    for query, llm in EXPECTED.items():
        assert router.invoke(query).content == answer(llm)
