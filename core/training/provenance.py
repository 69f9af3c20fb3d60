"""How a router was trained, as a model card would state it: saved as ``training.json``.

:func:`training_record` is built by ``fit`` at the end of training; ``Router.save`` writes it
beside the weights, ``core.load`` ignores it and ``routerdc info --router R`` prints it.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._version import __version__

if TYPE_CHECKING:
    import torch

    from ..config import TrainConfig
    from ..data.dataset import RoutingData
    from .distributed import Processes

PACKAGES = ("torch", "transformers", "safetensors", "numpy", "scikit-learn", "accelerate")


def training_record(
    data: RoutingData,
    validation: RoutingData | None,
    config: TrainConfig,
    processes: Processes,
    device: torch.device,
    wall_time_s: float,
    encoder: str | None,
) -> dict[str, Any]:
    """The provenance of one ``fit``: data, recipe, scale, device, versions and commit.

    Args:
        data: the training queries (after the validation hold-out).
        validation: the queries the best checkpoint was picked on, if any.
        config: the recipe as resolved for the device.
        processes: the processes of the run (one, or an Accelerate run's).
        device: this process's device.
        wall_time_s: seconds from the start of ``fit`` to the end of training.
        encoder: the encoder as given to ``fit`` (None: the bundled default).
    """
    accumulation = processes.gradient_accumulation_steps
    record: dict[str, Any] = {
        "routerdc_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "training_queries": len(data),
        "validation_queries": 0 if validation is None else len(validation),
        "llms": list(data.llm_names),
        "encoder": encoder or "default",
        "recipe": dataclasses.asdict(config),
        "steps": config.steps,
        "optimizer_steps": config.steps // accumulation,
        "num_processes": processes.num_processes,
        # Queries per batch over all processes; an optimizer step sees `accumulation` of them.
        "global_batch_size": config.batch_size,
        "gradient_accumulation_steps": accumulation,
        "device": device.type,
        "precision": processes.precision(device),
        "wall_time_s": round(wall_time_s, 3),
        "python": platform.python_version(),
        "packages": _package_versions(),
    }
    commit = _git_commit()
    if commit is not None:
        record["commit"] = commit
    return record


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _git_commit() -> str | None:
    """The commit of the routerdc source when it sits in a git checkout, else None."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None
