"""The ``routerdc`` command line: train, eval, route, calibrate, export, info, log, demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import DEFAULT_MAX_LENGTH, DEFAULT_POOLING, POOLINGS, TrainConfig
from .data.dataset import RoutingData
from .errors import RouterDCError, RouterFileError

DEMO_QUERIES = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?",
    'def is_palindrome(s: str) -> bool:\n    """Return True if s reads the same backwards."""',
    "以下是关于中国历史的单项选择题。秦始皇统一六国是在哪一年？\nA. 公元前221年\nB. 公元前206年",
    "Which of the following is a function of the liver?\nA. Producing insulin\nB. Producing bile",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except RouterDCError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routerdc", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a router on routing data files")
    train.add_argument("--data", nargs="+", help=".json, .jsonl or .csv files")
    train.add_argument("--out", required=True, help="folder to save the router in")
    _add_recipe_options(train)
    _add_log_training_options(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("eval", help="accuracy per file against single LLMs and oracle")
    evaluate.add_argument("--router", required=True)
    evaluate.add_argument("--data", nargs="+", required=True)
    evaluate.add_argument("--json", help="also write the results to this JSON file")
    metric = evaluate.add_mutually_exclusive_group()
    metric.add_argument(
        "--binary",
        dest="binary",
        action="store_true",
        default=None,
        help="count any score above 0 as right (multiple-choice probabilities)",
    )
    metric.add_argument(
        "--no-binary", dest="binary", action="store_false", help="average the raw scores"
    )
    evaluate.set_defaults(run=_eval)

    route = commands.add_parser("route", help="route one or more queries")
    route.add_argument("--router", required=True)
    route.add_argument("queries", nargs="+")
    _add_routing_options(route)
    route.add_argument(
        "--ood-backoff",
        type=float,
        help="back off towards the best LLM over the training data as a query's "
        "in-distribution score falls below this (0: never; default: the router's)",
    )
    route.set_defaults(run=_route)

    calibrate = commands.add_parser("calibrate", help="find the cost weight that meets a budget")
    calibrate.add_argument("--router", required=True)
    calibrate.add_argument("--data", nargs="+", required=True, help="validation data files")
    target = calibrate.add_mutually_exclusive_group(required=True)
    target.add_argument("--budget", type=float, help="mean dollars per query")
    target.add_argument(
        "--expensive-share", type=float, help="share of calls to the most expensive LLM, in [0, 1]"
    )
    calibrate.add_argument("--costs", help='JSON prices, e.g. \'{"gpt-4": 0.01, "llama": 0.0002}\'')
    calibrate.add_argument(
        "--tie-standard-errors",
        type=float,
        default=2.0,
        help="accuracy this many standard errors below the best counts as tied; of tied "
        "weights the one spending most of the budget is kept (0: best accuracy exactly)",
    )
    calibrate.set_defaults(run=_calibrate)

    add_llm = commands.add_parser(
        "add-llm", help="add an LLM to a trained router from queries it answered (seconds)"
    )
    add_llm.add_argument("--router", required=True)
    add_llm.add_argument("--name", required=True, help="the new LLM, a score column of --data")
    add_llm.add_argument("--data", nargs="+", required=True, help="queries scored by the new LLM")
    add_llm.add_argument("--cost", type=float, help="its price per query in dollars")
    add_llm.add_argument("--out", required=True, help="folder to save the new router in")
    add_llm.set_defaults(run=_add_llm)

    remove_llm = commands.add_parser("remove-llm", help="a router without one of its LLMs")
    remove_llm.add_argument("--router", required=True)
    remove_llm.add_argument("--name", required=True)
    remove_llm.add_argument("--out", required=True)
    remove_llm.set_defaults(run=_remove_llm)

    rename_llm = commands.add_parser("rename-llm", help="a router calling an LLM by a new name")
    rename_llm.add_argument("--router", required=True)
    rename_llm.add_argument("--name", required=True, help="the LLM's current name")
    rename_llm.add_argument("--new-name", required=True)
    rename_llm.add_argument("--out", required=True)
    rename_llm.set_defaults(run=_rename_llm)

    export = commands.add_parser(
        "export", help="write a router to ONNX, to route without torch (onnxruntime only)"
    )
    export.add_argument("--router", required=True, help="a saved (torch) router's folder")
    export.add_argument("--out", required=True, help="folder to write the exported router to")
    export.add_argument(
        "--int8", action="store_true", help="quantise the encoder's weights to int8 (dynamic)"
    )
    export.set_defaults(run=_export)

    log = commands.add_parser("log", help="a routing log: its statistics, importing outcomes")
    log_commands = log.add_subparsers(dest="log_command", required=True)
    stats = log_commands.add_parser("stats", help="calls, outcomes, shares, accuracy per LLM")
    stats.add_argument("path", help="the routing log (SQLite file)")
    stats.add_argument("--json", help="also write the statistics to this JSON file")
    stats.set_defaults(run=_log_stats)
    outcomes = log_commands.add_parser("outcomes", help="record outcomes from a CSV/JSONL export")
    outcomes.add_argument("path", help="the routing log (SQLite file)")
    outcomes.add_argument("export", help=".csv or .jsonl with run_id and score")
    outcomes.set_defaults(run=_log_outcomes)

    info = commands.add_parser("info", help="how a saved router was trained (training.json)")
    info.add_argument("--router", required=True)
    info.set_defaults(run=_info)

    demo = commands.add_parser("demo", help="train, evaluate and route on the paper's data")
    demo.add_argument("--data-dir", help="local copy of the RouterDC data (else downloaded once)")
    demo.add_argument("--out", default="runs/demo-router", help="where to save the router")
    demo.set_defaults(run=_demo)
    return parser


def _add_recipe_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--encoder", help="Hugging Face id or local path (default: MiniLM)")
    parser.add_argument(
        "--paper-recipe",
        action="store_true",
        help="the paper's recipe: its loss settings, first-token pooling, the whole encoder "
        "fine-tuned (hours on a CPU); the options below still override it",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--frozen-encoder",
        dest="train_encoder",
        action="store_false",
        default=None,
        help="encode once and train only the head (CPU default)",
    )
    mode.add_argument(
        "--full-encoder",
        dest="train_encoder",
        action="store_true",
        help="fine-tune the whole encoder, as the paper (GPU default; hours on CPU)",
    )
    parser.add_argument("--steps", type=int, help=f"default {defaults.steps}")
    parser.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    parser.add_argument(
        "--learning-rate", type=float, help=f"encoder's, default {defaults.learning_rate}"
    )
    parser.add_argument(
        "--pooling",
        choices=POOLINGS,
        help=f"default: as the encoder's sentence-transformers files say, else {DEFAULT_POOLING}",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        help="default: the encoder's max_seq_length (sentence_bert_config.json), "
        f"else {DEFAULT_MAX_LENGTH}",
    )
    parser.add_argument("--seed", type=int, help=f"default {defaults.seed}")
    parser.add_argument(
        "--cost-rate",
        type=float,
        default=0.0,
        help="train on score - rate * normalised cost (needs costs in the data)",
    )
    parser.add_argument("--history", help="write the training history here (JSON lines)")


def _add_log_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log", help="also (or only) train on the outcomes of this routing log (SQLite)"
    )
    parser.add_argument(
        "--log-weighting",
        choices=("ips", "none"),
        default="ips",
        help="correct for the logging policy with clipped inverse-propensity weights (ips, "
        "default) or count every outcome once (none)",
    )
    parser.add_argument(
        "--clip", type=float, default=3.0, help="largest inverse-propensity weight (default 3)"
    )


def _training_data(args: argparse.Namespace) -> tuple[RoutingData, Any, Any]:
    """The data of ``--data`` and ``--log``, its sample weights and the log's encoding cache."""
    if not args.data and not args.log:
        raise SystemExit("train: give --data files, --log a routing log, or both")
    parts = [RoutingData.from_files(args.data)] if args.data else []
    weights, cache = None, None
    if args.log:
        import numpy as np

        logged = RoutingData.from_log(args.log, weighting=args.log_weighting, clip=args.clip)
        print(f"the log holds {len(logged)} calls with an outcome")
        if logged.sample_weights is not None:
            given = [np.ones(len(parts[0]))] if parts else []
            weights = np.concatenate([*given, logged.sample_weights])
        if logged.vectors is not None:
            cache = logged.encoding_cache()
        parts.append(logged)
    data = parts[0] if len(parts) == 1 else RoutingData.concat(parts)
    return data, weights, cache


