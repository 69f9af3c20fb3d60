"""Choose the CPU default recipe by k-fold cross-validation on the paper's train files only.

    python -m benchmarks.tuning [--folds 5] [--fold-seeds 0 ...] [--only NAME ...]
        [--measures cv loto routerbench] [--output tuning] [--encoding-cache FILE]

Each variant is trained with ``core.fit`` (which holds out its own 10% to pick a checkpoint)
on k-1 folds of the five ``*_train.json`` files and scored on the remaining fold with the
paper's metric; the test files are never read. Queries are encoded once for all variants
that keep the encoder frozen; the full fine-tuning variant routes through its trained encoder.
One fold assignment moves the averages by about 0.3 points; ``--fold-seeds`` scores every
variant on several assignments and reports its mean paired difference from the default.

Beside the in-task cross-validation, every variant is also scored across tasks, as a router
meets a kind of query it never saw: leave-one-task-out on the five train files (train on four,
route the fifth's train queries; the mean over the five) and the same on RouterBench's three
tasks (``../shared/data/routerbench/*.csv``). The reference there is the one LLM best on the
training tasks (their mean accuracy), always called. The default recipe is also scored with
each out-of-distribution back-off threshold of ``BACKOFF_GRID`` (:mod:`core.routing.ood`), from the
same fits. ``--measures`` picks among ``cv``, ``loto`` and ``routerbench``.

Writes ``benchmarks/results/<output>.json`` and ``.md`` (``tuning`` by default).
"""

from __future__ import annotations

import argparse
import json
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
    RESULTS,
    ROUTERBENCH_DATA,
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
from core.routing.base import _softmax
from core.routing.ood import DEFAULT_OOD_BACKOFF, back_off
from core.training.metrics import accuracy, best_llm_per_task, training_view
from core.training.trainer import EncodingCache, fit

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


# Back-off thresholds the default recipe is scored with (core.routing.ood); 0 is no back-off.
BACKOFF_GRID = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
MEASURES = ("cv", "loto", "routerbench")
# Where each across-task measure lives in the results file.
ACROSS_KEYS = {"loto": "leave_one_task_out", "routerbench": "routerbench_leave_one_task_out"}


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


def fit_and_choose(
    train: core.RoutingData,
    queries: list[str],
    overrides: dict[str, Any],
    cache: EncodingCache,
    thresholds: Sequence[float | None] = (None,),
) -> tuple[core.Router, dict[float | None, np.ndarray]]:
    """Fit on ``train`` and choose an LLM column per query, once per back-off threshold.

    None means the router's own ``ood_backoff``; the frozen encoder's vectors come from the
    cache, a fine-tuned one encodes the queries itself.
    """
    options = dict(overrides)
    clusters = options.pop("clusters", "kmeans")
    router = fit(train, encoding_cache=cache, progress=False, clusters=clusters, **options)
    if router_trains_encoder(options):
        logits, vectors = router.logits_and_vectors(queries)
    else:  # the encoder is untrained: apply the trained head to cached vectors
        with torch.inference_mode():
            head_logits, head_vectors = router.model.head(
                cache.encode(router, queries, core.TrainConfig())
            )
        logits, vectors = head_logits.numpy(), head_vectors.numpy()
    probabilities = _softmax(logits)
    if router.ood is None:
        return router, {t: probabilities.argmax(axis=1) for t in thresholds}
    scores = router.ood.score(vectors)
    target = router.llm_names.index(router.ood.fallback_among(router.llm_names))
    chosen = {}
    for threshold in thresholds:
        value = router.ood_backoff if threshold is None else threshold
        chosen[threshold] = back_off(probabilities, scores, value, target)[0].argmax(axis=1)
    return router, chosen


def cross_validate(
    data: core.RoutingData, fold: np.ndarray, overrides: dict[str, Any], cache: EncodingCache
) -> tuple[dict[str, Any], float]:
    """Per-task accuracy of k-fold cross-validation (the router's own back-off); the seconds."""
    scores, seconds = cross_validate_backoff(data, fold, overrides, cache)
    return scores[None], seconds


