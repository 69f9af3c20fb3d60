"""Speed and memory of routing and training on this machine: ``python -m benchmarks.speed``.

Writes ``benchmarks/results/speed.json`` and ``speed.md`` with:

- routing latency of one query (p50, p99) and throughput in batches of 64, for short (20
  tokens) and long (400 tokens) queries, beside the bare encoder's own figures (a plain
  tokenizer + ``AutoModel`` forward of the same queries: the limit routing can approach);
- training throughput of full fine-tuning, measured side by side on one model and one batch
  size: our trainer as it is (``core.training.trainer.build`` + ``train_step``, batches grouped by
  length), our trainer with ``group_by_length=False`` (each batch padded to its longest query
  only), and the paper's recipe (every batch padded to 512 tokens); and a count (no timing) of
  the padded tokens per query the trainer's own batches make the encoder process over one
  epoch of the paper's sampling;
- the peak resident memory of a fresh process that only imports ``core``, loads a saved router
  and routes, and whether that process imported the training stack;
- the router's parameter count;
- the torch router beside its fp32 and int8 ONNX exports (``benchmarks/speed_onnx.py``):
  latency, throughput, peak RSS and cold start of a routing process, install sizes, and the
  agreement of their choices and their accuracy on the 5 test files of the paper's data.
- ``import_seconds``: what an app pays to import ``core`` and each adapter, in fresh
  interpreters (the median of several, and the first, closest to a cold start), with
  ``langchain_core`` as the reference, and whether each import pulled in torch.

The router is built untrained (routing speed does not depend on trained values) from the
bundled default encoder. Queries are cut from the paper's test questions when
``../shared/data/routerdc-7llm`` is present, else from a fixed word list, to exactly the
requested number of tokens (special tokens included).

``--quick`` runs fewer repetitions and a smaller training batch, for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from benchmarks.common import (
    PAPER_DATA,
    PEAK_RSS_SOURCE,
    ROOT,
    TASKS,
    add_cache_option,
    provenance,
    write_results,
)
from benchmarks.speed_onnx import OnnxSettings, markdown_section, onnx_figures, paper_router
from core import RouterConfig, RoutingData, TrainConfig
from core.routing.encoder import load_encoder, load_tokenizer, resolve_encoder
from core.routing.model import RouterDCModel
from core.routing.router import Router
from core.training.clustering import labels_to_ids
from core.training.trainer import LENGTH_WINDOW, Batch, Setup, _batches, build, train_step

logger = logging.getLogger(__name__)

SHORT_TOKENS = 20
LONG_TOKENS = 400
ROUTE_BATCH = 64
PAPER_PADDING = 512
PAPER_QUERIES_PER_TASK = 1000
# The three ways of batching the training queries that are timed, as the tables name them.
TRAIN_VARIANTS = {
    "grouped_by_length": "our trainer (group_by_length=True, the default)",
    "dynamic_padding_only": "our trainer, group_by_length=False: padded to the batch's longest",
    "padded_512": "paper recipe: every batch padded to 512",
}
# Tasks whose test questions give the text the short and long queries are cut from.
TEXT_TASKS = ("mmlu", "gsm8k", "arc_challenge", "humaneval")
FALLBACK_LLMS = [f"llm-{i}" for i in range(7)]
# Words for queries when the paper data is absent: common English, a few numbers and symbols.
FALLBACK_TEXT = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no what "
    "up out who them some could time into two more these may first then do any like my now over "
    "such our man me even most made after also did many before must through back years where "
    "much your way well down should because each just those people how too little state good "
    "very make world still own see men work long get here between both life being under never "
    "day same another know while last might us great old year off come since against go came "
    "right used take three solve equation integral derivative python function return list "
    "value number answer question which following option correct 12 48 3.5 x = + - ( ) ? ."
)
TARGETS = {
    "route_p50_ms_short": ("<", 10.0),
    "batch_queries_per_s": (">=", 400.0),
    "train_speedup_vs_padded": (">=", 3.0),
    "peak_rss_mib": ("<", 1024.0),
}
# Run in a fresh interpreter: import core, load a saved router, route; report peak RSS.
RSS_SCRIPT = (
    """
import json, resource, sys
"""
    + PEAK_RSS_SOURCE
    + """
peaks = {"python": peak()}
import core
peaks["import_core"] = peak()
router = core.load(sys.argv[1], device="cpu")
peaks["load_router"] = peak()
queries = json.loads(open(sys.argv[2], encoding="utf-8").read())
for query in queries["short"]:
    router.route(query)