def _log_stats(args: argparse.Namespace) -> int:
    from .data.log import RoutingLog

    if not Path(args.path).is_file():
        raise SystemExit(f"{args.path}: no such routing log")
    stats = RoutingLog(args.path).stats()
    share = stats["outcomes"] / stats["calls"] if stats["calls"] else 0.0
    print(
        f"{stats['calls']} calls, {stats['outcomes']} outcomes ({100 * share:.1f}%), "
        f"{100 * stats['explored_share']:.1f}% explored"
    )
    width = max([len(name) for name in stats["llms"]] + [3])
    print(f"{'LLM'.ljust(width)}  share  outcomes  observed score [95% interval]")
    for name, row in stats["llms"].items():
        if row["mean_score"] is None:
            observed = "-"
        else:
            low, high = row["interval_95"]
            observed = f"{100 * row['mean_score']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"
        print(f"{name.ljust(width)}  {100 * row['share']:4.1f}%  {row['outcomes']:8d}  {observed}")
    if args.json:
        Path(args.json).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return 0


def _log_outcomes(args: argparse.Namespace) -> int:
    from .data.log import RoutingLog

    if not Path(args.path).is_file():
        raise SystemExit(f"{args.path}: no such routing log")
    count = RoutingLog(args.path).import_outcomes(args.export)
    print(f"recorded {count} outcomes from {args.export}")
    return 0