def cross_validate_backoff(
    data: core.RoutingData,
    fold: np.ndarray,
    overrides: dict[str, Any],
    cache: EncodingCache,
    thresholds: Sequence[float | None] = (None,),
) -> tuple[dict[float | None, dict[str, Any]], float]:
    """Per back-off threshold: per-task accuracy of k-fold cross-validation; and the seconds."""
    chosen = {t: np.zeros(len(data), dtype=int) for t in thresholds}
    selections = []
    start = time.perf_counter()
    for k in np.unique(fold):
        train, held_out = data.subset(np.flatnonzero(fold != k)), np.flatnonzero(fold == k)
        queries = [data.queries[i] for i in held_out]
        router, fold_chosen = fit_and_choose(train, queries, overrides, cache, thresholds)
        selections.append(router.selection.get("smoothing_neighbours"))
        for t in thresholds:
            chosen[t][held_out] = fold_chosen[t]
    scores = {
        t: per_task_accuracy(data, c) | {"smoothing_chosen_per_fold": selections}
        for t, c in chosen.items()
    }
    return scores, time.perf_counter() - start


def best_single_llm(data: core.RoutingData) -> int:
    """Column of the LLM with the best accuracy averaged over ``data``'s tasks."""
    view = training_view(data)
    tasks = np.array(data.tasks or [""] * len(data))
    per_task = [np.nanmean(view[tasks == t], axis=0) for t in dict.fromkeys(tasks.tolist())]
    return int(np.nan_to_num(np.mean(per_task, axis=0), nan=-1.0).argmax())


def leave_one_task_out(
    data: core.RoutingData,
    overrides: dict[str, Any],
    cache: EncodingCache,
    thresholds: Sequence[float | None] = (None,),
) -> tuple[dict[float | None, dict[str, Any]], float]:
    """Per threshold: train on all tasks but one, route the left-out task's queries.

    Each row holds ``per_task`` (accuracy % on the left-out task), ``average``, ``gain`` over
    always-the-best-single-LLM-of-the-training-tasks per task, its mean and ``spread`` (the
    standard deviation of the per-task gains over the folds).
    """
    tasks = np.array(data.tasks or [])
    per_task: dict[float | None, dict[str, float]] = {t: {} for t in thresholds}
    reference = leave_one_task_out_reference(data)
    start = time.perf_counter()
    for task in dict.fromkeys(tasks.tolist()):
        rows = np.flatnonzero(tasks == task)
        train = data.subset(np.flatnonzero(tasks != task))
        _, chosen = fit_and_choose(
            train, [data.queries[i] for i in rows], overrides, cache, thresholds
        )
        for t in thresholds:
            per_task[t][task] = 100 * accuracy(data.scores[rows], chosen[t])
        logger.info("left out %s: %s", task, {t: round(v[task], 2) for t, v in per_task.items()})
    out = {t: loto_summary(scores, reference["per_task"]) for t, scores in per_task.items()}
    return out, time.perf_counter() - start


def leave_one_task_out_reference(data: core.RoutingData) -> dict[str, Any]:
    """Always the best single LLM of the other tasks, chosen on them, for each left-out task."""
    tasks = np.array(data.tasks or [])
    per_task, chosen_llm = {}, {}
    for task in dict.fromkeys(tasks.tolist()):
        rows = np.flatnonzero(tasks == task)
        best = best_single_llm(data.subset(np.flatnonzero(tasks != task)))
        per_task[task] = 100 * accuracy(data.scores[rows], np.full(len(rows), best))
        chosen_llm[task] = data.llm_names[best]
    return {
        "per_task": per_task,
        "average": float(np.mean(list(per_task.values()))),
        "llm": chosen_llm,
    }


