"""Train a router as one process of a distributed run; launched by test_distributed.py.

Usage, on CPUs: ``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2
distributed_fit.py ENCODER DATA OUT HISTORY``
"""

from __future__ import annotations

import sys

import core

FIT_SETTINGS = {
    "train_encoder": False,
    "steps": 12,
    "batch_size": 25,  # odd: the two slices differ in size (13 and 12)
    "seed": 0,
    "clusters": "tasks",
    "max_length": 32,
    "eval_every": 4,
    "progress": False,
}


def main(encoder: str, data: str, out: str, history: str) -> None:
    router = core.fit(
        core.RoutingData.from_files([data]), encoder=encoder, history_path=history, **FIT_SETTINGS
    )
    router.save(out)


if __name__ == "__main__":
    main(*sys.argv[1:5])
