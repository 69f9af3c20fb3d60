"""Recorded answers of 11 real LLMs on RouterBench samples, for offline, replayable examples.

The examples build "chat models" that replay what each LLM really answered, train a router on
part of the rows, and route the rest. Data: ``--data-dir`` (here ``../shared/data/routerbench``),
or the RouterDC repository's ``datasets/routerbench_cluster/``, downloaded once.

By default an example runs on a stratified sample of ``--sample`` prompts, so it takes a few
minutes at most on a busy 2-core CPU; ``--full`` uses all 2,225. The encoded training prompts
are kept in ``~/.cache/routerdc/`` (``$ROUTERDC_CACHE``), so a second run trains in seconds.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import core
from core.data.dataset import RESPONSE_SUFFIX, _unwrap_prompt
from core.data.download import ROUTERBENCH_FILES, cache_dir, fetch
from core.training.trainer import EncodingCache

GPT4 = "gpt-4-1106-preview"
NOT_RECORDED = "I have no recorded answer for this prompt."
DEFAULT_SAMPLE = 400


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

    def sample(self, size: int, seed: int = 0) -> RouterBench:
        """``size`` of the rows, stratified by task, seeded (all of them when fewer)."""
        if size >= len(self.data):
            return self
        _, rows = self.data.split_indices(size / len(self.data), seed=seed)
        return RouterBench(data=self.data.subset(rows), answers=self.answers)

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


def add_run_options(parser: argparse.ArgumentParser, *, max_length: int = 128) -> None:
    """The options both examples share: data, sample size, training and the encoding cache."""
    parser.add_argument("--data-dir", default=None, help="folder of the RouterBench CSV files")
    parser.add_argument(
        "--sample",
        type=int,
        default=DEFAULT_SAMPLE,
        help=f"prompts to use, stratified by task (default {DEFAULT_SAMPLE})",
    )
    parser.add_argument("--full", action="store_true", help="use all 2,225 prompts")
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument(
        "--max-length",
        type=int,
        default=max_length,
        help="tokens the router reads: the end of a prompt, where its question is",
    )
    parser.add_argument(
        "--encoding-cache",
        type=Path,
        default=cache_dir() / "encodings-routerbench-examples.safetensors",
        help="keep the encoded training prompts here across runs",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the work is small, and on a busy CPU torch's worker "
        "threads spin-wait; routing one prompt took 0.9 s with one thread, 6.4 s with two)",
    )
    parser.add_argument("--seed", type=int, default=0)


def prepare(args: argparse.Namespace) -> tuple[RouterBench, core.RoutingData, core.RoutingData]:
    """The RouterBench rows (sampled unless ``--full``) and their (train, test) split."""
    torch.set_num_threads(args.threads)
    bench = load_routerbench(args.data_dir)
    if not args.full:
        bench = bench.sample(args.sample, seed=args.seed)
    train, test = bench.split(args.train_fraction, seed=args.seed)
    return bench, train, test


def train_router(train: core.RoutingData, args: argparse.Namespace, **options: Any) -> core.Router:
    """A frozen-encoder router, silent, its encoded prompts kept in ``--encoding-cache``."""
    path: Path = args.encoding_cache
    cache = EncodingCache.load(path) if path.is_file() else EncodingCache()
    router = core.fit(
        train,
        train_encoder=False,
        projection=True,
        head_learning_rate=1e-3,
        steps=args.steps,
        max_length=args.max_length,
        seed=args.seed,
        progress=False,
        encoding_cache=cache,
        **options,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    cache.save(path)
    return router
