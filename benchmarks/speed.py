"""Speed and memory of routing and training on this machine: ``python -m benchmarks.speed``.

Writes ``benchmarks/results/speed.json`` and ``speed.md`` with:

- routing latency of one query (p50, p99) and throughput in batches of 64, for short (20
  tokens) and long (400 tokens) queries, beside the bare encoder's own figures (a plain
  tokenizer + ``AutoModel`` forward of the same queries: the limit routing can approach);
- training throughput of our trainer's step (``core.trainer.build`` + ``train_step``, full
  fine-tuning, padding to the longest query of each batch) against the paper's recipe (every
  batch padded to 512 tokens), on the same batches of paper queries, measured side by side;
  a third variant, batches grouped by length, is a prototype measured here, not the trainer;
  and a count (no timing) of the padded tokens per query each batching makes the encoder
  process over one epoch of the paper's sampling;
- the peak resident memory of a fresh process that only imports ``core``, loads a saved router
  and routes, and whether that process imported the training stack;
- the router's parameter count.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from benchmarks.common import PAPER_DATA, ROOT, TASKS, provenance, write_results
from core import RouterConfig, RoutingData, TrainConfig
from core.clustering import labels_to_ids
from core.encoder import load_encoder, load_tokenizer, resolve_encoder
from core.model import RouterDCModel
from core.router import Router
from core.trainer import Batch, Setup, build, train_step

logger = logging.getLogger(__name__)

SHORT_TOKENS = 20
LONG_TOKENS = 400
ROUTE_BATCH = 64
PAPER_PADDING = 512
PAPER_QUERIES_PER_TASK = 1000
# Pool sizes (in batches) for the padding count of batches grouped by length.
PADDING_POOLS = (1, 4, 16, 64, 1024)
# Batches in the pool that the timed grouping prototype sorts by length.
GROUPING_POOL = 16
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
RSS_SCRIPT = """
import json, resource, sys
def peak():
    # VmHWM is this process's own peak. ru_maxrss is not, on Linux: exec keeps the high-water
    # mark of the parent's memory that the child was forked from.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, else KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
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
watched = ("sklearn", "core.trainer", "core.losses", "core.clustering")
imported = {m: m in sys.modules for m in watched}
inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({"peaks": peaks, "imported": imported, "ru_maxrss_mib": inherited}))
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
    train_timed_steps: int = 8
    # Every 512-padded step costs the same whatever its queries, so fewer of them are timed;
    # the other variants' cost varies with the batch's longest query and needs more steps.
    train_padded_steps: int = 2
    rss_short_queries: int = 64
    rss_long_queries: int = 64
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
        self.model: PreTrainedModel = AutoModel.from_pretrained(path).eval()

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

    One batch for warm-up, then ``max(train_timed_steps, GROUPING_POOL)`` batches: the first
    ``train_timed_steps`` are timed, all of them form the grouping prototype's pool. Synthetic
    queries of paper-like mixed lengths when the paper data is absent.
    """
    count = settings.train_batch_size * (1 + max(settings.train_timed_steps, GROUPING_POOL))
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


def padding_per_epoch(tokenizer: PreTrainedTokenizerBase, settings: Settings) -> dict | None:
    """Padded tokens per query over one epoch of the paper's sampling, by batching strategy.

    No timing: a deterministic count of what each strategy makes the encoder process.
    Grouping sorts a pool of ``pool`` batches by length and cuts it into batches (their order
    then shuffled); a pool of 1 batch is the trainer's plain shuffle. Grouping by length also
    groups tasks, so the share of anchors the sample-sample loss can use (a same-task partner
    and ``num_hard_negatives`` other-task queries in the batch; tasks standing in for
    clusters) is counted too.
    """
    data = paper_train_data()
    if data is None:
        return None
    rng = np.random.default_rng(settings.seed)
    rows = rng.permutation(paper_epoch_rows(data, rng))
    encoded = tokenizer(data.queries, truncation=True, max_length=PAPER_PADDING)["input_ids"]
    lengths = np.array([len(ids) for ids in encoded])[rows]
    tasks = labels_to_ids(data.tasks or [""] * len(data))[rows]
    size, negatives = settings.train_batch_size, TrainConfig().num_hard_negatives
    usable = len(rows) - len(rows) % size
    tokens: dict[str, float] = {"real": float(lengths[:usable].mean()), "padded_512": 512.0}
    anchors: dict[str, float] = {}
    for pool in PADDING_POOLS:
        padded, valid = 0, 0
        for start in range(0, usable, pool * size):
            block = np.arange(start, min(start + pool * size, usable))
            block = block[np.argsort(lengths[block], kind="stable")]
            for batch in np.split(block, len(block) // size):
                padded += int(lengths[batch].max()) * size
                same = (tasks[batch][:, None] == tasks[batch][None, :]).sum(axis=1) - 1
                valid += int(((same > 0) & (size - 1 - same >= negatives)).sum())
        name = "shuffled" if pool == 1 else f"grouped_pool_{pool}"
        tokens[name], anchors[name] = padded / usable, valid / usable
    return {
        "queries": int(usable),
        "batch_size": size,
        "tokens_per_query": tokens,
        "token_ratio_vs_512": {k: 512.0 / v for k, v in tokens.items()},
        "sample_sample_anchor_share": anchors,
    }


def pad_to(batch: Batch, length: int, pad_id: int) -> Batch:
    """The same batch with its tokens right-padded to ``length`` (the paper's recipe)."""
    given = _tokens(batch)
    extra = length - given["input_ids"].shape[1]
    tokens = {
        "input_ids": F.pad(given["input_ids"], (0, extra), value=pad_id),
        "attention_mask": F.pad(given["attention_mask"], (0, extra), value=0),
    }
    return Batch(scores=batch.scores, clusters=batch.clusters, tokens=tokens)


def length_grouped_batches(
    router: Router, data: RoutingData, clusters: np.ndarray, size: int, steps: int
) -> list[Batch]:
    """PROTOTYPE, not the trainer: sort a pool of queries by length and cut it into batches,
    so each batch pads only to its own similar lengths (a trainer would shuffle their order).

    Returns ``steps`` of the pool's batches, taken at evenly spaced places in the length
    order, so that their mean cost stands for the whole pool's.
    """
    lengths = router.tokenize(data.queries)["attention_mask"].sum(dim=1).numpy()
    order = np.argsort(lengths, kind="stable")
    chunks = [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
    picked = [chunks[int((k + 0.5) * len(chunks) / steps)] for k in range(steps)]
    return [_batch_of(router, data, clusters, rows) for rows in picked]


def _tokens(batch: Batch) -> dict[str, torch.Tensor]:
    if batch.tokens is None:
        raise ValueError("expected a batch of token ids, got cached vectors")
    return batch.tokens


def _batch_of(router: Router, data: RoutingData, clusters: np.ndarray, rows: Any) -> Batch:
    return Batch(
        scores=torch.tensor(data.scores[rows], dtype=torch.float32),
        clusters=torch.tensor(clusters[rows], dtype=torch.long),
        tokens=router.tokenize([data.queries[i] for i in rows]),
    )


def training_figures(settings: Settings) -> dict[str, Any]:
    """Queries/s of train_step with dynamic padding, 512-padding and length grouping.

    One model and optimizer serve all variants (speed does not depend on the weights); the
    timed steps alternate between variants so that load from elsewhere hits them alike.
    Dynamic and 512-padding train on the very same batches (the trainer's own, one epoch of
    the timed queries); the grouping prototype on batches of a larger pool of queries.
    """
    data, source = training_data(settings)
    size, steps = settings.train_batch_size, settings.train_timed_steps
    warmup_rows, timed_rows = np.arange(size), np.arange(size, size * (steps + 1))
    pool_rows = np.arange(size, len(data))
    clusters = labels_to_ids(data.tasks or [""] * len(data))
    router = build_router(list(data.llm_names), settings.seed)
    config = TrainConfig(
        batch_size=size, train_encoder=True, seed=settings.seed, max_length=PAPER_PADDING
    )
    timed = data.subset(timed_rows)
    setup: Setup = build(router, timed.queries, timed.scores, clusters[timed_rows], None, config)
    # The trainer's own batches: shuffled, each padded to its longest query; one epoch.
    dynamic = [next(setup.batches) for _ in range(steps)]
    pad_id = router.tokenizer.pad_token_id
    padded_steps = min(settings.train_padded_steps, steps)
    variants = {
        "dynamic_padding": dynamic,
        "padded_512": [pad_to(b, PAPER_PADDING, pad_id) for b in dynamic[:padded_steps]],
        "length_grouped_prototype": length_grouped_batches(
            router, data.subset(pool_rows), clusters[pool_rows], size, steps
        ),
    }
    logger.info("training: warm-up step (batch %d)", size)
    train_step(setup, _batch_of(router, data, clusters, warmup_rows), config)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for step in range(steps):
        for name, batches in variants.items():
            if step >= len(batches):
                continue
            start = time.perf_counter()
            train_step(setup, batches[step], config)
            seconds[name].append(time.perf_counter() - start)
            logger.info("training step %d, %s: %.2f s", step + 1, name, seconds[name][-1])
    figures: dict[str, Any] = {
        "data": source,
        "batch_size": size,
        "timed_steps": {name: len(batches) for name, batches in variants.items()},
        "warmup_steps": 1,
        "mode": "full fine-tuning (train_encoder=True), default TrainConfig otherwise",
        "queries_per_s": {},
        "step_seconds": {},
        "grouping_pool_batches": GROUPING_POOL,
        "padded_tokens_per_query": {},
        "real_tokens_per_query": {},
    }
    for name, batches in variants.items():
        masks = [_tokens(b)["attention_mask"] for b in batches]  # each (B, L)
        figures["queries_per_s"][name] = size * len(batches) / sum(seconds[name])
        figures["step_seconds"][name] = seconds[name]
        figures["padded_tokens_per_query"][name] = float(np.mean([m.numel() for m in masks])) / size
        figures["real_tokens_per_query"][name] = (
            float(np.mean([m.sum().item() for m in masks])) / size
        )
    return figures


# ---------------------------------------------------------------------- memory


def rss_figures(router: Router, short: list[str], long: list[str], settings: Settings) -> dict:
    """Peak RSS of a fresh process that imports core, loads a saved router and routes."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = router.save(Path(tmp) / "router")
        queries_path = Path(tmp) / "queries.json"
        queries_path.write_text(
            json.dumps(
                {
                    "short": short[: settings.rss_short_queries],
                    "long": long[: settings.rss_long_queries],
                }
            ),
            encoding="utf-8",
        )
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


# ---------------------------------------------------------------------- report


def check_targets(results: dict[str, Any]) -> dict[str, Any]:
    checked = {}
    for key, (op, bound) in TARGETS.items():
        value = results[key]
        met = value < bound if op == "<" else value >= bound
        checked[key] = {"target": f"{op} {bound:g}", "value": value, "met": bool(met)}
    return checked


def markdown(results: dict[str, Any]) -> str:
    bare, train, rss = results["bare_encoder"], results["training"], results["rss_process"]
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
    targets = results["targets"]

    def target_cell(key: str) -> str:
        if key not in targets:
            return ""
        t = targets[key]
        return f"{t['target']} ({'met' if t['met'] else 'NOT met'})"

    lines = [
        "# Speed and memory",
        "",
        f"CPU threads: {results['provenance']['machine']['cpu_threads']}; "
        f"load average before/after: {results['load_average']['before']} / "
        f"{results['load_average']['after']}. Short queries {SHORT_TOKENS} tokens, "
        f"long {LONG_TOKENS} tokens (special tokens included), cut from "
        f"{results['query_text']}.",
        "",
        *(
            [
                "**Other processes were running** (load average above 1 before the run, or "
                "above the CPU count + 1 after it): the timings are inflated, the ratios less so.",
                "",
            ]
            if results["load_average"]["busy"]
            else []
        ),
        "## Routing (default encoder, untrained router, CPU)",
        "",
        "| measure | router | bare encoder (limit) | target |",
        "| --- | ---: | ---: | --- |",
    ]
    for label, key, limit in rows:
        lines.append(f"| {label} | {_fmt(results[key])} | {_fmt(limit)} | {target_cell(key)} |")
    q = train["queries_per_s"]
    lines += [
        "",
        f"## Training (batch {train['batch_size']}, full fine-tuning, {train['warmup_steps']} "
        f"warm-up step, {train['data']})",
        "",
        "| batches | timed steps | queries/s | real tokens per query | padded tokens per query "
        "| speed-up vs 512-padding |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    labels = {
        "dynamic_padding": "our trainer: shuffled, padded to the batch's longest",
        "padded_512": "paper recipe: every batch padded to 512",
        "length_grouped_prototype": (
            f"prototype: pools of {GROUPING_POOL} batches grouped by length (not in the trainer)"
        ),
    }
    for name, label in labels.items():
        lines.append(
            f"| {label} | {train['timed_steps'][name]} | {q[name]:.2f} | "
            f"{train['real_tokens_per_query'][name]:.0f} | "
            f"{train['padded_tokens_per_query'][name]:.0f} | {q[name] / q['padded_512']:.2f}x |"
        )
    lines += [
        "",
        f"train_speedup_vs_padded: {results['train_speedup_vs_padded']:.2f}x "
        f"(target {target_cell('train_speedup_vs_padded')}). The steps take turns between "
        "variants. 512-padding trains on the first of our trainer's batches, padded (its cost "
        "does not depend on the queries); the prototype sorts a pool of "
        f"{train['grouping_pool_batches']} batches by length and times batches spread over "
        "the length order.",
    ]
    epoch = train.get("padding_per_epoch")
    if epoch:
        lines += [
            "",
            f"Padded tokens per query over one epoch of the paper's sampling ({epoch['queries']} "
            f"queries, batch {epoch['batch_size']}; counted, not timed; grouped = a pool of that "
            "many batches sorted by length, then cut):",
            "",
            "| batches | tokens per query | 512 / tokens | sample-sample anchors usable |",
            "| --- | ---: | ---: | ---: |",
            *(
                f"| {name} | {value:.0f} | {epoch['token_ratio_vs_512'][name]:.2f}x | "
                + (
                    f"{epoch['sample_sample_anchor_share'][name]:.0%}"
                    if name in epoch["sample_sample_anchor_share"]
                    else ""
                )
                + " |"
                for name, value in epoch["tokens_per_query"].items()
            ),
        ]
    lines += [
        "",
        "## Memory of a routing process",
        "",
        f"Peak RSS {results['peak_rss_mib']:.0f} MiB (target {target_cell('peak_rss_mib')}); "
        f"{rss['routed']}.",
        "",
        "| after | peak RSS (MiB) |",
        "| --- | ---: |",
        *(f"| {k} | {v:.0f} |" for k, v in rss["peaks"].items()),
        "",
        "Imported in that process: "
        + ", ".join(f"{m}: {'yes' if v else 'no'}" for m, v in rss["imported"].items())
        + ".",
    ]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def run(settings: Settings) -> dict[str, Any]:
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
    parameters, bare_parameters = router.num_parameters(), bare.model.num_parameters()
    del router, bare  # training builds its own model
    train = training_figures(settings)
    train["padding_per_epoch"] = padding_per_epoch(tokenizer, settings)
    q = train["queries_per_s"]

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
        "train_speedup_vs_padded": q["dynamic_padding"] / q["padded_512"],
        "train_speedup_length_grouped_vs_padded": q["length_grouped_prototype"] / q["padded_512"],
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
        "query_text": query_text,
        "query_tokens": {"short": SHORT_TOKENS, "long": LONG_TOKENS},
        "route_batch_size": ROUTE_BATCH,
        "load_average": {"before": load_before, "after": load_after, "busy": busy},
    }
    results["targets"] = check_targets(results)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--train-batch-size", type=int, help="training batch size (default 16)")
    parser.add_argument(
        "--train-steps",
        type=int,
        help="timed steps of our trainer and of the grouping prototype (default 8)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = Settings.quick() if args.quick else Settings()
    overrides = {
        k: v
        for k, v in (
            ("train_batch_size", args.train_batch_size),
            ("train_timed_steps", args.train_steps),
        )
        if v is not None
    }
    settings = Settings(**{**asdict(settings), **overrides})
    start = time.perf_counter()
    results = run(settings)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    json_path, md_path = write_results("speed", results, markdown(results))
    logger.info("wrote %s and %s in %.0f s", json_path, md_path, results["wall_seconds"])
    for key, target in results["targets"].items():
        logger.info(
            "%s = %.4g (target %s): %s",
            key,
            target["value"],
            target["target"],
            "met" if target["met"] else "NOT met",
        )


if __name__ == "__main__":
    main()
