"""A RouterDCLLM given a router with an LLM added by ``add_llm`` answers through that LLM."""

from __future__ import annotations

from llama_index.core.llms import MockLLM

import core
from routerdc_llamaindex import RouterDCLLM
from tests.conftest import toy_records

CHAT = "tell me a story about friendship holiday weather"
MATH = "solve the equation integral derivative"


def test_routerdc_llm_answers_through_the_llm_added_to_its_router(
    tiny_router: core.Router,
) -> None:
    # chat-llm retired, and a new chat model added in its place from 24 scored queries.
    records = [
        {**r, "scores": {("new-llm" if k == "chat-llm" else k): v for k, v in r["scores"].items()}}
        for r in toy_records(n_per_topic=8, seed=1)
    ]
    router = tiny_router.remove_llm("chat-llm").add_llm(
        "new-llm", core.RoutingData.from_records(records)
    )
    # Each candidate answers with a different number of words, so an answer names its source.
    words = {"math-llm": 1, "code-llm": 2, "new-llm": 4}
    llm = RouterDCLLM(router=router, llms={n: MockLLM(max_tokens=w) for n, w in words.items()})
    assert len(llm.complete(CHAT).text.split()) == words["new-llm"]
    assert len(llm.complete(MATH).text.split()) == words["math-llm"]
