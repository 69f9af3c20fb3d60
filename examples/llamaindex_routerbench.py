"""RouterDCLLM on real recorded answers: route RouterBench prompts among 11 LLMs, offline.

Each candidate is a small LlamaIndex ``CustomLLM`` that replays what one real LLM answered to a
RouterBench prompt. A router trained on part of a sample of the rows (frozen MiniLM encoder, so
it trains in seconds on a CPU) picks the LLM for each of the other prompts through
``RouterDCLLM``; the
response names the LLM that answered, and that LLM's recorded score says whether it was right.
The router reads the last ``--max-length`` tokens of a prompt: the question itself, since the
few-shot preamble before it is the same for every prompt of a task.
The run prints accuracy and dollars against always using gpt-4 and always using the cheapest LLM,
for plain routing and for cost-aware routing.

Run from the repository root:

    python examples/llamaindex_routerbench.py --data-dir ../shared/data/routerbench [--full]

By default it uses 400 of the 2,225 prompts (under three minutes on a busy 2-core CPU; the
encoded prompts are cached under ``~/.cache/routerdc``); ``--full`` uses them all.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from routerbench_replay import (
    NOT_RECORDED,
    RouterBench,
    add_run_options,
    prepare,
    summary,
    train_router,
)

from routerdc_llamaindex import RouterDCLLM


class ReplayLLM(CustomLLM):
    """Answers a RouterBench prompt with what ``llm_name`` really answered to it.

    A prompt it has no recording for gets a plain statement saying so, never a made-up answer.
    """

    llm_name: str
    bench: RouterBench = Field(exclude=True)

    @classmethod
    def class_name(cls) -> str:
        return "ReplayLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.llm_name, context_window=8192, num_output=512)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.bench.answer(self.llm_name, prompt))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        text = self.bench.answer(self.llm_name, prompt)

        def stream() -> CompletionResponseGen:
            yield CompletionResponse(text=text, delta=text)

        return stream()


def route_all(llm: RouterDCLLM, prompts: list[str]) -> tuple[list[str], int]:
    """The LLM that answered each prompt, and how many answers were not recorded."""
    answered_by, not_recorded = [], 0
    for prompt in prompts:
        response = llm.complete(prompt)
        answered_by.append(response.additional_kwargs["routerdc_llm"])
        not_recorded += response.text == NOT_RECORDED
    return answered_by, not_recorded


def print_table(title: str, rows: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'':<52} {'accuracy':>9} {'dollars':>9}")
    for name, row in rows.items():
        print(f"  {name:<52} {row['accuracy']:>8.1f}% {row['dollars']:>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser)
    parser.add_argument("--cost-weight", type=float, default=0.3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    bench, train, test = prepare(args)
    print(f"{len(bench.data)} RouterBench prompts, {len(bench.data.llm_names)} LLMs")
    print(f"training on {len(train)}, routing {len(test)} through RouterDCLLM")
    router = train_router(train, args)
    replay = {name: ReplayLLM(llm_name=name, bench=bench) for name in router.llm_names}
    prompts = list(test.queries)

    example = RouterDCLLM(router=router, llms=replay).complete(prompts[0])
    print(f"\nprompt: {prompts[0][:100]!r}...")
    print(f"answered by {example.additional_kwargs['routerdc_llm']}: {example.text[:100]!r}...")

    for title, cost_weight in (
        ("RouterDCLLM", 0.0),
        (f"RouterDCLLM, cost_weight={args.cost_weight}", args.cost_weight),
    ):
        llm = RouterDCLLM(router=router, llms=replay, cost_weight=cost_weight)
        answered_by, not_recorded = route_all(llm, prompts)
        print_table(f"{title} on {len(prompts)} held-out prompts", summary(test, answered_by))
        used = {name: answered_by.count(name) for name in sorted(set(answered_by))}
        print(f"  answered by: {used}")
        if not_recorded:
            print(f"  {not_recorded} prompts had no recorded answer from the LLM picked")


if __name__ == "__main__":
    main()
