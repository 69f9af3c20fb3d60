"""Recorded answers of 11 real LLMs on RouterBench samples, for offline, replayable examples.

The examples build "chat models" that replay what each LLM really answered, train a router on
part of the rows, and route the rest. Data: ``--data-dir`` (here ``../shared/data/routerbench``),
or the RouterDC repository's ``datasets/routerbench_cluster/``, downloaded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import core
from core.data import RESPONSE_SUFFIX, _unwrap_prompt
from core.download import ROUTERBENCH_FILES, fetch

GPT4 = "gpt-4-1106-preview"
NOT_RECORDED = "I have no recorded answer for this prompt."


@dataclass
class RouterBench:
    """Rows of RouterBench: routing data, and each LLM's recorded answer per prompt."""

    data: core.RoutingData
    answers: dict[str, dict[str, str]]  # llm -> prompt -> recorded answer

    def split(
        self, train_fraction: float = 0.7, seed: int = 0
    ) -> tuple[core.RoutingData, core.RoutingData]:
        """(train, test) routing data, stratified by task, seeded."""
        train, test = self.data.split(1 - train_fraction, seed=seed)
        return train, test

    def answer(self, llm: str, prompt: str) -> str:
        """What ``llm`` answered to ``prompt``, or a plain statement that it is not recorded."""
        return self.answers.get(llm, {}).get(prompt, NOT_RECORDED)


def load_routerbench(data_dir: str | Path | None = None) -> RouterBench:
    """Read the RouterBench CSVs from ``data_dir``, or download them once into the cache."""
    folder = Path(data_dir) if data_dir is not None else fetch(ROUTERBENCH_FILES, "routerbench")
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"{folder}: no RouterBench CSV files")
    parts, answers = [], {}
    for path in files:
        frame = pd.read_csv(path)
        data = core.RoutingData.from_pandas(frame, task=path.stem, source=str(path))
        parts.append(data)
        for name in data.llm_names:
            column = f"{name}{RESPONSE_SUFFIX}"
            if column not in frame:
                continue
            for prompt, response in zip(frame["prompt"], frame[column], strict=False):
                text = _unwrap_prompt(prompt)
                if isinstance(text, str) and isinstance(response, str):
                    answers.setdefault(name, {})[text] = response
    return RouterBench(data=core.RoutingData.concat(parts), answers=answers)


def summary(test: core.RoutingData, chosen: list[str]) -> dict[str, dict[str, float]]:
    """Accuracy (%) and dollars spent by the router, by always using gpt-4, and by the cheapest."""
    if test.costs is None:
        raise ValueError("RouterBench rows carry costs; these have none")
    columns = {name: i for i, name in enumerate(test.llm_names)}
    rows = np.arange(len(test))
    mean_cost = np.nanmean(test.costs, axis=0)
    cheapest = test.llm_names[int(np.argmin(mean_cost))]

    def row(picks: np.ndarray) -> dict[str, float]:
        return {
            "accuracy": float(100 * np.nanmean(test.scores[rows, picks])),
            "dollars": float(np.nansum(test.costs[rows, picks])),
        }

    return {
        "router": row(np.array([columns[c] for c in chosen])),
        f"always {GPT4}": row(np.full(len(test), columns[GPT4])),
        f"always {cheapest} (cheapest)": row(np.full(len(test), columns[cheapest])),
    }
