"""The paper benchmark on a GPU: full fine-tuning at the paper's budget, and the paper's recipe.

    python -m benchmarks.paper_gpu --data-dir DATA [--seeds 0 1 2] [--out-dir DIR]

Rows, each over the seeds: ``routerdc`` is the default recipe with the encoder fine-tuned at the
paper's budget (batch 64, 1000 steps; what ``core.fit`` does by default on a GPU, with that
budget); ``routerdc_paper_recipe`` is ``TrainConfig.paper()`` exactly; ``routerdc_frozen`` is
the frozen default (the CPU default) for reference; then the single LLMs, the best single LLM
and the oracle. Same data, splits and metric as ``benchmarks.paper``. Results are rewritten
after every row, so a run cut short keeps what it finished. Needs CUDA; run through
``benchmarks/gpu/run.sh`` on the accelerator machine.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import core
from benchmarks.common import PAPER_DATA, RESULTS, provenance, require_data, write_results
from benchmarks.paper import (
    PAPER_RECIPE,
    PAPER_REPORTED,
    SAMPLES_PER_TASK,
    Experiment,
    markdown,
    reference_rows,
    run_routerdc,
)
from core.training.trainer import EncodingCache

logger = logging.getLogger("benchmarks.paper_gpu")

PAPER_BUDGET = {"train_encoder": True, "steps": 1000, "batch_size": 64, "learning_rate": 5e-5}
ROWS: dict[str, dict[str, Any]] = {
    "routerdc_frozen": {"train_encoder": False},
    "routerdc": PAPER_BUDGET | {"eval_every": 50},
    "routerdc_paper_recipe": PAPER_RECIPE | {"eval_every": 50},
}


def gpu_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"


def report(payload: dict[str, Any]) -> str:
    """``benchmarks.paper``'s table, with the GPU and the training time of each row."""
    settings = payload["provenance"]["settings"]
    lines = [markdown(payload), "", f"GPU: {settings['gpu']}. Training time per run (s):", ""]
    trained = {"routerdc": payload["routerdc"]} | payload["rows"]
    for name, row in trained.items():
        if "train_seconds" in row:
            lines.append(f"- {name}: " + ", ".join(f"{s:.0f}" for s in row["train_seconds"]))
    lines += ["", f"Whole run: {payload['total_seconds']:.0f} s."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=PAPER_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--steps", type=int, help="override every trained row's steps (a smoke test only)"
    )
    parser.add_argument("--allow-cpu", action="store_true", help="run without CUDA (smoke test)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not (torch.cuda.is_available() or args.allow_cpu):
        raise SystemExit("benchmarks.paper_gpu needs CUDA (or --allow-cpu for a smoke test)")
    require_data(args.data_dir)
    experiment = Experiment(args.data_dir, SAMPLES_PER_TASK, EncodingCache())
    started = time.perf_counter()
    smoke = {"steps": args.steps, "eval_every": max(1, args.steps // 2)} if args.steps else {}
    payload: dict[str, Any] = {
        "provenance": provenance(
            {
                "seeds": args.seeds,
                "gpu": gpu_name(),
                "samples_per_task": SAMPLES_PER_TASK,
                "validation_fraction": 0.1,
                "rows": {name: overrides | smoke for name, overrides in ROWS.items()},
                "mixed_precision": "bf16 autocast on CUDA (core.training.trainer.train_step)",
            }
        ),
        "default_recipe": {k: v for k, v in asdict(core.TrainConfig()).items() if k != "device"}
        | PAPER_BUDGET,
        "rows": {},
    }
    trained: dict[str, Any] = {}
    for name, overrides in ROWS.items():
        trained[name] = run_routerdc(experiment, name, args.seeds, overrides | smoke)
        trained[name].pop("histories", None)
        payload["routerdc"] = trained.get("routerdc", trained[name])
        payload["rows"] = {k: v for k, v in trained.items() if k != "routerdc"}
        payload["total_seconds"] = time.perf_counter() - started
        write_results("paper_gpu", payload, report(payload), folder=args.out_dir)
    payload["rows"] |= reference_rows(experiment) | PAPER_REPORTED
    payload["total_seconds"] = time.perf_counter() - started
    write_results("paper_gpu", payload, report(payload), folder=args.out_dir)
    logger.info("wrote paper_gpu to %s in %.0f s", args.out_dir, payload["total_seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
