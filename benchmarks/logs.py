"""Training data as app logs have it: no task labels, most scores missing.

    python -m benchmarks.logs [--seeds 0 1 2] [--hidden 0 0.5 0.7 0.9] [--encoding-cache FILE]

An app's log holds user queries, untagged, each answered by one or two LLMs. This benchmark
trains the default CPU recipe (frozen encoder) on the paper's five ``*_train.json`` files made
to look like that: a share of the scores hidden at random, independently per query and LLM
(one kept at least), with and without the files' task labels. Each router is scored on the
five ``*_test.json`` files as ``routerdc eval`` scores it (accuracy per file, then their mean),
beside the best single LLM. Each row is the mean over seeds (one seed draws both the hidden
scores and the training run) with its standard deviation. Writes
``benchmarks/results/logs.json`` and ``logs.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import core
from benchmarks.common import (
    PAPER_DATA,
    add_cache_option,
    open_cache,
    provenance,
    require_data,
    write_results,
)
from benchmarks.tuning import read_train_files
from core.training.metrics import score_choices
from core.training.trainer import EncodingCache, fit

logger = logging.getLogger("benchmarks.logs")

HIDDEN_SHARES = (0.0, 0.5, 0.7, 0.9)
SEEDS = (0, 1, 2)


def hide_scores(data: core.RoutingData, share: float, seed: int) -> core.RoutingData:
    """``data`` with each score hidden (NaN) with probability ``share``, one per query kept.

    Draws with ``random.Random(seed)``, query by query and LLM by LLM in column order; a query
    left with no score keeps one LLM's, drawn at random.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must lie in [0, 1), got {share!r}")
    rng = random.Random(seed)
    scores = data.scores.copy()
    for row in range(len(data)):
        known = np.flatnonzero(~np.isnan(scores[row]))
        hidden = [column for column in known if rng.random() < share]
        if len(hidden) == len(known):
            hidden.remove(rng.choice(hidden))
        scores[row, hidden] = np.nan
    return dataclasses.replace(data, scores=scores)


def read_test_files(folder: Path) -> dict[str, core.RoutingData]:
    """The ``*_test.json`` files by name, as ``routerdc eval`` reads them."""
    return {p.name: core.RoutingData.from_file(p) for p in sorted(folder.glob("*_test.json"))}


def evaluate_frozen(
    router: core.Router, tests: Mapping[str, core.RoutingData], cache: EncodingCache
) -> dict[str, Any]:
    """``core.training.metrics.evaluate`` for a router with an untrained encoder, from the cache.

    The router's encoder is the one the cache holds vectors of, so its head on the cached
    vectors gives the logits ``router.route_batch`` would compute, without encoding again.
    """
    chosen = {}
    for name, data in tests.items():
        with torch.inference_mode():
            vectors = cache.encode(router, data.queries, core.TrainConfig())
            logits = router.model.head(vectors.to(router.device))[0].cpu().numpy()
        picked = [router.config.llm_names[i] for i in logits.argmax(axis=1)]
        chosen[name] = [data.llm_names.index(llm) for llm in picked]
    return score_choices(tests, chosen)


def run_condition(
    train: core.RoutingData,
    tests: Mapping[str, core.RoutingData],
    cache: EncodingCache,
    *,
    share: float,
    task_labels: bool,
    seed: int,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the default recipe on ``train`` with ``share`` of its scores hidden; score it."""
    data = hide_scores(train, share, seed)
    if not task_labels:
        data = dataclasses.replace(data, tasks=None)
    router = fit(
        data,
        train_encoder=False,
        seed=seed,
        encoding_cache=cache,
        progress=False,
        **dict(overrides or {}),
    )
    results = evaluate_frozen(router, tests, cache)
    return {
        "average": results["average"]["router"],
        "files": {name: row["router"] for name, row in results["files"].items()},
        "best_single": {
            "average": results["average"]["best_single"],
            "llm": results["average"]["best_single_llm"],
            "files": {
                name: row["llms"][results["average"]["best_single_llm"]]
                for name, row in results["files"].items()
            },
        },
        "selection": router.selection,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--hidden", type=float, nargs="+", default=list(HIDDEN_SHARES))
    parser.add_argument("--output", default="logs", help="results name under benchmarks/results/")
    add_cache_option(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    folder = require_data(PAPER_DATA)
    train, files = read_train_files(folder)
    tests = read_test_files(folder)
    cache = open_cache(args.encoding_cache)
    rows: dict[str, Any] = {}
    best_single: dict[str, Any] = {}
    for share in args.hidden:
        for task_labels in (True, False):
            name = f"{share:.0%} hidden, {'task labels' if task_labels else 'no task labels'}"
            runs, start = [], time.perf_counter()
            for seed in args.seeds:
                run = run_condition(
                    train, tests, cache, share=share, task_labels=task_labels, seed=seed
                )
                runs.append(run)
                best_single = run["best_single"]  # the test files' own: the same every run
            averages = [run["average"] for run in runs]
            rows[name] = {
                "hidden_share": share,
                "task_labels": task_labels,
                "mean": float(np.mean(averages)),
                "std": float(np.std(averages)),
                "per_seed": averages,
                "files": {
                    f: float(np.mean([run["files"][f] for run in runs])) for f in runs[0]["files"]
                },
                "smoothing_chosen": [run["selection"].get("smoothing_neighbours") for run in runs],
                "seconds": time.perf_counter() - start,
            }
            logger.info("%s: %.2f ± %.2f", name, rows[name]["mean"], rows[name]["std"])
    if args.encoding_cache is not None:
        cache.save(args.encoding_cache)
    payload = {
        "provenance": provenance(
            {
                "seeds": args.seeds,
                "hidden_shares": args.hidden,
                "train_files": [p.name for p in files],
                "test_files": list(tests),
            }
        ),
        "best_single": best_single,
        "results": rows,
    }
    write_results(args.output, payload, report(rows, best_single, args.seeds))
    return 0


def report(rows: Mapping[str, Any], best_single: Mapping[str, Any], seeds: Sequence[int]) -> str:
    """The Markdown table: one row per hidden share and labelling, then the best single LLM."""
    files = list(next(iter(rows.values()))["files"]) if rows else []
    lines = [
        "# Training on logs: scores hidden, task labels dropped (test accuracy, %)",
        "",
        "| scores hidden | task labels | "
        + " | ".join(f.removesuffix("_test.json") for f in files)
        + " | average | spread |",
        "|---:|---|" + "---:|" * (len(files) + 2),
    ]
    for row in rows.values():
        cells = " | ".join(f"{row['files'][f]:.2f}" for f in files)
        lines.append(
            f"| {row['hidden_share']:.0%} | {'yes' if row['task_labels'] else 'no'} | {cells} "
            f"| {row['mean']:.2f} | ± {row['std']:.2f} |"
        )
    if best_single:
        cells = " | ".join(f"{best_single['files'][f]:.2f}" for f in files)
        lines.append(
            f"| best single LLM ({best_single['llm']}) | | {cells} "
            f"| {best_single['average']:.2f} | |"
        )
    lines += [
        "",
        f"The default CPU recipe (frozen encoder), trained on the paper's train files with the "
        f"share of scores hidden at random (per query and LLM, one kept per query), with or "
        f"without the files' task labels; scored on the test files as `routerdc eval` scores "
        f"it. Mean over seeds {list(seeds)} (each draws the hidden scores and the training run); "
        f"spread: their standard deviation.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
