"""What every benchmark shares: where data and results live, and how a result file is written.

Every results file records the command, the git commit and the settings that produced it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from core.training.trainer import EncodingCache

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATA = ROOT.parent / "shared" / "data"
PAPER_DATA = SHARED_DATA / "routerdc-7llm"
ROUTERBENCH_DATA = SHARED_DATA / "routerbench"
TASKS = ("mmlu", "gsm8k", "cmmlu", "arc_challenge", "humaneval")


# Source of ``peak()`` for the scripts benchmarks run in fresh interpreters: the process's own
# peak RSS in MiB. VmHWM is this process's own peak; ru_maxrss is not, on Linux: exec keeps the
# high-water mark of the parent's memory that the child was forked from.
PEAK_RSS_SOURCE = """
def peak():
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, else KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
"""


def git_commit() -> str:
    """The commit the results come from, with ``-dirty`` when the tree has changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        # A copy of the tree without .git (the GPU machine): the caller may name the commit.
        return os.environ.get("ROUTERDC_GIT_COMMIT", "unknown")
    return f"{commit}-dirty" if dirty else commit


def provenance(settings: dict[str, Any]) -> dict[str, Any]:
    """Command, commit, time, machine and settings, to put at the top of a results file."""
    return {
        "command": shlex.join(["python", *sys.orig_argv[1:]]),  # quoted: pastes back as run
        "git_commit": git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        },
        "settings": settings,
    }


def write_results(
    name: str, payload: dict[str, Any], markdown: str, folder: Path = RESULTS
) -> tuple[Path, Path]:
    """Write ``<folder>/<name>.json`` and ``.md`` (``benchmarks/results/`` by default)."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / f"{name}.json", folder / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    meta = payload.get("provenance", {})
    header = (
        f"<!-- written by `{meta.get('command', '?')}` at commit {meta.get('git_commit', '?')} "
        f"on {meta.get('date', '?')} -->\n\n"
    )
    md_path.write_text(header + markdown.rstrip() + "\n", encoding="utf-8")
    return json_path, md_path


def require_data(folder: Path) -> Path:
    """Exit with a clear message when the shared data folder is absent."""
    if not folder.is_dir():
        raise SystemExit(
            f"data folder {folder} not found: benchmarks read ../shared/data/ next to the project"
        )
    return folder


def add_cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--encoding-cache",
        type=Path,
        help="keep the encoded queries in this file (outside the repository) across runs",
    )


def open_cache(path: Path | None) -> EncodingCache:
    """The encoding cache saved at ``path``, or an empty one when there is none yet."""
    return EncodingCache.load(path) if path is not None and path.is_file() else EncodingCache()
