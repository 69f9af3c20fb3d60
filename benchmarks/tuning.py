"""Choose the CPU default recipe by k-fold cross-validation on the paper's train files only.

    python -m benchmarks.tuning [--folds 5] [--fold-seeds 0 ...] [--only NAME ...]
        [--output tuning] [--encoding-cache FILE]

Each variant is trained with ``core.fit`` (which holds out its own 10% to pick a checkpoint)
on k-1 folds of the five ``*_train.json`` files and scored on the remaining fold with the
paper's metric; the test files are never read. Queries are encoded once for all variants
that keep the encoder frozen; the full fine-tuning variant routes through its trained encoder.
One fold assignment moves the averages by about 0.3 points; ``--fold-seeds`` scores every
variant on several assignments and reports its mean paired difference from the default.
Writes ``benchmarks/results/<output>.json`` and ``.md`` (``tuning`` by default).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
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
from benchmarks.paper import (
    FULL_BATCH,
    FULL_FINE_TUNING,
    FULL_STEPS,
    PAPER_LOSS,
    router_trains_encoder,
)
from core.config import SMOOTHING_CANDIDATES
from core.metrics import accuracy, best_llm_per_task
from core.trainer import EncodingCache, fit

logger = logging.getLogger("benchmarks.tuning")

# Each variant changes one lever of the default recipe (the first row), except the paper's row.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "paper's loss settings, own scores (the old default)": PAPER_LOSS,
    "no smoothing": {"smoothing_neighbours": 0},
    "smoothing 10 neighbours": {"smoothing_neighbours": 10},
    "smoothing 50 neighbours": {"smoothing_neighbours": 50},
    "smoothing 200 neighbours": {"smoothing_neighbours": 200},
    "smoothing 500 neighbours": {"smoothing_neighbours": 500},
    "smoothing over the whole task": {"smoothing_neighbours": 2000},
    "probabilities as scores (binary False)": {"binary": False},
    "temperature 1": {"temperature": 1.0},
    "temperature 0.05": {"temperature": 0.05},
    "K+ 2": {"top_k_positive": 2},
    "K+ 3": {"top_k_positive": 3},
    "K- 3": {"top_k_negative": 3},
    "negatives above 0.5 dropped": {"negative_max_score": 0.5},
    "no sample-sample loss (lambda 0)": {"sample_sample_weight": 0.0},
    "task labels as clusters": {"clusters": "tasks"},
    "no projection": {"projection": False},
    "3000 steps": {"steps": 3000},
    # all-MiniLM-L6-v2 was trained on 256 tokens (its sentence_bert_config.json); 512 is what
    # its position table allows. 170 of the 5,935 train queries are longer than 256 tokens.
    "max_length 256": {"max_length": 256},
    "max_length 512": {"max_length": 512},
    "head lr 1e-4, 3000 steps": {"head_learning_rate": 1e-4, "steps": 3000},
    # The paper benchmark's full fine-tuning row (its CPU budget), the one that trains MiniLM.
    f"full fine-tuning ({FULL_STEPS} steps of {FULL_BATCH})": FULL_FINE_TUNING,
}


def folds_of(tasks: Sequence[str], k: int, seed: int = 0) -> np.ndarray:
    """Fold id per query, stratified by task."""
    rng = np.random.default_rng(seed)
    labels = np.array(tasks)
    fold = np.empty(len(labels), dtype=int)
    for task in dict.fromkeys(labels.tolist()):
        rows = rng.permutation(np.flatnonzero(labels == task))
        fold[rows] = np.arange(len(rows)) % k
    return fold


def read_train_files(folder: Path) -> tuple[core.RoutingData, list[Path]]:
    """The ``*_train.json`` files in ``folder`` as one data set, each query labelled by task."""
    files = sorted(folder.glob("*_train.json"))
    data = core.RoutingData.concat(
        [core.RoutingData.from_file(p, task=p.stem.rsplit("_", 1)[0]) for p in files]
    )
    return data, files


def per_task_accuracy(data: core.RoutingData, chosen: np.ndarray) -> dict[str, float]:
    tasks = np.array(data.tasks or [""] * len(data))
    scores = {
        t: 100 * accuracy(data.scores[tasks == t], chosen[tasks == t])
        for t in dict.fromkeys(tasks.tolist())
    }
    return scores | {"average": float(np.mean(list(scores.values())))}


def cross_validate(
    data: core.RoutingData, fold: np.ndarray, overrides: dict[str, Any], cache: EncodingCache
) -> tuple[dict[str, Any], float]:
    chosen = np.zeros(len(data), dtype=int)
    selections = []
    options = dict(overrides)
    clusters = options.pop("clusters", "kmeans")
    start = time.perf_counter()
    for k in np.unique(fold):
        train, held_out = data.subset(np.flatnonzero(fold != k)), np.flatnonzero(fold == k)
        router = fit(train, encoding_cache=cache, progress=False, clusters=clusters, **options)
        selections.append(router.selection.get("smoothing_neighbours"))
        queries = [data.queries[i] for i in held_out]
        if router_trains_encoder(options):
            logits = router.logits(queries)
        else:  # the encoder is untrained: apply the trained head to cached vectors
            with torch.inference_mode():
                logits = router.model.head(cache.encode(router, queries, core.TrainConfig()))[0]
        chosen[held_out] = np.asarray(logits).argmax(axis=1)
    scores = per_task_accuracy(data, chosen)
    return scores | {"smoothing_chosen_per_fold": selections}, time.perf_counter() - start


def cross_validated_best_llm_per_task(data: core.RoutingData, fold: np.ndarray) -> dict[str, float]:
    """The reference to beat: each task's best LLM on the training folds."""
    chosen = np.zeros(len(data), dtype=int)
    tasks = np.array(data.tasks or [""] * len(data))
    for k in np.unique(fold):
        best = best_llm_per_task(data.subset(np.flatnonzero(fold != k)))
        held_out = fold == k
        chosen[held_out] = [best[t] for t in tasks[held_out]]
    return per_task_accuracy(data, chosen)


