"""A RunnableRouter given a router with an LLM added by ``add_llm`` routes to that LLM."""

from __future__ import annotations

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

import core
from routerdc_langchain import RunnableRouter
from tests.conftest import toy_records

CHAT = "tell me a story about friendship holiday weather"
MATH = "solve the equation integral derivative number"


def test_runnable_router_sends_queries_to_the_llm_added_to_its_router(
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
    models = {
        llm: GenericFakeChatModel(messages=iter([AIMessage(f"{llm} answers")] * 5))
        for llm in router.config.llm_names
    }
    runnable = RunnableRouter(router=router, runnables=models)
    assert runnable.invoke(CHAT).content == "new-llm answers"
    assert runnable.invoke(MATH).content == "math-llm answers"