router.route_batch(queries["short"])
peaks["route_short"] = peak()
router.route_batch(queries["long"])
peaks["route_long_batch"] = peak()
watched = ("sklearn", "core.training.trainer", "core.training.losses", "core.training.clustering")
imported = {m: m in sys.modules for m in watched}
inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({"peaks": peaks, "imported": imported, "ru_maxrss_mib": inherited}))
"""
)

# What an app imports, timed each in a fresh interpreter; langchain_core is the reference.
IMPORTS = {
    "core": "import core",
    "routerdc_langchain": "from routerdc_langchain import RunnableRouter",
    "routerdc_llamaindex": "from routerdc_llamaindex import RouterDCSelector",
    "langchain_core (reference)": "import langchain_core",
}
HEAVY_MODULES = ("torch", "transformers", "scipy", "sklearn")
IMPORT_SCRIPT = """
import json, sys, time
start = time.perf_counter()
exec(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "imported": {m: m in sys.modules for m in sys.argv[2:]}}))
"""


@dataclass(frozen=True)
class Settings:
    """How many repetitions each measurement uses; recorded in the results."""

    latency_calls_short: int = 200
    latency_calls_long: int = 100
    latency_warmup: int = 10
    batches_short: int = 8
    batches_long: int = 3
    train_batch_size: int = 16
    # One window of the trainer's length grouping: the timed steps of both trainer variants are
    # then one whole epoch of the same queries.
    train_timed_steps: int = LENGTH_WINDOW
    # Every 512-padded step costs the same whatever its queries, so fewer of them are timed;
    # the other variants' cost varies with the batch's longest query and needs more steps.
    train_padded_steps: int = 2
    rss_short_queries: int = 64
    rss_long_queries: int = 64
    import_repeats: int = 5
    seed: int = 0

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            latency_calls_short=30,
            latency_calls_long=10,
            latency_warmup=3,
            batches_short=2,
            batches_long=1,
            train_batch_size=8,
            train_timed_steps=2,
            train_padded_steps=1,
            rss_short_queries=16,
            rss_long_queries=16,
            import_repeats=2,
        )


# ---------------------------------------------------------------------- queries


def text_words() -> list[str]:
    """Whitespace-separated words of the paper's English test questions, or a fixed list."""
    words: list[str] = []
    for task in TEXT_TASKS:
        path = PAPER_DATA / f"{task}_test.json"
        if path.is_file():
            for record in json.loads(path.read_text(encoding="utf-8")):
                words.extend(str(record.get("question", "")).split())
    return words or fallback_words()


def fallback_words(count: int = 20_000) -> list[str]:
    """``count`` words drawn from a fixed list with a fixed seed."""
    vocabulary = FALLBACK_TEXT.split()
    rng = np.random.default_rng(0)
    return [vocabulary[i] for i in rng.integers(0, len(vocabulary), count)]


