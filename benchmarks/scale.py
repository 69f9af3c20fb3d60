"""Training on large generated logs: rows, wall time, peak memory and queries per second.

Each size runs in a fresh process (so its peak RSS is its own), on a generated JSONL of that
many rows (5 LLMs, 3 tasks), with a frozen encoder. ``fit`` reads the whole file into memory
(streaming is not built yet), so this is the baseline a streaming reader must beat; the encoder
dominates the time, so large sizes may use ``--tiny-encoder`` (a 2-layer random BERT with the
bundled tokenizer), which the results file states.

    python -m benchmarks.scale --rows 10000 100000 --steps 200
    python -m benchmarks.scale --rows 10000 100000 1000000 --tiny-encoder --out-name scale

Writes ``benchmarks/results/<out-name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import provenance, write_results

logger = logging.getLogger(__name__)

LLMS = ("llm-a", "llm-b", "llm-c", "llm-d", "llm-e")
TOPICS = {
    "math": "solve the equation integral derivative number sum product",
    "code": "write a python function class loop compile test refactor",
    "chat": "tell me a story about friendship holiday weather travel",
}


def write_log(path: Path, rows: int, seed: int = 0) -> None:
    """A JSONL routing log of ``rows`` distinct queries, written line by line."""
    rng = random.Random(seed)
    topics = list(TOPICS)
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            task = topics[i % len(topics)]
            words = TOPICS[task].split()
            text = " ".join(rng.choice(words) for _ in range(rng.randint(5, 15)))
            scores = {llm: float(rng.random() < 0.3 + 0.1 * j) for j, llm in enumerate(LLMS)}
            record = {"query": f"{text} #{i}", "scores": scores, "task": task}
            out.write(json.dumps(record) + "\n")


def make_tiny_encoder(folder: Path) -> str:
    """A 2-layer random BERT with the bundled tokenizer, saved to ``folder``."""
    import torch
    from transformers import BertConfig, BertModel

    from core.routing.encoder import load_tokenizer, resolve_encoder

    tokenizer = load_tokenizer(resolve_encoder(None))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def run_child(data: Path, encoder: str | None, steps: int, batch_size: int) -> dict[str, Any]:
    """Read ``data`` and fit on it in this process; time it and report the peak RSS."""
    import core

    start = time.perf_counter()
    routing = core.RoutingData.from_files([str(data)])
    read_s = time.perf_counter() - start
    core.fit(
        routing,
        encoder=encoder,
        train_encoder=False,
        steps=steps,
        batch_size=batch_size,
        clusters="tasks",
        smoothing_neighbours=0,
        progress=False,
    )
    wall_s = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "rows": len(routing),
        "read_s": round(read_s, 2),
        "wall_s": round(wall_s, 2),
        "peak_rss_gib": round(peak_kib / 2**20, 3),
        "queries_per_s": round(len(routing) / wall_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--encoder", help="encoder id or path (default: the bundled MiniLM)")
    parser.add_argument("--tiny-encoder", action="store_true", help="a 2-layer random BERT")
    parser.add_argument("--out-name", default="scale")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.child is not None:
        result = run_child(args.child, args.encoder, args.steps, args.batch_size)
        print(json.dumps(result))
        return 0

    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        encoder = args.encoder
        if args.tiny_encoder:
            encoder = make_tiny_encoder(Path(tmp) / "tiny-encoder")
        for rows in args.rows:
            data = Path(tmp) / f"log-{rows}.jsonl"
            write_log(data, rows)
            command = [sys.executable, "-m", "benchmarks.scale", "--child", str(data)]
            command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
            if encoder:
                command += ["--encoder", encoder]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                logger.error("%d rows failed:\n%s", rows, done.stderr[-3000:])
                rows_out.append({"rows": rows, "error": done.stderr.strip().splitlines()[-1:]})
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            logger.info("%s", result)
            rows_out.append(result)
            data.unlink()

    settings = {
        "rows": args.rows,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "encoder": "tiny random 2-layer BERT (32 wide)"
        if args.tiny_encoder
        else (args.encoder or "bundled all-MiniLM-L6-v2"),
        "mode": "frozen encoder, clusters = tasks, no smoothing, whole file read into memory",
    }
    payload = {"provenance": provenance(settings), "results": rows_out}
    lines = [
        "# Training on large generated logs",
        "",
        f"Encoder: {settings['encoder']}; {settings['mode']}; {args.steps} steps of "
        f"{args.batch_size}. Each size in a fresh process.",
        "",
        "| rows | read (s) | wall (s) | peak RSS (GiB) | queries/s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows_out:
        if "error" in r:
            lines.append(f"| {r['rows']} | failed: {r['error']} | | | |")
        else:
            lines.append(
                f"| {r['rows']} | {r['read_s']} | {r['wall_s']} | {r['peak_rss_gib']} "
                f"| {r['queries_per_s']} |"
            )
    json_path, _ = write_results(args.out_name, payload, "\n".join(lines))
    logger.info("wrote %s", json_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
