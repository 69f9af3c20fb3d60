"""Reproduce the paper's Table 1 (in-distribution) with our RouterDC, its ablations and baselines.

    python -m benchmarks.paper            # default: 3 seeds, every row (fits in 90 min on 2 CPUs)
    python -m benchmarks.paper --quick    # one seed, fewer steps, no full fine-tuning: smoke test
    python -m benchmarks.paper --paper-recipe --seeds 0   # also the paper's own recipe (hours)

Trains on the five ``*_train.json`` files of ``../shared/data/routerdc-7llm`` with the paper's
sampling (1000 queries per task: a shorter task repeated, a longer one cut), after holding out a
validation split (10% per task, seeded) that picks checkpoints and baseline settings. Tests on
the five ``*_test.json`` files with the paper's metric. Writes ``benchmarks/results/paper.json``,
``paper.md`` and three plots.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import core
from benchmarks.baselines import KNNRouter, LinearRouter, ZooterRouter
from benchmarks.common import (
    PAPER_DATA,
    RESULTS,
    add_cache_option,
    open_cache,
    provenance,
    require_data,
    write_results,
)
from core.routing.router import pick_device
from core.training.metrics import accuracy, best_llm_per_task, training_view
from core.training.trainer import EncodingCache, fit

logger = logging.getLogger("benchmarks.paper")

TASK_NAMES = {
    "mmlu": "MMLU",
    "gsm8k": "GSM8K",
    "cmmlu": "CMMLU",
    "arc_challenge": "ARC-C",
    "humaneval": "HumanEval",
}
SAMPLES_PER_TASK = 1000
PAPER_REPORTED = {
    "paper_routerdc": {
        "MMLU": 61.07,
        "GSM8K": 70.32,
        "CMMLU": 51.77,
        "ARC-C": 58.52,
        "HumanEval": 51.02,
        "average": 58.54,
    },
    "paper_zooter": {"average": 53.97},
    "paper_lora_retriever": {"average": 55.77},
    "paper_best_single_llm": {"average": 54.56},
}
# Full fine-tuning on this CPU: the budget that fits the 90-minute run with 3 seeds.
FULL_STEPS, FULL_BATCH = 150, 32
FULL_FINE_TUNING = {
    "train_encoder": True,
    "steps": FULL_STEPS,
    "batch_size": FULL_BATCH,
    "learning_rate": 5e-5,
    "eval_every": 25,
}
# The paper's loss settings (our defaults differ: benchmarks/results/tuning.md), and its recipe.
_PAPER = core.TrainConfig.paper()
PAPER_LOSS = {
    name: getattr(_PAPER, name)
    for name in (
        "temperature",
        "top_k_positive",
        "top_k_negative",
        "negative_max_score",
        "smoothing_neighbours",
        "binary",
    )
}
PAPER_RECIPE = PAPER_LOSS | {
    "train_encoder": True,
    "steps": 1000,
    "batch_size": 64,
    "pooling": "first",
    "learning_rate": 5e-5,
    "max_length": 512,
}


def task_of(path: Path) -> str:
    return path.stem.rsplit("_", 1)[0]


def paper_sampling(data: core.RoutingData, per_task: int, seed: int) -> core.RoutingData:
    """Each task repeated (if shorter) or cut (if longer) to ``per_task`` queries, seeded."""
    rng = np.random.default_rng(seed)
    tasks = np.array(data.tasks or [""] * len(data))
    rows: list[int] = []
    for task in dict.fromkeys(tasks):
        own = rng.permutation(np.flatnonzero(tasks == task))
        rows.extend(np.resize(own, per_task).tolist())
    return data.subset(rows)


class Experiment:
    """Data, the shared encoding cache and the test sets, for one run of the benchmark."""

    def __init__(self, data_dir: Path, per_task: int, cache: EncodingCache) -> None:
        train_files = sorted(data_dir.glob("*_train.json"))
        test_files = sorted(data_dir.glob("*_test.json"))
        self.train = core.RoutingData.concat(
            [core.RoutingData.from_file(p, task=task_of(p)) for p in train_files]
        )
        self.tests = {task_of(p): core.RoutingData.from_file(p) for p in test_files}
        self.per_task = per_task
        self.cache = cache
        self.test_pooled: dict[str, torch.Tensor] = {}

    def split(self, seed: int) -> tuple[core.RoutingData, core.RoutingData]:
        rest, validation = self.train.split(0.1, seed=seed)
        return paper_sampling(rest, self.per_task, seed), validation

    def test_accuracy(
        self, choose: Callable[[core.RoutingData, str], np.ndarray]
    ) -> dict[str, float]:
        """Per-task test accuracy (%) of a chooser, plus the average over tasks."""
        result = {
            TASK_NAMES[task]: 100 * accuracy(data.scores, choose(data, task))
            for task, data in self.tests.items()
        }
        result["average"] = float(np.mean(list(result.values())))
        return result

    def frozen_test_vectors(self, router: core.Router, task: str) -> torch.Tensor:
        """Untrained-encoder outputs of a test set, encoded once for all frozen routers."""
        if task not in self.test_pooled:
            config = core.TrainConfig()
            self.test_pooled[task] = self.cache.encode(router, self.tests[task].queries, config)
        return self.test_pooled[task]


def routerdc_chooser(
    experiment: Experiment, router: core.Router, frozen: bool
) -> Callable[[core.RoutingData, str], np.ndarray]:
    def choose(data: core.RoutingData, task: str) -> np.ndarray:
        if frozen:  # the encoder is untouched: reuse its cached outputs, apply the trained head
            with torch.inference_mode():
                vectors = experiment.frozen_test_vectors(router, task).to(router.device)
                logits, _ = router.model.head(vectors)
            return logits.argmax(dim=1).cpu().numpy()
        return router.logits(data.queries).argmax(axis=1)

    return choose


def run_routerdc(
    experiment: Experiment, name: str, seeds: Sequence[int], overrides: dict[str, Any]
) -> dict[str, Any]:
    runs, histories, seconds, selections = [], [], [], []
    for seed in seeds:
        train, validation = experiment.split(seed)
        start = time.perf_counter()
        router = fit(
            train,
            validation=validation,
            seed=seed,
            encoding_cache=experiment.cache,
            progress=False,
            **overrides,
        )
        seconds.append(time.perf_counter() - start)
        frozen = not router_trains_encoder(overrides)
        runs.append(experiment.test_accuracy(routerdc_chooser(experiment, router, frozen)))
        histories.append(router.history)
        selections.append(router.selection)
        logger.info("%s seed %d: %.2f (%.0f s)", name, seed, runs[-1]["average"], seconds[-1])
        if seed == seeds[0]:
            experiment.last_router = router  # type: ignore[attr-defined]
    chosen = {"chosen_leave_one_out": selections} if any(selections) else {}
    return summarise(runs, overrides | chosen, seconds) | {"histories": histories}


def router_trains_encoder(overrides: dict[str, Any]) -> bool:
    """Whether ``fit(..., **overrides)`` fine-tunes the encoder, resolved as ``fit`` resolves
    it: on the device it will pick (None means "on a GPU")."""
    config = core.TrainConfig()
    choice = overrides.get("train_encoder", config.train_encoder)
    device = pick_device(overrides.get("device", config.device)).type
    return bool(replace(config, train_encoder=choice).resolved(device).train_encoder)


def run_baselines(experiment: Experiment, seeds: Sequence[int]) -> dict[str, dict[str, Any]]:
    """kNN, linear and ZOOTER-style routers on the same frozen encoder's embeddings."""
    probe = fit_probe_router(experiment)
    rows: dict[str, dict[str, Any]] = {}
    for cls in (KNNRouter, LinearRouter, ZooterRouter):
        runs, seconds, chosen_settings = [], [], []
        for seed in seeds:
            train, validation = experiment.split(seed)
            config = core.TrainConfig()
            x_train = experiment.cache.encode(probe, train.queries, config).numpy()
            x_val = experiment.cache.encode(probe, validation.queries, config).numpy()
            start = time.perf_counter()
            torch.manual_seed(seed)
            baseline = cls().fit(x_train, training_view(train), x_val, training_view(validation))
            seconds.append(time.perf_counter() - start)
            chosen_settings.append(baseline.validation)

            def choose(data: core.RoutingData, task: str, model: Any = baseline) -> np.ndarray:
                vectors = experiment.frozen_test_vectors(probe, task).numpy()
                return model.utilities(vectors).argmax(axis=1)

            runs.append(experiment.test_accuracy(choose))
        rows[cls.name] = summarise(runs, {"validation": chosen_settings}, seconds)
    return rows