def build_queries(
    tokenizer: PreTrainedTokenizerBase,
    words: Sequence[str],
    count: int,
    tokens: int | Sequence[int],
) -> list[str]:
    """``count`` queries of exactly ``tokens`` tokens each (or ``tokens[i]`` for query i),
    special tokens included.

    Query i starts at its own place in ``words`` and takes the following words while they fit
    its token budget, skipping a word that would overshoot it; deterministic.
    """
    targets = [tokens] * count if isinstance(tokens, int) else [int(n) for n in tokens]
    if len(targets) != count:
        raise ValueError(f"{len(targets)} token lengths given for {count} queries")
    special = tokenizer.num_special_tokens_to_add()
    if min(targets) <= special:
        raise ValueError(f"tokens must leave room for the special tokens, got {min(targets)}")
    unique = sorted(set(words))
    pieces = tokenizer(unique, add_special_tokens=False)["input_ids"]
    lengths = {word: len(ids) for word, ids in zip(unique, pieces, strict=True)}
    stride = max(1, len(words) // count)
    queries = []
    for i, target in enumerate(targets):
        chosen: list[str] = []
        left, position = target - special, i * stride
        while left > 0:
            if position - i * stride > 50 * target + len(words):
                raise ValueError(f"cannot fill {target} tokens from the given words")
            word = words[position % len(words)]
            position += 1
            if 0 < lengths[word] <= left:
                chosen.append(word)
                left -= lengths[word]
        queries.append(" ".join(chosen))
    # WordPiece splits each word alone as in a sentence; check the lengths all the same.
    actual = [len(ids) for ids in tokenizer(queries)["input_ids"]]
    wrong = [(a, t) for a, t in zip(actual, targets, strict=True) if a != t]
    if wrong:
        raise ValueError(f"{len(wrong)} of {count} queries missed their length: {wrong[:5]}")
    return queries


# ---------------------------------------------------------------------- routing


def build_router(llm_names: list[str], seed: int) -> Router:
    """An untrained router with the default encoder and the default RouterConfig."""
    torch.manual_seed(seed)
    tokenizer, encoder = load_encoder(None)
    config = RouterConfig(llm_names=llm_names)
    model = RouterDCModel(
        encoder,
        len(llm_names),
        pooling=config.pooling,
        temperature=config.temperature,
        projection=config.projection,
    )
    return Router(model, tokenizer, config, device="cpu")


def paired_latency(
    calls: dict[str, Callable[[str], object]], queries: list[str], count: int, warmup: int
) -> dict[str, dict[str, float]]:
    """p50 / p99 / mean ms of each ``call(query)``, the calls taking turns on each query.

    Taking turns makes load from other processes hit the router and its limit alike.
    """
    for i in range(warmup):
        for call in calls.values():
            call(queries[i % len(queries)])
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(count):
        for name, call in calls.items():
            start = time.perf_counter()
            call(queries[i % len(queries)])
            times[name].append((time.perf_counter() - start) * 1000)
    return {
        name: {
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(np.mean(ms)),
            "calls": count,
        }
        for name, ms in times.items()
    }


def paired_throughput(
    calls: dict[str, Callable[[list[str]], object]], queries: list[str], batches: int
) -> dict[str, float]:
    """Queries/s of each ``call(batch)`` over ``batches`` batches of ``ROUTE_BATCH``, in turns."""
    chunks = [
        [queries[(b * ROUTE_BATCH + j) % len(queries)] for j in range(ROUTE_BATCH)]
        for b in range(batches)
    ]
    for call in calls.values():
        call(chunks[0])  # warm-up
    seconds = dict.fromkeys(calls, 0.0)
    for chunk in chunks:
        for name, call in calls.items():
            start = time.perf_counter()
            call(chunk)
            seconds[name] += time.perf_counter() - start
    return {name: batches * ROUTE_BATCH / s for name, s in seconds.items()}


class BareEncoder:
    """A plain tokenizer + AutoModel forward: what routing costs at the very least."""

    def __init__(self) -> None:
        path = resolve_encoder(None)
        self.tokenizer = load_tokenizer(path)
        model = AutoModel.from_pretrained(path, trust_remote_code=False)
        self.model: PreTrainedModel = model.eval()

    @torch.inference_mode()
    def __call__(self, queries: str | list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            queries, padding=True, truncation=True, max_length=PAPER_PADDING, return_tensors="pt"
        )
        return self.model(**tokens).last_hidden_state


def routing_figures(
    router: Router, bare: BareEncoder, short: list[str], long: list[str], settings: Settings
) -> dict[str, Any]:
    ours: dict[str, Any] = {}
    limit: dict[str, Any] = {}
    for name, queries, count in (
        ("short", short, settings.latency_calls_short),
        ("long", long, settings.latency_calls_long),
    ):
        logger.info("latency, %s queries: router and bare encoder in turns", name)
        figures = paired_latency(
            {"router": router.route, "bare": bare}, queries, count, settings.latency_warmup
        )
        ours[name], limit[name] = figures["router"], figures["bare"]
    for name, queries, batches in (
        ("short", short, settings.batches_short),
        ("long", long, settings.batches_long),
    ):
        logger.info("throughput, %s queries in batches of %d", name, ROUTE_BATCH)
        rates = paired_throughput({"router": router.route_batch, "bare": bare}, queries, batches)
        ours[f"batch_{name}"], limit[f"batch_{name}"] = rates["router"], rates["bare"]
    return {"ours": ours, "bare": limit}


# ---------------------------------------------------------------------- training


def paper_train_data() -> RoutingData | None:
    """The five train files of the paper's data, tasks labelled by file; None when absent."""
    paths = [PAPER_DATA / f"{task}_train.json" for task in TASKS]
    return RoutingData.from_files(paths) if all(p.is_file() for p in paths) else None


def paper_epoch_rows(data: RoutingData, rng: np.random.Generator) -> np.ndarray:
    """Rows of one epoch of the paper's sampling: 1000 queries per task, a shorter task
    repeated, a longer one cut."""
    tasks = np.asarray(data.tasks)
    epoch = []
    for task in dict.fromkeys(data.tasks or ()):
        rows = np.flatnonzero(tasks == task)
        repeats, rest = divmod(PAPER_QUERIES_PER_TASK, len(rows))
        epoch += [np.tile(rows, repeats), rng.choice(rows, rest, replace=False)]
    return np.concatenate(epoch)


def training_data(settings: Settings) -> tuple[RoutingData, str]:
    """Training queries drawn from one epoch of the paper's sampling.

    One batch for warm-up, then ``max(train_timed_steps, LENGTH_WINDOW)`` batches that the
    timed variants train on. Synthetic queries of paper-like mixed lengths when the paper data
    is absent.
    """
    count = settings.train_batch_size * (1 + max(settings.train_timed_steps, LENGTH_WINDOW))
    rng = np.random.default_rng(settings.seed)
    data = paper_train_data()
    if data is not None:
        rows = rng.choice(paper_epoch_rows(data, rng), count, replace=False)
        return data.subset(rows), "routerdc-7llm train files, the paper's sampling"
    tokenizer = load_tokenizer(resolve_encoder(None))
    # Lengths spread like the paper's queries: median ~70 tokens, a long tail to 512.
    lengths = np.clip(rng.lognormal(np.log(70), 0.8, size=count), 12, PAPER_PADDING).astype(int)
    queries = build_queries(tokenizer, text_words(), count, lengths.tolist())
    scores = rng.random((count, len(FALLBACK_LLMS)))
    tasks = [f"cluster-{i % 5}" for i in range(count)]
    return RoutingData(queries, FALLBACK_LLMS, scores, tasks=tasks), "synthetic (no paper data)"


def full_fine_tuning(settings: Settings) -> TrainConfig:
    """The default recipe, fine-tuning the encoder, at the benchmark's batch size and seed."""
    return TrainConfig(batch_size=settings.train_batch_size, train_encoder=True, seed=settings.seed)


def task_ids(data: RoutingData) -> np.ndarray:
    """One cluster id per query: its task stands in for a k-means cluster."""
    return labels_to_ids(data.tasks or [""] * len(data))


def trainer_batches(
    router: Router, data: RoutingData, config: TrainConfig, count: int
) -> list[Batch]:
    """The first ``count`` batches the trainer itself makes of ``data`` under ``config``."""
    batches = _batches(router, data.queries, data.scores, task_ids(data), None, config)
    return [next(batches) for _ in range(count)]


def pad_to(batch: Batch, length: int, pad_id: int) -> Batch:
    """The same batch with its tokens right-padded to ``length`` (the paper's recipe)."""
    given = _tokens(batch)  # each (B, L)
    extra = length - given["input_ids"].shape[1]
    tokens = {
        "input_ids": F.pad(given["input_ids"], (0, extra), value=pad_id),
        "attention_mask": F.pad(given["attention_mask"], (0, extra), value=0),
    }
    return Batch(scores=batch.scores, clusters=batch.clusters, tokens=tokens)


def _tokens(batch: Batch) -> dict[str, torch.Tensor]:
    if batch.tokens is None:
        raise ValueError("expected a batch of token ids, got cached vectors")
    return batch.tokens


def tokens_per_query(batches: list[Batch]) -> tuple[float, float]:
    """Padded and real (unmasked) tokens per query over ``batches``."""
    masks = [_tokens(b)["attention_mask"] for b in batches]  # each (B, L)
    queries = sum(m.shape[0] for m in masks)
    return sum(m.numel() for m in masks) / queries, sum(int(m.sum()) for m in masks) / queries


def anchor_share(batches: list[Batch], negatives: int) -> float:
    """Share of queries the sample-sample loss can use as anchors: with a same-cluster partner
    and at least ``negatives`` other-cluster queries in their batch."""
    usable = 0
    for batch in batches:
        same = batch.clusters[:, None] == batch.clusters[None, :]  # (B, B)
        partners, others = same.sum(dim=1) - 1, (~same).sum(dim=1)  # (B,)
        usable += int(((partners > 0) & (others >= negatives)).sum())
    return usable / sum(len(b.clusters) for b in batches)


def time_steps(
    setup: Setup, config: TrainConfig, variants: dict[str, list[Batch]]
) -> dict[str, list[float]]:
    """Seconds of each ``train_step``; the variants take turns, step by step, so that load
    from other processes hits them alike."""
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for step in range(max(len(batches) for batches in variants.values())):
        for name, batches in variants.items():
            if step < len(batches):
                start = time.perf_counter()
                train_step(setup, batches[step], config)
                seconds[name].append(time.perf_counter() - start)
                logger.info("training step %d, %s: %.2f s", step + 1, name, seconds[name][-1])
    return seconds


def training_figures(settings: Settings) -> dict[str, Any]:
    """Queries/s of ``train_step`` on the trainer's batches, with and without grouping by
    length, and on batches padded to 512.

    One model and optimizer, made by ``build``, serve all variants (speed does not depend on
    the weights). Both trainer variants take their first ``train_timed_steps`` batches of the
    same queries; 512-padding pads the first batches of the ungrouped ones (its cost does not
    depend on the queries).
    """
    data, source = training_data(settings)
    size, steps = settings.train_batch_size, settings.train_timed_steps
    warmup, pool = data.subset(np.arange(size)), data.subset(np.arange(size, len(data)))
    router = build_router(list(data.llm_names), settings.seed)
    config = full_fine_tuning(settings)
    setup = build(router, pool.queries, pool.scores, task_ids(pool), None, config)
    ungrouped = trainer_batches(router, pool, replace(config, group_by_length=False), steps)
    pad_id = router.tokenizer.pad_token_id
    variants = {
        "grouped_by_length": [next(setup.batches) for _ in range(steps)],
        "dynamic_padding_only": ungrouped,
        "padded_512": [
            pad_to(b, PAPER_PADDING, pad_id) for b in ungrouped[: settings.train_padded_steps]
        ],
    }
    logger.info("training: warm-up step (batch %d)", size)
    train_step(setup, trainer_batches(router, warmup, config, 1)[0], config)
    seconds = time_steps(setup, config, variants)
    counts = {name: tokens_per_query(batches) for name, batches in variants.items()}
    return {
        "data": source,
        "batch_size": size,
        "pool_batches": len(pool) // size,
        "timed_steps": {name: len(batches) for name, batches in variants.items()},
        "warmup_steps": 1,
        "mode": "full fine-tuning (train_encoder=True), default TrainConfig otherwise",
        "queries_per_s": {name: len(s) * size / sum(s) for name, s in seconds.items()},
        "step_seconds": seconds,
        "padded_tokens_per_query": {name: padded for name, (padded, _) in counts.items()},
        "real_tokens_per_query": {name: real for name, (_, real) in counts.items()},
        "padding_per_epoch": padding_per_epoch(router, settings),
    }


def padding_per_epoch(router: Router, settings: Settings) -> dict[str, Any] | None:
    """Padded tokens per query over one epoch of the paper's sampling, in the trainer's own
    batches with and without grouping by length; None without the paper data.

    No timing: a deterministic count of what each batching makes the encoder process. Grouping
    by length also groups tasks, so the share of anchors the sample-sample loss can use is
    counted too (tasks standing in for clusters).
    """
    data = paper_train_data()
    if data is None:
        return None
    epoch = data.subset(paper_epoch_rows(data, np.random.default_rng(settings.seed)))
    count = len(epoch) // settings.train_batch_size
    config = full_fine_tuning(settings)
    epochs = {
        name: trainer_batches(router, epoch, replace(config, group_by_length=grouped), count)
        for name, grouped in (("dynamic_padding_only", False), ("grouped_by_length", True))
    }
    counts = {name: tokens_per_query(batches) for name, batches in epochs.items()}
    # Real tokens of the ungrouped epoch, which leaves out a random few queries (a last,
    # partial batch); the grouped one leaves out a window's shortest.
    tokens = {"real": counts["dynamic_padding_only"][1], "padded_512": float(PAPER_PADDING)}
    tokens |= {name: padded for name, (padded, _) in counts.items()}
    negatives = config.num_hard_negatives
    anchors = {name: anchor_share(batches, negatives) for name, batches in epochs.items()}
    return {
        "queries": count * settings.train_batch_size,
        "batch_size": settings.train_batch_size,
        "tokens_per_query": tokens,
        "token_ratio_vs_512": {k: PAPER_PADDING / v for k, v in tokens.items()},
        "sample_sample_anchor_share": anchors,
    }


# ---------------------------------------------------------------------- memory


def rss_figures(router: Router, short: list[str], long: list[str], settings: Settings) -> dict:
    """Peak RSS of a fresh process that imports core, loads a saved router and routes."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = router.save(Path(tmp) / "router")
        queries_path = Path(tmp) / "queries.json"
        routed = {
            "short": short[: settings.rss_short_queries],
            "long": long[: settings.rss_long_queries],
        }
        queries_path.write_text(json.dumps(routed), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, str(folder), str(queries_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"the routing process failed:\n{result.stderr[-2000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["note"] = (
        "peaks are VmHWM; ru_maxrss_mib is not this process's own peak on Linux, where exec "
        "keeps the high-water mark of the parent memory the child was forked from"
    )
    report["routed"] = (
        f"{settings.rss_short_queries} short queries one by one and as one batch, "
        f"then {settings.rss_long_queries} long queries as one batch"
    )
    return report


# ---------------------------------------------------------------------- imports


def import_seconds(statements: dict[str, str], repeats: int) -> dict[str, dict[str, Any]]:
    """Seconds each import statement takes in a fresh interpreter, run ``repeats`` times.

    The statements take turns, so load from other processes hits them alike. Returns, per
    name: the median, the first run (the closest to a cold start: the files may not be in the
    page cache yet), every run, and which of ``HEAVY_MODULES`` the import pulled in.
    """
    runs: dict[str, list[float]] = {name: [] for name in statements}
    imported: dict[str, dict[str, bool]] = {}
    for _ in range(repeats):
        for name, statement in statements.items():
            result = subprocess.run(
                [sys.executable, "-c", IMPORT_SCRIPT, statement, *HEAVY_MODULES],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"{statement!r} failed:\n{result.stderr[-2000:]}")
            report = json.loads(result.stdout.strip().splitlines()[-1])
            runs[name].append(report["seconds"])
            imported[name] = report["imported"]
    return {
        name: {
            "median": float(np.median(seconds)),
            "first": seconds[0],
            "runs": seconds,
            "imported": imported[name],
        }
        for name, seconds in runs.items()
    }


# ---------------------------------------------------------------------- report


def check_targets(results: dict[str, Any]) -> dict[str, Any]:
    checked = {}
    for key, (op, bound) in TARGETS.items():
        value = results[key]
        met = value < bound if op == "<" else value >= bound
        checked[key] = {"target": f"{op} {bound:g}", "value": value, "met": bool(met)}
    return checked


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Speed and memory", "", *_preamble(results), *_routing_section(results)]
    lines += [*_training_section(results), *_epoch_section(results["training"])]
    lines += _memory_section(results)
    lines += _import_section(results)
    if "onnx" in results:
        lines += markdown_section(results["onnx"])
    return "\n".join(lines)


def _target_cell(results: dict[str, Any], key: str) -> str:
    target = results["targets"].get(key)
    return "" if target is None else f"{target['target']} ({_verdict(target)})"


def _verdict(target: dict[str, Any]) -> str:
    return "met" if target["met"] else "NOT met"


def _preamble(results: dict[str, Any]) -> list[str]:
    load = results["load_average"]
    lines = [
        f"CPU threads: {results['provenance']['machine']['cpu_threads']}; load average "
        f"before/after: {load['before']} / {load['after']}. Short queries {SHORT_TOKENS} tokens, "
        f"long {LONG_TOKENS} tokens (special tokens included), cut from {results['query_text']}.",
        "",
    ]
    if load["busy"]:
        lines += [
            "**Other processes were running** (load average above 1 before the run, or "
            "above the CPU count + 1 after it): the timings are inflated, the ratios less so.",
            "",
        ]
    return lines


def _routing_section(results: dict[str, Any]) -> list[str]:
    bare = results["bare_encoder"]
    rows = [
        ("one short query, p50 (ms)", "route_p50_ms_short", bare["p50_ms_short"]),
        ("one short query, p99 (ms)", "route_p99_ms_short", bare["p99_ms_short"]),
        ("one long query, p50 (ms)", "route_p50_ms_long", bare["p50_ms_long"]),
        ("one long query, p99 (ms)", "route_p99_ms_long", bare["p99_ms_long"]),
        ("short queries/s, batches of 64", "batch_queries_per_s", bare["batch_queries_per_s"]),
        (
            "long queries/s, batches of 64",
            "batch_queries_per_s_long",
            bare["batch_queries_per_s_long"],
        ),
        ("parameters", "parameters", bare["parameters"]),
    ]
    return [
        "## Routing (default encoder, untrained router, CPU)",
        "",
        "| measure | router | bare encoder (limit) | target |",
        "| --- | ---: | ---: | --- |",
        *(
            f"| {label} | {_fmt(results[key])} | {_fmt(limit)} | {_target_cell(results, key)} |"
            for label, key, limit in rows
        ),
    ]


def _training_section(results: dict[str, Any]) -> list[str]:
    train = results["training"]
    q, timed, pool = train["queries_per_s"], train["timed_steps"], train["pool_batches"]
    steps = timed["grouped_by_length"]
    share = "one whole epoch each" if steps == pool else f"the first {steps} of them"
    return [
        "",
        f"## Training (batch {train['batch_size']}, full fine-tuning, {train['warmup_steps']} "
        f"warm-up step, {train['data']})",
        "",
        "| batches | timed steps | queries/s | real tokens per query | padded tokens per query "
        "| speed-up vs 512-padding |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {label} | {timed[name]} | {q[name]:.2f} | "
            f"{train['real_tokens_per_query'][name]:.0f} | "
            f"{train['padded_tokens_per_query'][name]:.0f} | {q[name] / q['padded_512']:.2f}x |"
            for name, label in TRAIN_VARIANTS.items()
        ),
        "",
        f"train_speedup_vs_padded (our trainer): {results['train_speedup_vs_padded']:.2f}x "
        f"(target {_target_cell(results, 'train_speedup_vs_padded')}); with dynamic padding "
        f"only: {results['train_speedup_dynamic_padding_only_vs_padded']:.2f}x. The steps take "
        "turns between variants. Both trainer variants train on the batches the trainer itself "
        f"makes of the same {pool} batches of queries ({share}); 512-padding on the first "
        "ungrouped ones, padded (its cost does not depend on the queries).",
    ]


def _epoch_section(train: dict[str, Any]) -> list[str]:
    epoch = train["padding_per_epoch"]
    if not epoch:
        return []
    anchors = epoch["sample_sample_anchor_share"]
    return [
        "",
        f"Padded tokens per query over one epoch of the paper's sampling ({epoch['queries']} "
        f"queries, batch {epoch['batch_size']}; counted, not timed) in the trainer's own batches:",
        "",
        "| batches | tokens per query | 512 / tokens | sample-sample anchors usable |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {value:.0f} | {epoch['token_ratio_vs_512'][name]:.2f}x | "
            f"{f'{anchors[name]:.0%}' if name in anchors else ''} |"
            for name, value in epoch["tokens_per_query"].items()
        ),
    ]


def _memory_section(results: dict[str, Any]) -> list[str]:
    rss = results["rss_process"]
    imported = ", ".join(f"{m}: {'yes' if v else 'no'}" for m, v in rss["imported"].items())
    return [
        "",
        "## Memory of a routing process",
        "",
        f"Peak RSS {results['peak_rss_mib']:.0f} MiB (target "
        f"{_target_cell(results, 'peak_rss_mib')}); {rss['routed']}.",
        "",
        "| after | peak RSS (MiB) |",
        "| --- | ---: |",
        *(f"| {k} | {v:.0f} |" for k, v in rss["peaks"].items()),
        "",
        f"Imported in that process: {imported}.",
    ]


def _import_section(results: dict[str, Any]) -> list[str]:
    detail = results["import_detail"]
    heavy = ", ".join(HEAVY_MODULES)
    return [
        "",
        "## Import time",
        "",
        "Seconds to run the statement in a fresh interpreter (median over "
        f"{len(next(iter(detail.values()))['runs'])} runs; the first is the closest to a cold "
        f"start), and which of {heavy} it imported.",
        "",
        "| import | median (s) | first (s) | heavy modules imported |",
        "| --- | ---: | ---: | --- |",
        *(
            f"| `{IMPORTS.get(name, name)}` | {row['median']:.2f} | {row['first']:.2f} | "
            f"{', '.join(m for m, v in row['imported'].items() if v) or 'none'} |"
            for name, row in detail.items()
        ),
    ]


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def onnx_run(
    settings: OnnxSettings,
    short: list[str],
    long: list[str],
    router_folder: Path | None,
    encoding_cache: Path | None,
) -> dict[str, Any]:
    """The torch router beside its ONNX exports (benchmarks/speed_onnx.py), timed with the
    same paired measurements as the rest of this benchmark."""
    router, how = paper_router(router_folder, encoding_cache, settings)
    figures = onnx_figures(router, short, long, settings, paired_latency, paired_throughput)
    figures["router"] = how
    return figures


def run(
    settings: Settings,
    onnx_settings: OnnxSettings | None = None,
    onnx_router: Path | None = None,
    encoding_cache: Path | None = None,
) -> dict[str, Any]:
    load_before = [round(x, 2) for x in os.getloadavg()]
    tokenizer = load_tokenizer(resolve_encoder(None))
    words = text_words()
    query_text = "the paper's test questions" if PAPER_DATA.is_dir() else "a fixed word list"
    count_short = max(settings.latency_calls_short, settings.batches_short * ROUTE_BATCH)
    count_long = max(settings.latency_calls_long, settings.batches_long * ROUTE_BATCH)
    short = build_queries(tokenizer, words, count_short, SHORT_TOKENS)
    long = build_queries(tokenizer, words, count_long, LONG_TOKENS)

    llm_names = FALLBACK_LLMS
    if (PAPER_DATA / "mmlu_train.json").is_file():
        llm_names = RoutingData.from_file(PAPER_DATA / "mmlu_train.json").llm_names
    router = build_router(list(llm_names), settings.seed)
    bare = BareEncoder()
    routing = routing_figures(router, bare, short, long, settings)
    ours, limit = routing["ours"], routing["bare"]
    rss = rss_figures(router, short, long, settings)
    imports = import_seconds(IMPORTS, settings.import_repeats)
    parameters, bare_parameters = router.num_parameters(), bare.model.num_parameters()
    del router, bare  # training builds its own model
    train = training_figures(settings)
    q = train["queries_per_s"]
    onnx = None
    if onnx_settings is not None:
        onnx = onnx_run(onnx_settings, short, long, onnx_router, encoding_cache)

    load_after = [round(x, 2) for x in os.getloadavg()]
    # The run itself adds about its thread count to the load; anything well above is others'.
    busy = load_before[0] > 1 or load_after[0] > (os.cpu_count() or 1) + 1
    results: dict[str, Any] = {
        "provenance": provenance(asdict(settings)),
        "route_p50_ms_short": ours["short"]["p50_ms"],
        "route_p99_ms_short": ours["short"]["p99_ms"],
        "route_p50_ms_long": ours["long"]["p50_ms"],
        "route_p99_ms_long": ours["long"]["p99_ms"],
        "batch_queries_per_s": ours["batch_short"],
        "batch_queries_per_s_long": ours["batch_long"],
        "train_speedup_vs_padded": q["grouped_by_length"] / q["padded_512"],
        "train_speedup_dynamic_padding_only_vs_padded": (
            q["dynamic_padding_only"] / q["padded_512"]
        ),
        "peak_rss_mib": max(rss["peaks"].values()),
        "parameters": parameters,
        "bare_encoder": {
            "p50_ms_short": limit["short"]["p50_ms"],
            "p99_ms_short": limit["short"]["p99_ms"],
            "p50_ms_long": limit["long"]["p50_ms"],
            "p99_ms_long": limit["long"]["p99_ms"],
            "batch_queries_per_s": limit["batch_short"],
            "batch_queries_per_s_long": limit["batch_long"],
            "parameters": bare_parameters,
        },
        "latency_detail": {"router": ours, "bare_encoder": limit},
        "training": train,
        "rss_process": rss,
        "import_seconds": {name: figures["median"] for name, figures in imports.items()},
        "import_detail": imports,
        "query_text": query_text,
        "query_tokens": {"short": SHORT_TOKENS, "long": LONG_TOKENS},
        "route_batch_size": ROUTE_BATCH,
        "load_average": {"before": load_before, "after": load_after, "busy": busy},
    }
    results["targets"] = check_targets(results)
    if onnx is not None:
        results |= onnx["summary"]
        results["onnx"] = onnx
        results["targets"] |= onnx["targets"]
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--train-batch-size", type=int, help="training batch size (default 16)")
    parser.add_argument(
        "--train-steps",
        type=int,
        help=f"timed steps of each trainer variant (default {LENGTH_WINDOW}, one epoch)",
    )
    parser.add_argument(
        "--onnx-router",
        type=Path,
        help="router compared with its ONNX exports: loaded from this folder, or trained "
        "(frozen encoder, the 5 train files) and saved there",
    )
    parser.add_argument("--skip-onnx", action="store_true", help="leave out the ONNX exports")
    parser.add_argument(
        "--onnx-agreement-queries",
        type=int,
        help="random test queries per file the exports are compared on (default: all)",
    )
    add_cache_option(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = Settings.quick() if args.quick else Settings()
    onnx_settings = (
        None if args.skip_onnx else OnnxSettings.quick() if args.quick else OnnxSettings()
    )
    if onnx_settings is not None and args.onnx_agreement_queries is not None:
        onnx_settings = replace(
            onnx_settings, agreement_queries_per_file=args.onnx_agreement_queries
        )
    overrides = {"train_batch_size": args.train_batch_size, "train_timed_steps": args.train_steps}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    start = time.perf_counter()
    results = run(settings, onnx_settings, args.onnx_router, args.encoding_cache)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    json_path, md_path = write_results("speed", results, markdown(results))
    logger.info("wrote %s and %s in %.0f s", json_path, md_path, results["wall_seconds"])
    for key, target in results["targets"].items():
        logger.info(
            "%s = %.4g (target %s): %s", key, target["value"], target["target"], _verdict(target)
        )


if __name__ == "__main__":
    main()
