"""A LangChain chain over the recorded answers of 11 real LLMs: prompt | RunnableRouter | parser.

Trains a RouterDC router (frozen encoder) on 70% of a sample of the RouterBench prompts, then
sends the other 30% through ``prompt | RunnableRouter | StrOutputParser()``, where
each "chat model" replays what its LLM really answered. Whether an answer is right comes from
the recorded score of the LLM that answered, which the router records on each run; no answer is
parsed. Prints accuracy and dollars against always using gpt-4 and always the cheapest model.

    python examples/langchain_routerbench.py --data-dir ../shared/data/routerbench [--full]

Without ``--data-dir`` the samples are downloaded once from the RouterDC repository. By default
it uses 400 of the 2,225 prompts (under three minutes on a busy 2-core CPU; the encoded prompts
are cached under ``~/.cache/routerdc``); ``--full`` uses them all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routerbench_replay import add_run_options, prepare, summary, train_router

from routerdc_langchain import RunnableRouter


class ReplayChatModel(BaseChatModel):
    """A chat model that answers with what one LLM answered on RouterBench.

    For a prompt it has no recording of, it says so plainly rather than make something up.
    """

    llm: str
    recorded_answer: Callable[[str], str]  # prompt -> what ``llm`` answered

    @property
    def _llm_type(self) -> str:
        return "routerbench-replay"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = next(m for m in reversed(messages) if isinstance(m, HumanMessage))
        answer = AIMessage(
            content=self.recorded_answer(prompt.text),
            response_metadata={"model_name": self.llm},
        )
        return ChatResult(generations=[ChatGeneration(message=answer)])


class AnsweredBy(BaseCallbackHandler):
    """Reads, from the decision the router records on each run, which LLM answered which row."""

    def __init__(self) -> None:
        self.rows: dict[int, str] = {}
        self._row_of_run: dict[UUID, int] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        metadata = kwargs.get("metadata") or {}
        if kwargs.get("name") == "RouterDC" and "row" in metadata:
            self._row_of_run[run_id] = metadata["row"]

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id in self._row_of_run:
            self.rows[self._row_of_run.pop(run_id)] = outputs["answered_by"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_options(parser)
    parser.add_argument(
        "--cost-weight",
        type=float,
        default=0.2,
        help="also route with this cost weight, set per call (0 to skip)",
    )
    args = parser.parse_args()

    bench, train, test = prepare(args)
    print(
        f"RouterBench: {len(train)} prompts to train on, {len(test)} to route; "
        f"{len(bench.data.llm_names)} LLMs"
    )
    router = train_router(train, args)

    replays = {
        llm: ReplayChatModel(llm=llm, recorded_answer=partial(bench.answer, llm))
        for llm in router.llm_names
    }
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    chain = prompt | RunnableRouter(router=router, runnables=replays) | StrOutputParser()

    def route_test_set(**configurable: Any) -> tuple[list[str], list[str]]:
        """Answers and the LLM that gave each; the chain's batch routes all in one pass."""
        log = AnsweredBy()
        configs: list[RunnableConfig] = [
            {
                "metadata": {"row": i},
                "callbacks": [log],
                "configurable": configurable,
                "max_concurrency": 16,
            }
            for i in range(len(test))
        ]
        answers = chain.batch([{"question": q} for q in test.queries], config=configs)
        return answers, [log.rows[i] for i in range(len(test))]

    answers, answered_by = route_test_set()
    print(f"\nfirst test prompt: {test.queries[0][:70]!r}...")
    print(f"  routed to {answered_by[0]}, which answered {answers[0][:60]!r}")

    rows = summary(test, answered_by)
    if args.cost_weight > 0:
        _, cheaper = route_test_set(cost_weight=args.cost_weight)
        name = f"router, cost_weight={args.cost_weight} (per call)"
        rows[name] = summary(test, cheaper)["router"]

    print(f"\n{'':48} {'accuracy':>9} {'dollars':>9}")
    for name, row in rows.items():
        print(f"{name:48} {row['accuracy']:8.1f}% {row['dollars']:9.2f}")


if __name__ == "__main__":
    main()