def fit_probe_router(experiment: Experiment) -> core.Router:
    """An untrained router: only its encoder and tokenizer are used, to fill the cache."""
    train, validation = experiment.split(0)
    return fit(
        train.subset(range(64)),
        steps=1,
        train_encoder=False,
        progress=False,
        validation=validation.subset(range(8)),
        encoding_cache=experiment.cache,
    )


def reference_rows(experiment: Experiment) -> dict[str, dict[str, Any]]:
    """Single LLMs, the best single LLM, the best LLM per task (chosen on train), oracle, random."""
    llms = experiment.train.llm_names
    rows: dict[str, dict[str, Any]] = {}
    for index, llm in enumerate(llms):

        def always(data: core.RoutingData, task: str, column: int = index) -> np.ndarray:
            return np.full(len(data), column)

        rows[f"llm:{llm}"] = experiment.test_accuracy(always)
    best = max(llms, key=lambda n: rows[f"llm:{n}"]["average"])
    rows["best_single_llm"] = rows[f"llm:{best}"] | {"llm": best}
    per_task = best_llm_per_task(experiment.train)
    rows["best_llm_per_task"] = experiment.test_accuracy(
        lambda data, task: np.full(len(data), per_task[task])
    ) | {"llms": {TASK_NAMES[t]: llms[i] for t, i in per_task.items()}}

    def oracle(data: core.RoutingData, task: str) -> np.ndarray:
        return np.nan_to_num(training_view(data), nan=-1).argmax(axis=1)

    rows["oracle"] = experiment.test_accuracy(oracle)
    rows["random"] = {  # expected accuracy of a uniformly random choice
        TASK_NAMES[t]: float(np.mean([rows[f"llm:{n}"][TASK_NAMES[t]] for n in llms]))
        for t in experiment.tests
    }
    rows["random"]["average"] = float(np.mean([rows[f"llm:{n}"]["average"] for n in llms]))
    return rows


