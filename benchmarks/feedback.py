"""Learning from production: does retraining on the app's own routing log close the gap?

    python -m benchmarks.feedback --encoding-cache /work/cache/minilm-7llm.safetensors
    python -m benchmarks.feedback --quick           # one seed, two rounds: a smoke test
    python -m benchmarks.feedback --routerbench     # also RouterBench: accuracy and spend

Start from a frozen-encoder router trained on a small labelled seed set (50 train queries per
task, every LLM scored). Replay the remaining train queries as app traffic in rounds: the
current router routes each one through ``route_batch(..., explore=..., log=RoutingLog)``,
only the chosen LLM's score is revealed, and only for a share of calls (30%), written back
with ``RoutingLog.import_outcomes``; after each round the learner retrains on the seed set
plus ``RoutingData.from_log`` (a real SQLite log in a temporary folder). Learners:

- corrected: exploration, clipped inverse-propensity weights in fit's neighbour means;
- naive: the same log, every outcome weighted 1;
- no_exploration: epsilon 0, so only the router's own choices are ever observed.

Reference rows: the starting router, a full-label router (every train query, every score)
and the best single LLM. No task labels are given to any router (an app has none). Test
accuracy is the paper's metric, averaged over tasks. Writes benchmarks/results/feedback.json,
.md and .png.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
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
from core.data.log import DEFAULT_WEIGHT_CLIP
from core.routing.base import BaseRouter
from core.training.metrics import task_mean_accuracy, training_view
from core.training.trainer import EncodingCache, fit

logger = logging.getLogger("benchmarks.feedback")

LEARNERS = {
    # name: (exploration epsilon or None for the run's own, weighting)
    "corrected": (None, "ips"),
    "naive": (None, "none"),
    "no_exploration": (0.0, "none"),
}


class CachedRouter(BaseRouter):
    """A trained frozen-encoder router whose logits come from the encoding cache.

    The routing rule, exploration and logging are BaseRouter's own; only the encoder pass is
    replaced by a lookup, so replaying thousands of queries per round takes no encoding.
    """

    def __init__(self, router: core.Router, cache: EncodingCache) -> None:
        self.router = router
        self.cache = cache
        self.config = router.config
        self.max_tokens = router.max_tokens

    def logits(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        with torch.inference_mode():
            pooled = self.cache.encode(self.router, list(queries), core.TrainConfig())
            logits, _ = self.router.model.head(pooled.to(self.router.device))
        return logits.float().cpu().numpy()

    def embed(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return self.router.embed(queries, batch_size=batch_size)


def without_tasks(data: core.RoutingData) -> core.RoutingData:
    return core.RoutingData(data.queries, data.llm_names, data.scores, data.costs, None)


def load_paper(data_dir: Path) -> tuple[core.RoutingData, core.RoutingData]:
    def task_of(path: Path) -> str:
        return path.stem.rsplit("_", 1)[0]

    train = core.RoutingData.concat(
        [
            core.RoutingData.from_file(p, task=task_of(p))
            for p in sorted(data_dir.glob("*_train.json"))
        ]
    )
    test = core.RoutingData.concat(
        [
            core.RoutingData.from_file(p, task=task_of(p))
            for p in sorted(data_dir.glob("*_test.json"))
        ]
    )
    return train, test


def load_routerbench(data_dir: Path, seed: int) -> tuple[core.RoutingData, core.RoutingData]:
    """RouterBench has no test split: 30% of each task is held out, seeded."""
    data = core.RoutingData.concat(
        [
            core.RoutingData.from_file(p, task=p.stem.rsplit("_", 1)[0])
            for p in sorted(data_dir.glob("*.csv"))
        ]
    )
    rest, held = data.split_indices(0.3, seed=1000 + seed)
    return data.subset(rest), data.subset(held)


class Evaluation:
    """Test accuracy (%, the paper's metric, mean over tasks) and mean spend per query."""

    def __init__(self, test: core.RoutingData, cache: EncodingCache) -> None:
        self.test = test
        self.cache = cache

    def __call__(self, router: core.Router) -> dict[str, float]:
        chosen = CachedRouter(router, self.cache).logits(self.test.queries).argmax(axis=1)
        result = {"accuracy": 100 * task_mean_accuracy(self.test, chosen)}
        if self.test.costs is not None:
            result["spend"] = float(np.nanmean(self.test.costs[np.arange(len(chosen)), chosen]))
        return result

    def best_single(self) -> dict[str, Any]:
        per_llm = {
            name: 100 * task_mean_accuracy(self.test, np.full(len(self.test), col))
            for col, name in enumerate(self.test.llm_names)
        }
        best = max(per_llm, key=per_llm.__getitem__)
        return {"accuracy": per_llm[best], "llm": best}


def run_seed(
    train: core.RoutingData,
    test: core.RoutingData,
    *,
    seed: int,
    args: argparse.Namespace,
    cache: EncodingCache,
) -> dict[str, Any]:
    """Every learner's test accuracy after each round, and the reference rows, for one seed."""
    rng = np.random.default_rng(seed)
    tasks = np.array(train.tasks or [""] * len(train))
    labelled: list[int] = []
    for task in dict.fromkeys(tasks.tolist()):
        labelled += rng.permutation(np.flatnonzero(tasks == task))[: args.seed_per_task].tolist()
    traffic = rng.permutation(np.setdiff1d(np.arange(len(train)), labelled))
    rounds = np.array_split(traffic, args.rounds)
    revealed_view = training_view(train)  # outcomes as the metric counts them: right = 1
    # A fifth of the seed set picks every router's checkpoints: outcomes in the log would do
    # it badly (only the chosen LLM is scored, so a query counts only where a router agrees).
    held = np.zeros(len(labelled), dtype=bool)
    held[rng.permutation(len(labelled))[: len(labelled) // 5]] = True
    validation = train.subset(np.asarray(labelled)[held])
    seed_set = without_tasks(train.subset(np.asarray(labelled)[~held]))
    evaluate = Evaluation(test, cache)
    options = {
        "validation": validation,
        "train_encoder": False,
        "seed": seed,
        "encoding_cache": cache,
        "progress": False,
        "steps": args.steps,
    }

    started = time.perf_counter()
    start_router = fit(seed_set, **options)
    result: dict[str, Any] = {"seed": seed, "start": evaluate(start_router)}
    logger.info("seed %d: start %s (%.0f s)", seed, result["start"], time.perf_counter() - started)
    result["full_labels"] = evaluate(fit(without_tasks(train), **options))
    logger.info("seed %d: full labels %s", seed, result["full_labels"])
    result["best_single"] = evaluate.best_single()

    folder = Path(tempfile.mkdtemp(prefix="routerdc-feedback-"))
    for index, (name, (epsilon, weighting)) in enumerate(LEARNERS.items()):
        explore = args.explore if epsilon is None else epsilon
        log_path = folder / f"{name}-seed{seed}.db"
        log = core.RoutingLog(log_path, durable=False)
        router, history = start_router, []
        learner_rng = np.random.default_rng([seed, index])
        for number, rows in enumerate(rounds, 1):
            queries = [train.queries[i] for i in rows]
            ids = [f"seed{seed}-round{number}-{i}" for i in rows]
            decisions = CachedRouter(router, cache).route_batch(
                queries, explore=explore, rng=learner_rng, log=log, run_ids=ids
            )
            column = {n: c for c, n in enumerate(train.llm_names)}
            outcomes = folder / f"{name}-seed{seed}-round{number}.jsonl"
            with outcomes.open("w", encoding="utf-8") as handle:
                for row, run_id, decision in zip(rows, ids, decisions, strict=True):
                    if learner_rng.random() < args.feedback_share:
                        score = revealed_view[row, column[decision.llm]]
                        handle.write(json.dumps({"run_id": run_id, "score": float(score)}) + "\n")
            log.import_outcomes(outcomes)
            logged = core.RoutingData.from_log(log_path, weighting=weighting, clip=args.clip)
            data = core.RoutingData.concat([seed_set, logged])
            weights = None
            if logged.sample_weights is not None:
                weights = np.concatenate([np.ones(len(seed_set)), logged.sample_weights])
            router = fit(data, sample_weights=weights, **options)
            history.append(
                {
                    "round": number,
                    "calls": len(log),
                    "outcomes": len(logged),
                    "explored_share": float(np.mean([d.explored for d in decisions])),
                    **evaluate(router),
                }
            )
            logger.info("seed %d %s round %d: %s", seed, name, number, history[-1])
        result[name] = history
        log.close()
    result["seconds"] = time.perf_counter() - started
    return result


def aggregate(runs: Sequence[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Means and spreads (standard deviation over seeds) of ``metric``, and gap_closed."""

    def stats(values: Sequence[float]) -> dict[str, float]:
        return {"mean": float(np.mean(values)), "std": float(np.std(values))}

    out: dict[str, Any] = {
        "start": stats([r["start"][metric] for r in runs]),
        "full_labels": stats([r["full_labels"][metric] for r in runs]),
    }
    if metric == "accuracy":
        out["best_single"] = stats([r["best_single"]["accuracy"] for r in runs])
    for name in LEARNERS:
        per_round = np.array([[h[metric] for h in r[name]] for r in runs])  # (seeds, rounds)
        out[f"{name}_rounds"] = per_round.mean(axis=0).tolist()
        out[f"{name}_rounds_std"] = per_round.std(axis=0).tolist()
    if metric == "accuracy":
        closed = [
            (r["corrected"][-1][metric] - r["start"][metric])
            / (r["full_labels"][metric] - r["start"][metric])
            for r in runs
        ]
        out["gap_closed"] = stats(closed)
        naive_closed = [
            (r["naive"][-1][metric] - r["start"][metric])
            / (r["full_labels"][metric] - r["start"][metric])
            for r in runs
        ]
        out["naive_gap_closed"] = stats(naive_closed)
    return out


def summary(runs: Sequence[dict[str, Any]], with_spend: bool) -> dict[str, Any]:
    accuracy = aggregate(runs, "accuracy")
    result = {
        "start": accuracy["start"]["mean"],
        "start_std": accuracy["start"]["std"],
        "full_labels": accuracy["full_labels"]["mean"],
        "full_labels_std": accuracy["full_labels"]["std"],
        "best_single": accuracy["best_single"]["mean"],
        "best_single_std": accuracy["best_single"]["std"],
        "rounds": accuracy["corrected_rounds"],
        "rounds_std": accuracy["corrected_rounds_std"],
        "naive_rounds": accuracy["naive_rounds"],
        "naive_rounds_std": accuracy["naive_rounds_std"],
        "no_exploration_rounds": accuracy["no_exploration_rounds"],
        "no_exploration_rounds_std": accuracy["no_exploration_rounds_std"],
        "gap_closed": accuracy["gap_closed"]["mean"],
        "gap_closed_std": accuracy["gap_closed"]["std"],
        "naive_gap_closed": accuracy["naive_gap_closed"]["mean"],
        "naive_gap_closed_std": accuracy["naive_gap_closed"]["std"],
    }
    result["targets"] = {
        "gap_closed_at_least_half": result["gap_closed"] >= 0.5,
        "corrected_ends_above_naive": result["rounds"][-1] > result["naive_rounds"][-1],
    }
    if with_spend:
        spend = aggregate(runs, "spend")
        result["spend"] = {
            "start": spend["start"]["mean"],
            "full_labels": spend["full_labels"]["mean"],
            **{f"{n}_rounds": spend[f"{n}_rounds"] for n in LEARNERS},
        }
    return result


def markdown(payload: dict[str, Any]) -> str:
    lines = ["# Learning from production: retraining on the routing log", ""]
    settings = payload["provenance"]["settings"]
    lines += [
        f"Seed set: {settings['seed_per_task']} labelled train queries per task (every LLM "
        f"scored); the rest replayed as traffic in {settings['rounds']} rounds, exploration "
        f"epsilon {settings['explore']} (epsilon-greedy), the chosen LLM's score revealed for "
        f"{settings['feedback_share']:.0%} of calls, retrained on the seed set + "
        f"`RoutingData.from_log` after each round. IPS weights clipped at {settings['clip']}. "
        f"Seeds {settings['seeds']}; mean ± standard deviation over seeds; test accuracy, %.",
        "",
    ]
    for dataset, result in payload["datasets"].items():
        rounds = len(result["rounds"])
        header = "| learner | " + " | ".join(f"round {i + 1}" for i in range(rounds)) + " |"
        lines += [f"## {dataset}", "", header, "|---|" + "---:|" * rounds]
        for label, key in (
            ("corrected (IPS)", "rounds"),
            ("naive (no weights)", "naive_rounds"),
            ("no exploration", "no_exploration_rounds"),
        ):
            cells = [
                f"{m:.2f} ± {s:.2f}" for m, s in zip(result[key], result[f"{key}_std"], strict=True)
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"- start (seed set only): {result['start']:.2f} ± {result['start_std']:.2f}",
            f"- full-label router: {result['full_labels']:.2f} ± {result['full_labels_std']:.2f}",
            f"- best single LLM: {result['best_single']:.2f} ± {result['best_single_std']:.2f}",
            f"- gap closed by the corrected learner: {result['gap_closed']:.2f} ± "
            f"{result['gap_closed_std']:.2f} (naive: {result['naive_gap_closed']:.2f} ± "
            f"{result['naive_gap_closed_std']:.2f})",
            f"- targets: {result['targets']}",
        ]
        if "spend" in result:
            spend = result["spend"]
            lines += [
                f"- spend per query ($): start {spend['start']:.6f}, full labels "
                f"{spend['full_labels']:.6f}, corrected by round "
                + ", ".join(f"{v:.6f}" for v in spend["corrected_rounds"])
            ]
        lines.append("")
    return "\n".join(lines)


def plot(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = payload["datasets"]
    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for axis, (dataset, result) in zip(axes[0], datasets.items(), strict=True):
        rounds = np.arange(len(result["rounds"]) + 1)
        for label, key in (
            ("corrected (IPS)", "rounds"),
            ("naive", "naive_rounds"),
            ("no exploration", "no_exploration_rounds"),
        ):
            values = [result["start"], *result[key]]
            spread = [result["start_std"], *result[f"{key}_std"]]
            axis.errorbar(rounds, values, yerr=spread, marker="o", capsize=3, label=label)
        axis.axhline(result["full_labels"], color="black", linestyle="--", label="full labels")
        axis.axhline(result["best_single"], color="grey", linestyle=":", label="best single LLM")
        axis.set_xticks(rounds)
        axis.set_xlabel("round (0 = seed set only)")
        axis.set_ylabel("test accuracy, %")
        axis.set_title(dataset)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed-per-task", type=int, default=50)
    parser.add_argument("--explore", type=float, default=0.1)
    parser.add_argument("--feedback-share", type=float, default=0.3)
    parser.add_argument("--clip", type=float, default=DEFAULT_WEIGHT_CLIP)
    parser.add_argument("--steps", type=int, default=core.TrainConfig().steps)
    parser.add_argument("--routerbench", action="store_true", help="also run on RouterBench")
    parser.add_argument("--quick", action="store_true", help="one seed, two rounds, 200 steps")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--save-encoding-cache",
        type=Path,
        help="write the encoding cache here after each data set (RouterBench's prompts are not "
        "in the shared 7-LLM cache; encoding them takes minutes on a busy CPU)",
    )
    add_cache_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.rounds, args.steps = args.seeds[:1], 2, 200
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # Head-only training on a shared CPU: more intra-op threads only spin (tests/conftest.py).
    torch.set_num_threads(args.threads)
    logging.getLogger("core.data.log").setLevel(logging.ERROR)
    cache = open_cache(args.encoding_cache)
    started = time.perf_counter()
    datasets: dict[str, Any] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    train, test = load_paper(require_data(PAPER_DATA))
    runs["routerdc-7llm"] = [
        run_seed(train, test, seed=s, args=args, cache=cache) for s in args.seeds
    ]
    datasets["routerdc-7llm"] = summary(runs["routerdc-7llm"], with_spend=False)
    write(args, datasets, runs, time.perf_counter() - started)  # again after RouterBench
    if args.routerbench:
        bench_runs = []
        for s in args.seeds:
            bench_train, bench_test = load_routerbench(require_data(ROUTERBENCH_DATA), s)
            bench_args = replace_namespace(args, seed_per_task=min(args.seed_per_task, 30))
            bench_runs.append(
                run_seed(bench_train, bench_test, seed=s, args=bench_args, cache=cache)
            )
        if args.save_encoding_cache is not None:
            cache.save(args.save_encoding_cache)
        runs["routerbench"] = bench_runs
        datasets["routerbench"] = summary(bench_runs, with_spend=True)
        write(args, datasets, runs, time.perf_counter() - started)


def write(
    args: argparse.Namespace,
    datasets: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
    seconds: float,
) -> None:
    """feedback.json, .md and .png from what has run so far."""
    settings = {
        k: v
        for k, v in vars(args).items()
        if k not in ("out", "encoding_cache", "save_encoding_cache")
    } | {"learners": {n: {"explore": e, "weighting": w} for n, (e, w) in LEARNERS.items()}}
    main_result = datasets["routerdc-7llm"]
    payload = {
        "provenance": provenance(settings),
        # The headline figures are the paper data's; other data sets follow.
        **{k: main_result[k] for k in ("start", "full_labels", "best_single", "rounds")},
        "naive_rounds": main_result["naive_rounds"],
        "gap_closed": main_result["gap_closed"],
        "datasets": datasets,
        "runs": runs,
        "seconds": seconds,
    }
    json_path, md_path = write_results("feedback", payload, markdown(payload), folder=args.out)
    plot(payload, args.out / "feedback.png")
    logger.info("wrote %s, %s and %s", json_path, md_path, args.out / "feedback.png")


def replace_namespace(args: argparse.Namespace, **changes: Any) -> argparse.Namespace:
    return argparse.Namespace(**(vars(args) | changes))


if __name__ == "__main__":
    main()
