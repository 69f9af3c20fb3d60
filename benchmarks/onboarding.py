"""Adding an LLM to a trained router from a few scored queries, leave-one-LLM-out.

    python -m benchmarks.onboarding [--encoding-cache FILE] [--sizes 10 25 50 100 200]
        [--draws 3] [--llms NAME ...] [--select] [--quick]

On the paper's data (``../shared/data/routerdc-7llm/``), for each of its 7 LLMs:

1. ``six``: the default router (``core.fit``, frozen encoder, the CPU recipe) trained on the
   train files without that LLM;
2. ``added``: ``six.add_llm(llm, data)`` with ``data`` n train queries (n in ``--sizes``,
   drawn across the five tasks, ``--draws`` draws each) scored by the held-out LLM and by the
   six others, as an app's own logs would have them; ``added_new_scores_only`` the same with
   the six others' scores hidden (the router's probabilities stand in for them);
3. ``full``: the default router trained on all 7 LLMs, once.

Test accuracy is :func:`core.training.metrics.evaluate` on the five test files, as ``routerdc eval``
measures it (mean over files). ``recovered(n) = (added - six) / (full - six)`` for the LLMs
whose removal costs accuracy (``full > six``), averaged over draws, then over those LLMs. It is
also given pooled, ``sum(added - six) / sum(full - six)``, which a small ``full - six`` cannot
blow up.

Every router here has a frozen encoder, so its query vectors are the encoder's outputs once
and for all: they come from one :class:`core.training.trainer.EncodingCache` (``--encoding-cache``),
through :class:`CachedRouter`, which applies the router's own head to them. ``add_llm`` runs
unchanged on top (it asks the router for vectors and logits). ``add_seconds`` is measured
apart, on the real path: a plain :class:`core.Router` that runs its encoder on the n queries,
as ``router.add_llm`` does in an app. Measured on a busy shared machine it is an upper bound.

``--select`` chooses ``add_llm``'s settings (warm start, neighbours, anchor weight) on the
train split's validation queries, the 10% that ``core.fit`` held out to pick its checkpoints
and never trained on: the queries added are drawn from the other 90%. Nothing is chosen on
the test files. The defaults in :mod:`core.training.onboarding` are the settings this chose.

Writes ``benchmarks/results/onboarding.json``, ``onboarding.md`` and ``onboarding.png``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import tempfile
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import core
from benchmarks.common import (
    PAPER_DATA,
    RESULTS,
    add_cache_option,
    open_cache,
    provenance,
    require_data,
    write_results,
)
from core.training.metrics import evaluate, task_mean_accuracy
from core.training.onboarding import (
    DEFAULT_ANCHOR_WEIGHT,
    DEFAULT_NEIGHBOURS,
    DEFAULT_WARM_START,
    MIN_SCORED_QUERIES,
)
from core.training.trainer import EncodingCache, fit

logger = logging.getLogger("benchmarks.onboarding")

SIZES = (10, 25, 50, 100, 200)
DRAWS = 3
VALIDATION_FRACTION = 0.1  # what core.fit holds out by default, with the same seed
SEED = 0
# The grid --select searches, on validation queries only.
GRID: dict[str, tuple[Any, ...]] = {
    "warm_start": ("auto", "score_weighted"),
    "neighbours": (1, 10, 1000),  # 1000: the whole task, as core.fit mostly chooses
    "anchor_weight": (0.0, 1.0),
}
SELECT_SIZES = (25, 50, 100)
# Removing an LLM "costs accuracy" when the full router beats the six-LLM one by more than this
# many points: removing dolphin-2.6 *raised* test accuracy by 0.59, so gaps of that size come
# from training alone, and a ratio over a gap of 0.01 (dolphin-2.9) is noise times 100.
MIN_GAP = 0.5
PARTIAL = Path(tempfile.gettempdir()) / "routerdc-onboarding-partial.json"  # per LLM, as it runs
TARGET_RECOVERED_50 = 0.8
TARGET_ADD_SECONDS = 10.0


class CachedRouter(core.Router):
    """A frozen-encoder router whose query vectors come from an :class:`EncodingCache`.

    Its logits are its head applied to the cached encoder outputs: what the router computes
    itself, without running the encoder again for every router of the benchmark.
    """

    def __init__(self, router: core.Router, cache: EncodingCache) -> None:
        self.__dict__.update(router.__dict__)
        self.cache = cache

    @torch.inference_mode()
    def _head(self, queries: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.cache.encode(self, list(self.check_queries(queries)), core.TrainConfig())
        logits, vectors = self.model.head(pooled.to(self.device))
        return logits, vectors

    def logits(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return self._head(queries)[0].float().cpu().numpy()

    def embed(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return self._head(queries)[1].float().cpu().numpy()


def read_split(split: str) -> core.RoutingData:
    """The five ``*_<split>.json`` files as one data set, each query labelled by its task."""
    folder = require_data(PAPER_DATA)
    files = sorted(folder.glob(f"*_{split}.json"))
    return core.RoutingData.concat(
        [core.RoutingData.from_file(p, task=p.stem.rsplit("_", 1)[0]) for p in files]
    )


def read_tests() -> dict[str, core.RoutingData]:
    folder = require_data(PAPER_DATA)
    return {p.name: core.RoutingData.from_file(p) for p in sorted(folder.glob("*_test.json"))}


def without(data: core.RoutingData, llm: str) -> core.RoutingData:
    keep = [i for i, name in enumerate(data.llm_names) if name != llm]
    return core.RoutingData(
        data.queries,
        [data.llm_names[i] for i in keep],
        data.scores[:, keep],
        None if data.costs is None else data.costs[:, keep],
        data.tasks,
    )


def new_scores_only(data: core.RoutingData, llm: str) -> core.RoutingData:
    """``data`` with every LLM's scores but ``llm``'s hidden."""
    scores = np.full_like(data.scores, np.nan)
    column = data.llm_names.index(llm)
    scores[:, column] = data.scores[:, column]
    return core.RoutingData(data.queries, data.llm_names, scores, None, data.tasks)


def draw_across_tasks(
    tasks: Sequence[str], rows: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` of ``rows``, as even across tasks as their sizes allow, the rest at random."""
    labels = np.asarray(tasks)[rows]
    names = list(dict.fromkeys(labels.tolist()))
    shuffled = {t: rng.permutation(rows[labels == t]) for t in names}
    share = {t: min(n // len(names), len(shuffled[t])) for t in names}
    chosen = [r for t in names for r in shuffled[t][: share[t]]]
    rest = rng.permutation([r for t in names for r in shuffled[t][share[t] :]])
    chosen.extend(rest[: n - len(chosen)])
    return np.array(chosen)


def fit_router(data: core.RoutingData, cache: EncodingCache) -> core.Router:
    return fit(data, train_encoder=False, encoding_cache=cache, progress=False, seed=SEED)


def test_accuracy(router: core.Router, tests: Mapping[str, core.RoutingData]) -> float:
    """Mean over the test files of the router's accuracy (%), as ``routerdc eval`` reports."""
    return float(evaluate(router, tests)["average"]["router"])


def validation_accuracy(router: CachedRouter, validation: core.RoutingData) -> float:
    chosen = router.logits(validation.queries).argmax(axis=1)
    columns = [validation.llm_names.index(n) for n in router.config.llm_names]
    view = core.RoutingData(
        validation.queries,
        list(router.config.llm_names),
        validation.scores[:, columns],
        None,
        validation.tasks,
    )
    return 100 * task_mean_accuracy(view, chosen)


def draw_seed(llm: str, n: int, draw: int) -> int:
    return zlib.crc32(f"{llm}|{n}|{draw}".encode())


class Setup:
    """The data, the full router, the six-LLM routers and the draws, made once per run."""

    def __init__(
        self, llms: Sequence[str], sizes: Sequence[int], draws: int, cache: EncodingCache
    ) -> None:
        self.cache = cache
        self.train, self.tests = read_train_and_tests()
        train_rows, val_rows = self.train.split_indices(VALIDATION_FRACTION, seed=SEED)
        self.validation = self.train.subset(val_rows)
        started = time.perf_counter()
        self.full = CachedRouter(fit_router(self.train, cache), cache)
        self.plain_six = {llm: fit_router(without(self.train, llm), cache) for llm in llms}
        self.six = {llm: CachedRouter(router, cache) for llm, router in self.plain_six.items()}
        logger.info("trained 1 + %d routers in %.0f s", len(llms), time.perf_counter() - started)
        self.draws = {
            (llm, n, draw): self.train.subset(
                draw_across_tasks(
                    self.train.tasks or [],
                    train_rows,
                    n,
                    np.random.default_rng(draw_seed(llm, n, draw)),
                )
            )
            for llm in llms
            for n in sizes
            for draw in range(draws)
        }


def select_settings(setup: Setup) -> dict[str, float]:
    """Mean validation accuracy (%) of every GRID setting over every LLM, for the first draw
    of each n in ``SELECT_SIZES`` (a subset, to fit the search in minutes on a busy CPU)."""
    search: dict[str, float] = {}
    for values in itertools.product(*GRID.values()):
        setting = dict(zip(GRID, values, strict=True))
        key = json.dumps(setting)
        accuracies = [
            validation_accuracy(
                CachedRouter(setup.six[llm].add_llm(llm, onboard, **setting), setup.cache),
                setup.validation,
            )
            for (llm, n, draw), onboard in setup.draws.items()
            if draw == 0 and n in SELECT_SIZES
        ]
        search[key] = float(np.mean(accuracies))
        logger.info("validation %.3f%% with %s", search[key], key)
    return search


def run(
    setup: Setup, sizes: Sequence[int], draws: int, options: Mapping[str, Any]
) -> dict[str, Any]:
    """Test accuracy of the full, six-LLM and added routers."""
    cache, tests = setup.cache, setup.tests
    per_llm: dict[str, Any] = {}
    for llm, six in setup.six.items():
        started = time.perf_counter()
        row: dict[str, Any] = {
            "six": test_accuracy(six, tests),
            "six_validation": validation_accuracy(six, setup.validation),
            "added": {str(n): [] for n in sizes},
            "added_new_scores_only": {str(n): [] for n in sizes},
        }
        for n in sizes:
            for draw in range(draws):
                onboard = setup.draws[llm, n, draw]
                added = CachedRouter(six.add_llm(llm, onboard, **options), cache)
                row["added"][str(n)].append(test_accuracy(added, tests))
                hidden = new_scores_only(onboard, llm)
                alone = CachedRouter(six.add_llm(llm, hidden, **options), cache)
                row["added_new_scores_only"][str(n)].append(test_accuracy(alone, tests))
        per_llm[llm] = row
        PARTIAL.write_text(json.dumps(per_llm, indent=1), encoding="utf-8")
        logger.info(
            "%s: six %.2f%%, added %s (%.0f s)",
            llm,
            row["six"],
            {n: round(float(np.mean(v)), 2) for n, v in row["added"].items()},
            time.perf_counter() - started,
        )
    return {
        "full": test_accuracy(setup.full, tests),
        "full_validation": validation_accuracy(setup.full, setup.validation),
        "per_llm": per_llm,
        "add_llm_options": dict(options),
    }


def read_train_and_tests() -> tuple[core.RoutingData, dict[str, core.RoutingData]]:
    return read_split("train"), read_tests()


def time_adds(
    setup: Setup, llm: str, options: Mapping[str, Any], sizes: Sequence[int]
) -> dict[str, float]:
    """Seconds ``router.add_llm`` takes on a plain router (its encoder runs), per n."""
    seconds: dict[str, float] = {}
    for (name, n, draw), onboard in setup.draws.items():
        if name == llm and draw == 0 and n in sizes:
            started = time.perf_counter()
            setup.plain_six[llm].add_llm(llm, onboard, **options)
            seconds[str(n)] = time.perf_counter() - started
    return seconds


def summarise(results: dict[str, Any], sizes: Sequence[int]) -> dict[str, Any]:
    """``recovered`` and its pooled form per n and variant, over LLMs whose removal costs."""
    full = results["full"]
    costly = [llm for llm, row in results["per_llm"].items() if full - row["six"] > MIN_GAP]
    any_gap = [llm for llm, row in results["per_llm"].items() if full > row["six"]]
    summary: dict[str, Any] = {"llms_whose_removal_costs": costly, "min_gap": MIN_GAP}
    summary["recovered_any_gap"] = {
        str(n): mean_ratio(results, any_gap, "added", n) if any_gap else None for n in sizes
    }
    for variant, key in (("added", "recovered"), ("added_new_scores_only", "recovered_new_only")):
        per_llm: dict[str, dict[str, float]] = {}
        for llm in costly:
            row = results["per_llm"][llm]
            gap = full - row["six"]
            per_llm[llm] = {
                str(n): float(np.mean([(a - row["six"]) / gap for a in row[variant][str(n)]]))
                for n in sizes
            }
        summary[key] = {
            str(n): float(np.mean([per_llm[llm][str(n)] for llm in costly])) if costly else None
            for n in sizes
        }
        summary[f"{key}_pooled"] = {
            str(n): pooled_recovered(results, costly, variant, n) for n in sizes
        }
        summary[f"{key}_per_llm"] = per_llm
    return summary


def mean_ratio(results: dict[str, Any], llms: Sequence[str], variant: str, n: int) -> float:
    """Mean over ``llms`` of ``(added - six) / (full - six)``, added averaged over draws."""
    ratios = [
        (float(np.mean(results["per_llm"][m][variant][str(n)])) - results["per_llm"][m]["six"])
        / (results["full"] - results["per_llm"][m]["six"])
        for m in llms
    ]
    return float(np.mean(ratios))


def pooled_recovered(
    results: dict[str, Any], llms: Sequence[str], variant: str, n: int
) -> float | None:
    """``sum(added - six) / sum(full - six)`` over ``llms`` (added: the mean over draws)."""
    if not llms:
        return None
    rows = [results["per_llm"][llm] for llm in llms]
    gained = sum(float(np.mean(row[variant][str(n)])) - row["six"] for row in rows)
    return gained / sum(results["full"] - row["six"] for row in rows)


def markdown(payload: dict[str, Any]) -> str:
    results, summary, sizes = payload["results"], payload["summary"], payload["settings"]["sizes"]
    short = {llm: llm.split("/")[-1] for llm in results["per_llm"]}
    lines = [
        "# Adding an LLM from a few scored queries (leave-one-LLM-out, test accuracy %)",
        "",
        f"Full 7-LLM router: {results['full']:.2f}%. `six`: the router trained without the "
        "LLM; `added(n)`: `six.add_llm` from n train queries scored by the new LLM and the six "
        f"others (mean ± sd over {payload['settings']['draws']} draws).",
        "",
        "| LLM left out | six | full - six | " + " | ".join(f"added({n})" for n in sizes) + " |",
        "|---|---:|---:|" + "---:|" * len(sizes),
    ]
    for llm, row in results["per_llm"].items():
        cells = [
            f"{np.mean(row['added'][str(n)]):.2f} ± {np.std(row['added'][str(n)]):.2f}"
            for n in sizes
        ]
        gap = results["full"] - row["six"]
        lines.append(
            f"| {short[llm]} | {row['six']:.2f} | {gap:+.2f} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        f"## recovered(n) = (added - six) / (full - six), over the LLMs whose removal costs "
        f"more than {summary['min_gap']} points: "
        f"{', '.join(short[m] for m in summary['llms_whose_removal_costs'])}",
        "",
        "| | " + " | ".join(f"n={n}" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]

    def fmt(values: Mapping[str, float | None]) -> str:
        return " | ".join("" if values[str(n)] is None else f"{values[str(n)]:.2f}" for n in sizes)

    lines.append(f"| recovered (mean of ratios) | {fmt(summary['recovered'])} |")
    lines.append(f"| recovered, pooled | {fmt(summary['recovered_pooled'])} |")
    lines.append(
        f"| every LLM with full > six (mean of ratios; tiny gaps blow it up) | "
        f"{fmt(summary['recovered_any_gap'])} |"
    )
    for llm, values in summary["recovered_per_llm"].items():
        lines.append(f"| {short[llm]} | {fmt(values)} |")
    lines.append(f"| new LLM's scores only: mean | {fmt(summary['recovered_new_only'])} |")
    lines.append(f"| new LLM's scores only: pooled | {fmt(summary['recovered_new_only_pooled'])} |")
    target = summary["recovered"].get("50")
    verdict = (
        "no n=50 run" if target is None else ("met" if target >= TARGET_RECOVERED_50 else "not met")
    )
    lines += [
        "",
        f"Target recovered(50) >= {TARGET_RECOVERED_50}: {verdict}.",
        "",
        "## Time to add (`router.add_llm`, encoder run on the n queries, one CPU)",
        "",
        "| n | " + " | ".join(str(n) for n in payload["add_seconds"]) + " |",
        "|---|" + "---:|" * len(payload["add_seconds"]),
        "| seconds | " + " | ".join(f"{s:.2f}" for s in payload["add_seconds"].values()) + " |",
        "",
        f"Target < {TARGET_ADD_SECONDS:.0f} s. {payload['add_seconds_note']}",
        "",
        f"Settings of add_llm: {payload['settings']['add_llm']}.",
    ]
    if payload.get("validation_search"):
        lines += ["", select_markdown(payload["validation_search"]).replace("# ", "## ", 1)]
    return "\n".join(lines)


def select_markdown(search: Mapping[str, float]) -> str:
    """The validation scores of GRID's settings, best first."""
    lines = [
        "# add_llm's settings chosen on validation (train split's held-out 10%)",
        "",
        "Mean validation accuracy (%) over every LLM left out, n and draw, of the router with "
        f"the LLM added (first draw, n in {SELECT_SIZES}); the queries added are drawn from "
        "the other 90% of the train files. The best is the one tested above.",
        "",
        "| setting | validation accuracy % |",
        "|---|---:|",
        *[f"| `{k}` | {v:.3f} |" for k, v in sorted(search.items(), key=lambda kv: -kv[1])],
    ]
    return "\n".join(lines)


def plot(payload: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = payload["settings"]["sizes"]
    summary = payload["summary"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for llm, values in summary["recovered_per_llm"].items():
        ax.plot(
            sizes, [values[str(n)] for n in sizes], alpha=0.4, marker=".", label=llm.split("/")[-1]
        )
    for key, label in (
        ("recovered", "mean"),
        ("recovered_new_only", "mean, new LLM's scores only"),
    ):
        if all(summary[key][str(n)] is not None for n in sizes):
            ax.plot(sizes, [summary[key][str(n)] for n in sizes], lw=2.5, marker="o", label=label)
    ax.axhline(TARGET_RECOVERED_50, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("scored queries added from (n)")
    ax.set_ylabel("recovered share of the full retrain's gain")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "onboarding.png", dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--draws", type=int, default=DRAWS)
    parser.add_argument("--llms", nargs="+", help="leave out only these (default: all 7)")
    parser.add_argument(
        "--select",
        action="store_true",
        help="choose add_llm's settings of GRID on the validation queries, then test those",
    )
    parser.add_argument(
        "--quick", action="store_true", help="two LLMs, n = 10 and 50, one draw: a smoke run"
    )
    parser.add_argument(
        "--timing-sizes",
        type=int,
        nargs="*",
        help="n to time add_llm on, its encoder running (default: --sizes; none: skip)",
    )
    parser.add_argument("--output", default="onboarding", help="results file name")
    parser.add_argument(
        "--from-json", type=Path, help="rewrite the report of a results file, running nothing"
    )
    add_cache_option(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.from_json is not None:
        payload = json.loads(args.from_json.read_text(encoding="utf-8"))
        payload["summary"] = summarise(payload["results"], payload["settings"]["sizes"])
        payload["recovered"] = payload["summary"]["recovered"]
        write_results(args.output, payload, markdown(payload))
        if args.output == "onboarding":
            plot(payload)
        print(markdown(payload))
        return 0
    if min(args.sizes) < MIN_SCORED_QUERIES:
        parser.error(f"--sizes: add_llm needs at least {MIN_SCORED_QUERIES} queries")
    names = read_split("train").llm_names
    llms = args.llms or names
    sizes, draws = args.sizes, args.draws
    if args.quick:
        llms, sizes, draws = llms[:2], [10, 50], 1
    options = {
        "warm_start": DEFAULT_WARM_START,
        "neighbours": DEFAULT_NEIGHBOURS,
        "anchor_weight": DEFAULT_ANCHOR_WEIGHT,
    }
    cache = open_cache(args.encoding_cache)
    cached_before = len(cache)
    setup = Setup(llms, sizes, draws, cache)
    search: dict[str, float] = {}
    if args.select:
        search = select_settings(setup)
        options = json.loads(max(search, key=lambda k: search[k]))
        logger.info("chosen on validation: %s", options)
    results = run(setup, sizes, draws, options)
    timed = sizes if args.timing_sizes is None else args.timing_sizes
    add_seconds = time_adds(setup, llms[0], options, timed)
    if args.encoding_cache is not None and len(cache) > cached_before:
        cache.save(args.encoding_cache)
    payload: dict[str, Any] = {
        "provenance": provenance({"llms": list(llms), "sizes": sizes, "draws": draws}),
        "settings": {"sizes": sizes, "draws": draws, "add_llm": options, "seed": SEED},
        "results": results,
        "validation_search": search,
    }
    payload["summary"] = summarise(results, sizes)
    payload["recovered"] = payload["summary"]["recovered"]
    payload["add_seconds"] = add_seconds
    payload["add_seconds_note"] = (
        f"Measured with {torch.get_num_threads()} torch threads on a machine shared with "
        "other jobs: an upper bound; rerun alone for the figure."
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = write_results(args.output, payload, markdown(payload))
    if args.output == "onboarding":
        plot(payload)
    logger.info("wrote %s and %s", json_path, md_path)
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