def loto_summary(per_task: dict[str, float], reference: dict[str, float]) -> dict[str, Any]:
    """Average, per-task gains over the reference, their mean and spread (std over folds)."""
    gains = {t: per_task[t] - reference[t] for t in per_task}
    return {
        "per_task": per_task,
        "average": float(np.mean(list(per_task.values()))),
        "gain": gains,
        "mean_gain": float(np.mean(list(gains.values()))),
        "spread": float(np.std(list(gains.values()))),
    }


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


def read_routerbench(folder: Path) -> core.RoutingData:
    """RouterBench's CSV files as one data set, each query labelled by its task."""
    return core.RoutingData.from_files(sorted(folder.glob("*.csv")))


def read_previous(output: str) -> dict[str, Any]:
    """The results file a run with ``--update`` adds to (empty when there is none)."""
    path = RESULTS / f"{output}.json"
    return dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else {}


def row_name(variant: str, threshold: float | None) -> str:
    """The variant's row, or its row at one back-off threshold."""
    return variant if threshold is None else f"{variant}, ood_backoff {threshold:g}"


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
    parser.add_argument(
        "--measures",
        nargs="+",
        choices=MEASURES,
        default=list(MEASURES),
        help="in-task cross-validation, leave-one-task-out on the paper's and RouterBench's tasks",
    )
    parser.add_argument("--output", default="tuning", help="results name under benchmarks/results/")
    parser.add_argument(
        "--update",
        action="store_true",
        help="keep the rows of the existing results file that this run does not recompute",
    )
    add_cache_option(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data, files = read_train_files(require_data(PAPER_DATA))
    folds = [folds_of(data.tasks or [], args.folds, seed) for seed in args.fold_seeds]
    cache = open_cache(args.encoding_cache)
    across_data = {"loto": data}
    if "routerbench" in args.measures:
        across_data["routerbench"] = read_routerbench(require_data(ROUTERBENCH_DATA))
    results: dict[str, Any] = {}
    if "cv" in args.measures:
        results["best LLM per task (reference)"] = mean_over_assignments(
            [cross_validated_best_llm_per_task(data, fold) for fold in folds]
        )
    across: dict[str, dict[str, Any]] = {m: {} for m in across_data if m in args.measures}
    for name, overrides in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        thresholds: tuple[float | None, ...] = (None,)
        if name == "default":
            thresholds = (None, *BACKOFF_GRID)
        if "cv" in args.measures:
            runs = [
                cross_validate_backoff(data, fold, overrides, cache, thresholds) for fold in folds
            ]
            for t in thresholds:
                results[row_name(name, t)] = mean_over_assignments([r[0][t] for r in runs]) | {
                    "smoothing_chosen_per_fold": runs[0][0][t]["smoothing_chosen_per_fold"],
                    "overrides": overrides,
                    "seconds": sum(seconds for _, seconds in runs),
                }
            logger.info("%s: CV %.2f", name, results[name]["average"])
        for measure in across:
            scores, seconds = leave_one_task_out(across_data[measure], overrides, cache, thresholds)
            for t in thresholds:
                across[measure][row_name(name, t)] = scores[t] | {"seconds": seconds}
            logger.info("%s: %s %.2f", name, measure, scores[None]["average"])
        if args.encoding_cache is not None:
            cache.save(args.encoding_cache)
    # Read last, so that runs of other variants in parallel, each with --update, all count.
    previous = read_previous(args.output) if args.update else {}
    results = previous.get("results", {}) | results
    for measure, key in ACROSS_KEYS.items():
        if key in previous:
            across[measure] = previous[key].get("variants", {}) | across.get(measure, {})
            if measure not in across_data:  # kept rows are reported against their reference
                across_data[measure] = read_routerbench(require_data(ROUTERBENCH_DATA))
    payload: dict[str, Any] = {
        "provenance": provenance(
            {
                "folds": args.folds,
                "fold_seeds": args.fold_seeds,
                "files": [p.name for p in files],
                "measures": args.measures,
                "backoff_grid": list(BACKOFF_GRID),
                "default_ood_backoff": DEFAULT_OOD_BACKOFF,
            }
        ),
        "default_recipe": {
            k: v for k, v in vars(core.TrainConfig().resolved("cpu")).items() if k != "device"
        },
        "results": results,
    }
    if previous:
        payload["provenance"]["updated"] = previous.get("provenance")
    references = {m: leave_one_task_out_reference(across_data[m]) for m in across}
    for measure, key in ACROSS_KEYS.items():
        if measure in across:
            payload[key] = across_summary(across[measure], references[measure])
    sections = [report(results, args.folds, args.fold_seeds)] if results else []
    if across:
        sections.append(across_report(results, across, references))
    write_results(args.output, payload, "\n\n".join(sections))
    return 0


def across_summary(rows: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """The default's leave-one-task-out against the best single LLM, and every variant's rows."""
    default = rows.get("default")
    summary: dict[str, Any] = {
        "default": default["average"] if default else None,
        "best_single": reference["average"],
    }
    if default:
        summary["per_task"] = {
            task: {
                "default": default["per_task"][task],
                "best_single": reference["per_task"][task],
                "best_single_llm": reference["llm"][task],
            }
            for task in default["per_task"]
        }
        summary["mean_gain"] = default["mean_gain"]
        summary["spread"] = default["spread"]
    return summary | {"variants": rows}


def across_report(
    results: dict[str, Any],
    across: dict[str, dict[str, Any]],
    references: dict[str, dict[str, Any]],
) -> str:
    """In-task and across-task figures side by side, and the default's folds one by one."""
    titles = {"loto": "the paper's tasks", "routerbench": "RouterBench's tasks"}
    measures = list(across)
    header = ["variant", "in-task: 5-fold CV"]
    for m in measures:
        header += [f"leave-one-task-out, {titles[m]}", "vs best single (spread)"]
    lines = [
        "# In-task and across-task accuracy side by side (%)",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    cells = ["always the best single LLM of the training tasks", "—"]
    for m in measures:
        cells += [f"{references[m]['average']:.2f}", "—"]
    lines.append("| " + " | ".join(cells) + " |")
    names = list(dict.fromkeys(n for m in measures for n in across[m]))
    for name in names:
        cv = results.get(name, {}).get("average")
        cells = [name, f"{cv:.2f}" if cv is not None else "—"]
        for m in measures:
            row = across[m].get(name)
            if row is None:
                cells += ["—", "—"]
            else:
                cells += [
                    f"{row['average']:.2f}",
                    f"{row['mean_gain']:+.2f} (± {row['spread']:.2f})",
                ]
        lines.append("| " + " | ".join(cells) + " |")
    for m in measures:
        default = across[m].get("default")
        if default is None:
            continue
        tasks = list(default["per_task"])
        lines += [
            "",
            f"Leave-one-task-out on {titles[m]}, the default recipe task by task (%):",
            "",
            "| left-out task | default | best single LLM of the other tasks | that LLM |",
            "|---|---:|---:|---|",
            *(
                f"| {t} | {default['per_task'][t]:.2f} | {references[m]['per_task'][t]:.2f} "
                f"| {references[m]['llm'][t]} |"
                for t in tasks
            ),
        ]
    lines += [
        "",
        "Leave-one-task-out: train on all tasks but one (the train files only), route the "
        "left-out task's queries; averages over the left-out tasks. The reference always calls "
        "the LLM with the best mean accuracy over the training tasks. vs best single: the mean "
        "per-task gain over it; spread: the standard deviation of that gain over the left-out "
        "tasks. Rows with `ood_backoff t` route the default recipe's fits with the back-off "
        "rule of `core.routing.ood` at threshold t (each query's probabilities mixed with a "
        "one-hot on "
        f"the best LLM over the training data, weight clip(1 - score / t, 0, 1)); the default "
        f"row uses the shipped threshold, {DEFAULT_OOD_BACKOFF:g}.",
    ]
    return "\n".join(lines)


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