def summarise(
    runs: list[dict[str, float]], settings: dict[str, Any], seconds: list[float]
) -> dict[str, Any]:
    keys = list(runs[0])
    return {
        "average": float(np.mean([r["average"] for r in runs])),
        "average_std": float(np.std([r["average"] for r in runs])),
        "tasks": {k: float(np.mean([r[k] for r in runs])) for k in keys if k != "average"},
        "tasks_std": {k: float(np.std([r[k] for r in runs])) for k in keys if k != "average"},
        "seeds": runs,
        "train_seconds": seconds,
        "settings": settings,
    }


def markdown(payload: dict[str, Any]) -> str:
    names = list(TASK_NAMES.values())
    lines = [
        "# RouterDC on the paper's in-distribution benchmark (test accuracy, %)",
        "",
        "| row | " + " | ".join(names) + " | average |",
        "|---|" + "---:|" * (len(names) + 1),
    ]

    def cell(row: dict[str, Any], key: str) -> str:
        tasks = row.get("tasks", row)
        value = row.get("average") if key == "average" else tasks.get(key)
        if value is None:
            return ""
        std = row.get("average_std") if key == "average" else row.get("tasks_std", {}).get(key)
        return f"{value:.2f} ± {std:.2f}" if std is not None else f"{value:.2f}"

    ordered = [("routerdc (default recipe)", payload["routerdc"])]
    ordered += [(name, row) for name, row in payload["rows"].items()]
    for name, row in ordered:
        lines.append(f"| {name} | " + " | ".join(cell(row, k) for k in [*names, "average"]) + " |")
    settings = payload["provenance"]["settings"]
    lines += [
        "",
        f"Seeds {settings['seeds']}; mean ± standard deviation over seeds where a row is trained. "
        "Rows `paper_*` are the paper's reported numbers, not ours. `best_llm_per_task` picks, "
        "for each task, the LLM best on that task's training file.",
        "",
        f"Default recipe: `{payload['default_recipe']}`.",
    ]
    return "\n".join(lines)