def mean_over_assignments(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-task means over fold assignments, with each assignment's average kept."""
    keys = [k for k, v in runs[0].items() if isinstance(v, float)]
    mean = {k: float(np.mean([run[k] for run in runs])) for k in keys}
    return mean | {"average_per_assignment": [run["average"] for run in runs]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--fold-seeds",
        type=int,
        nargs="+",
        default=[0],
        help="one fold assignment per seed; every variant is scored on all of them (paired)",
    )
    parser.add_argument("--only", nargs="+", help="run only these variants")
    parser.add_argument("--output", default="tuning", help="results name under benchmarks/results/")
    add_cache_option(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data, files = read_train_files(require_data(PAPER_DATA))
    folds = [folds_of(data.tasks or [], args.folds, seed) for seed in args.fold_seeds]
    cache = open_cache(args.encoding_cache)
    results: dict[str, Any] = {
        "best LLM per task (reference)": mean_over_assignments(
            [cross_validated_best_llm_per_task(data, fold) for fold in folds]
        )
    }
    for name, overrides in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        runs = [cross_validate(data, fold, overrides, cache) for fold in folds]
        results[name] = mean_over_assignments([scores for scores, _ in runs]) | {
            "smoothing_chosen_per_fold": runs[0][0]["smoothing_chosen_per_fold"],
            "overrides": overrides,
            "seconds": sum(seconds for _, seconds in runs),
        }
        logger.info("%s: %.2f (%.0f s)", name, results[name]["average"], results[name]["seconds"])
        if args.encoding_cache is not None:
            cache.save(args.encoding_cache)
    payload = {
        "provenance": provenance(
            {
                "folds": args.folds,
                "fold_seeds": args.fold_seeds,
                "files": [p.name for p in files],
            }
        ),
        "default_recipe": {
            k: v for k, v in vars(core.TrainConfig().resolved("cpu")).items() if k != "device"
        },
        "results": results,
    }
    write_results(args.output, payload, report(results, args.folds, args.fold_seeds))
    return 0


def report(results: dict[str, Any], folds: int, fold_seeds: Sequence[int]) -> str:
    """The Markdown table; with several fold assignments, each row's spread and paired gain."""
    summary = ("average", "average_per_assignment")
    tasks = [t for t in next(iter(results.values())) if t not in summary]
    repeated = len(fold_seeds) > 1
    extra = ["spread", "vs default"] if repeated else []
    lines = [
        f"# Recipe tuning: {folds}-fold cross-validation on the train files (accuracy, %)",
        "",
        "| variant | " + " | ".join([*tasks, "average", *extra]) + " |",
        "|---|" + "---:|" * (len(tasks) + 1 + len(extra)),
    ]
    default = np.array(results.get("default", {}).get("average_per_assignment", []))
    for name, row in results.items():
        cells = [f"{row[t]:.2f}" for t in [*tasks, "average"]]
        if repeated:
            runs = np.array(row["average_per_assignment"])
            cells.append(f"± {runs.std():.2f}")
            gain = runs - default if len(default) else np.array([np.nan])
            wins = int((gain > 0).sum())
            cells.append(f"{gain.mean():+.2f} ({wins}/{len(runs)} above)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    chosen_per_fold = results.get("default", {}).get("smoothing_chosen_per_fold", [])
    lines += [
        "",
        "Each variant changes the default CPU recipe (frozen encoder) in one respect. "
        + (
            f"Every row is the mean over {len(fold_seeds)} fold assignments (seeds "
            f"{list(fold_seeds)}); spread: their standard deviation; vs default: the mean paired "
            "difference from the default on the same folds, and on how many it was above. "
            if repeated
            else ""
        )
        + "The default chooses, for each task, the smoothing neighbour count among "
        + str(SMOOTHING_CANDIDATES)
        + " by how well each predicts the training folds' own queries, leave-one-out "
        "(2000 is the whole task); on the first fold assignment it chose:",
        "",
        *(f"- fold {i}: {chosen}" for i, chosen in enumerate(chosen_per_fold)),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