def _recipe(args: argparse.Namespace) -> TrainConfig:
    """The default or the paper's recipe, with the options given on the command line."""
    base = TrainConfig.paper() if args.paper_recipe else TrainConfig()
    names = (
        "train_encoder",
        "steps",
        "batch_size",
        "learning_rate",
        "pooling",
        "max_length",
        "seed",
    )
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    return replace(base, **given)


def _add_routing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cost-weight",
        type=float,
        default=0.0,
        help="trade probability for price: argmax p - w * cost / max cost",
    )
    parser.add_argument("--costs", help='JSON prices, e.g. \'{"gpt-4": 0.01, "llama": 0.0002}\'')
    parser.add_argument("--allowed", nargs="+", help="route only among these LLMs")
    parser.add_argument("--exclude", nargs="+", help="never route to these LLMs")


def _read_files(paths: Sequence[str]) -> dict[str, RoutingData]:
    return {Path(p).name: RoutingData.from_file(p) for p in paths}


def _costs(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--costs is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise SystemExit("--costs must be a JSON object of LLM -> dollars")
    return {str(k): float(v) for k, v in value.items()}


def _train(args: argparse.Namespace) -> int:
    from .training.distributed import is_main_process
    from .training.trainer import fit

    data, weights, cache = _training_data(args)
    main_process = is_main_process()  # under accelerate launch, only rank 0 prints and saves
    if main_process:
        print(f"training on {len(data)} queries, {len(data.llm_names)} LLMs")
    start = time.perf_counter()
    router = fit(
        data,
        encoder=args.encoder,
        config=_recipe(args),
        cost_rate=args.cost_rate,
        history_path=args.history,
        sample_weights=weights,
        encoding_cache=cache,
    )
    if not main_process:
        return 0
    router.save(args.out)
    for setting, value in router.selection.items():
        print(f"chosen from the training data: {setting} = {value}")
    best = max(
        (h["validation_accuracy"] for h in router.history if "validation_accuracy" in h),
        default=None,
    )
    note = f", best validation accuracy {100 * best:.2f}%" if best is not None else ""
    print(f"saved router to {args.out} ({time.perf_counter() - start:.0f} s{note})")
    return 0


def _info(args: argparse.Namespace) -> int:
    """Print the router's training.json (torch-free: reads the files only)."""
    folder = Path(args.router)
    if not (folder / "config.json").is_file():
        raise RouterFileError(f"--router {str(folder)!r} is not a router folder (no config.json)")
    path = folder / "training.json"
    if not path.is_file():
        print(f"{folder} has no training.json (saved before routerdc recorded its training)")
        return 0
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RouterFileError(f"{path} is not valid JSON: {err}") from err
    print(json.dumps(record, indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .routing.loading import load
    from .training.metrics import evaluate

    router = load(args.router)
    results = evaluate(router, _read_files(args.data), binary=args.binary)
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def _route(args: argparse.Namespace) -> int:
    from .routing.loading import load

    router = load(args.router)
    decisions = router.route_batch(
        args.queries,
        cost_weight=args.cost_weight,
        costs=_costs(args.costs),
        allowed=args.allowed,
        exclude=args.exclude,
        ood_backoff=args.ood_backoff,
    )
    for query, decision in zip(args.queries, decisions, strict=False):
        _print_decision(query, decision)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from .routing.loading import load
    from .training.calibration import calibrate

    router = load(args.router)
    validation = RoutingData.from_files(args.data)
    result = calibrate(
        router,
        validation,
        budget=args.budget,
        expensive_share=args.expensive_share,
        costs=_costs(args.costs),
        tie_standard_errors=args.tie_standard_errors,
    )
    print(
        f"cost weight {result.cost_weight:.6g}: expected mean cost ${result.expected_cost:.6f} "
        f"per query, expected accuracy {100 * result.expected_accuracy:.2f}%, "
        f"{100 * result.expensive_share:.1f}% of calls to the most expensive LLM"
    )
    prices = "" if result.costs == router.config.costs else f" --costs '{json.dumps(result.costs)}'"
    print(
        f"use it with: routerdc route --router {args.router} "
        f'--cost-weight {result.cost_weight:.6g}{prices} "a query"'
    )
    return 0


def _add_llm(args: argparse.Namespace) -> int:
    from .routing.router import load

    router = load(args.router)
    added = router.add_llm(args.name, RoutingData.from_files(args.data), cost=args.cost)
    added.save(args.out)
    done = added.history[-1]
    print(
        f"added {args.name} from {done['queries']} queries in {done['seconds']:.1f} s "
        f"(warm start {done['warm_start']}); saved to {args.out}"
    )
    return 0


def _remove_llm(args: argparse.Namespace) -> int:
    from .routing.router import load

    load(args.router).remove_llm(args.name).save(args.out)
    print(f"removed {args.name}; saved to {args.out}")
    return 0


def _rename_llm(args: argparse.Namespace) -> int:
    from .routing.router import load

    load(args.router).rename_llm(args.name, args.new_name).save(args.out)
    print(f"renamed {args.name} to {args.new_name}; saved to {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .routing.export import OPSET, export
    from .routing.router import Router

    folder = export(Router.load(args.router, device="cpu"), args.out, int8=args.int8)
    kind = "int8" if args.int8 else "fp32"
    print(f"exported {args.router} to {folder} (ONNX opset {OPSET}, {kind})")
    print(f'route with it: routerdc route --router {folder} "a query"')
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .data.download import PAPER_FILES, fetch
    from .training.metrics import evaluate
    from .training.trainer import fit

    folder = Path(args.data_dir) if args.data_dir else fetch(PAPER_FILES, "routerdc-7llm")
    train_files = sorted(folder.glob("*_train.json"))
    test_files = sorted(folder.glob("*_test.json"))
    if not train_files or not test_files:
        raise SystemExit(f"{folder}: expected *_train.json and *_test.json files of the paper")
    data = RoutingData.from_files(train_files)
    print(
        f"1. training a frozen-encoder router on {len(data)} queries from "
        f"{len(train_files)} tasks, {len(data.llm_names)} LLMs"
    )
    start = time.perf_counter()
    router = fit(data, train_encoder=False)
    router.save(args.out)
    print(f"   done in {time.perf_counter() - start:.0f} s, saved to {args.out}")
    print(f"2. evaluating on {len(test_files)} test files (accuracy, %)")
    print(format_table(evaluate(router, _read_files([str(p) for p in test_files]))))
    print("3. routing a few queries")
    for query, decision in zip(DEMO_QUERIES, router.route_batch(list(DEMO_QUERIES)), strict=False):
        _print_decision(query, decision)
    return 0


def _print_decision(query: str, decision: Any) -> None:
    short = " ".join(query.split())
    print(f"\n{short[:90]}{'...' if len(short) > 90 else ''}")
    print(f"  -> {decision.llm} (p={decision.probability:.3f})")
    ranked = ", ".join(f"{name} {decision.probabilities[name]:.3f}" for name in decision.ranking)
    print(f"     ranking: {ranked}")
    if decision.in_distribution is not None:
        backed_off = ", backed off towards the best LLM overall" if decision.backed_off else ""
        print(f"     in-distribution score: {decision.in_distribution:.3f}{backed_off}")


def format_table(results: dict[str, Any]) -> str:
    """The eval results as a text table: one row per file, then the average."""
    files = results["files"]
    llms = list(next(iter(files.values()))["llms"]) if files else []
    short = [name.split("/")[-1][:14] for name in llms]
    header = ["file", "router", *short, "best single", "oracle"]
    rows = [
        [
            name,
            f["router"],
            *[f["llms"].get(n, float("nan")) for n in llms],
            f["best_single"],
            f["oracle"],
        ]
        for name, f in files.items()
    ]
    average = results["average"]
    llm_means = [
        sum(f["llms"].get(n, float("nan")) for f in files.values()) / len(files) for n in llms
    ]
    rows.append(
        ["average", average["router"], *llm_means, average["best_single"], average["oracle"]]
    )
    cells = [header] + [[r[0], *(f"{v:.2f}" for v in r[1:])] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        )
        for row in cells
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    best_name = average.get("best_single_llm", "")
    return "\n".join(lines) + (
        f"\nbest single LLM over all files: {best_name}" if best_name else ""
    )


if __name__ == "__main__":
    sys.exit(main())