def plots(payload: dict[str, Any], experiment: Experiment, prefix: str = "paper") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {"routerdc": payload["routerdc"]} | {
        k: v for k, v in payload["rows"].items() if not k.startswith("llm:")
    }
    fig, ax = plt.subplots(figsize=(10, 4.5))
    names = list(rows)
    ax.bar(
        range(len(names)),
        [rows[n]["average"] for n in names],
        yerr=[rows[n].get("average_std", 0) for n in names],
        color="tab:blue",
    )
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_ylabel("average test accuracy (%)")
    ax.set_ylim(40, max(rows[n]["average"] for n in names) + 5)
    ax.set_title("RouterDC and baselines, paper's in-distribution tasks")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{prefix}_averages.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (
        ("routerdc", "RouterDC"),
        ("routerdc_no_sample_sample", "without sample-sample loss"),
    ):
        row = payload["routerdc"] if key == "routerdc" else payload["rows"].get(key)
        if row is None:
            continue
        curve = [
            (h["step"], 100 * h["validation_accuracy"])
            for h in row["histories"][0]
            if "validation_accuracy" in h
        ]
        ax.plot(*zip(*curve, strict=False), label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend()
    ax.set_title("Validation accuracy during training (seed 0)")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{prefix}_training_curve.png", dpi=120)
    plt.close(fig)

    from sklearn.decomposition import PCA

    router = experiment.last_router  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    vectors, labels = [], []
    for task, data in experiment.tests.items():
        rows_ = rng.choice(len(data), size=min(300, len(data)), replace=False)
        pooled = experiment.frozen_test_vectors(router, task)[rows_]
        with torch.inference_mode():
            _, projected = router.model.head(pooled.to(router.device))
        vectors.append(projected.cpu().numpy())
        labels += [TASK_NAMES[task]] * len(rows_)
    points = PCA(n_components=2, random_state=0).fit_transform(np.concatenate(vectors))
    fig, ax = plt.subplots(figsize=(6, 5))
    for name in TASK_NAMES.values():
        mask = np.array(labels) == name
        ax.scatter(points[mask, 0], points[mask, 1], s=6, label=name, alpha=0.6)
    ax.legend(markerscale=3)
    ax.set_title("Router's query embeddings (PCA), coloured by task")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{prefix}_embeddings.png", dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=PAPER_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="one seed, fewer steps, no full FT")
    parser.add_argument(
        "--paper-recipe",
        action="store_true",
        help="also train the paper's own recipe (hours on a 2-core CPU)",
    )
    parser.add_argument("--skip-full", action="store_true", help="skip the full fine-tuning row")
    parser.add_argument(
        "--output", default="paper", help="results name under benchmarks/results/ (and plots)"
    )
    add_cache_option(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    require_data(args.data_dir)
    seeds = args.seeds[:1] if args.quick else args.seeds
    experiment = Experiment(args.data_dir, SAMPLES_PER_TASK, open_cache(args.encoding_cache))
    default = asdict(core.TrainConfig())
    quick = {"steps": 200} if args.quick else {}
    started = time.perf_counter()

    payload: dict[str, Any] = {
        "provenance": provenance(
            {
                "seeds": seeds,
                "quick": args.quick,
                "samples_per_task": SAMPLES_PER_TASK,
                "validation_fraction": 0.1,
                "full_fine_tuning": {"steps": FULL_STEPS, "batch_size": FULL_BATCH},
            }
        )
    }
    payload["default_recipe"] = {k: v for k, v in default.items() if k != "device"} | quick
    payload["routerdc"] = run_routerdc(experiment, "routerdc", seeds, quick)
    rows: dict[str, Any] = {}
    rows["routerdc_no_sample_sample"] = run_routerdc(
        experiment, "no sample-sample", seeds, quick | {"sample_sample_weight": 0.0}
    )
    rows["routerdc_paper_loss"] = run_routerdc(
        experiment, "paper's loss settings", seeds, quick | {"train_encoder": False} | PAPER_LOSS
    )
    rows["routerdc_no_smoothing"] = run_routerdc(
        experiment, "no smoothing", seeds, quick | {"smoothing_neighbours": 0}
    )
    if router_trains_encoder({}):
        rows["routerdc_frozen"] = run_routerdc(
            experiment, "frozen", seeds, quick | {"train_encoder": False}
        )
    if not (args.quick or args.skip_full) and not router_trains_encoder({}):
        rows["routerdc_full_fine_tuning"] = run_routerdc(
            experiment, "full fine-tuning", seeds, FULL_FINE_TUNING
        )
    if args.paper_recipe:
        rows["routerdc_paper_recipe"] = run_routerdc(
            experiment, "paper recipe", seeds, PAPER_RECIPE
        )
    rows |= run_baselines(experiment, seeds)
    rows |= reference_rows(experiment)
    rows |= PAPER_REPORTED
    payload["rows"] = rows
    payload["total_seconds"] = time.perf_counter() - started
    plots(payload, experiment, args.output)
    for row in [payload["routerdc"], *rows.values()]:
        row.pop("histories", None)
    write_results(args.output, payload, markdown(payload))
    if args.encoding_cache is not None:
        experiment.cache.save(args.encoding_cache)
    logger.info("wrote %s in %.0f s", RESULTS / f"{args.output}.json", payload["total_seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
