"""Fetch the RouterDC repository's public data files once, into a local cache.

Used by ``routerdc demo`` and the examples when no local copy is given with ``--data-dir``.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import RouterDCError

logger = logging.getLogger(__name__)

REPOSITORY = "https://raw.githubusercontent.com/shuhao02/RouterDC"
COMMIT = "0e63989"
# Local file name -> path in the repository at COMMIT.
PAPER_FILES = {
    **{
        f"{task}_{split}.json": f"datasets/split2_model7/{task}_{split}.json"
        for task in ("mmlu", "cmmlu", "arc_challenge", "humaneval")
        for split in ("train", "test")
    },
    "gsm8k_train.json": "datasets/split2_model7_cluster/gsm8k-train.json",
    "gsm8k_test.json": "datasets/split2_model7/gsm8k-test.json",
}
ROUTERBENCH_FILES = {
    name: f"datasets/routerbench_cluster/{name}"
    for name in ("arc_challenge_train.csv", "mbpp_train.csv", "winograde_train.csv")
}


class DownloadError(RouterDCError, OSError):
    """The data could not be fetched (offline, or the server refused)."""


def cache_dir() -> Path:
    """``$ROUTERDC_CACHE``, else ``~/.cache/routerdc``."""
    return Path(os.environ.get("ROUTERDC_CACHE", Path.home() / ".cache" / "routerdc"))


def fetch(files: dict[str, str], folder_name: str, *, names: Sequence[str] | None = None) -> Path:
    """Download ``files`` (local name -> repository path) into the cache unless already there.

    Returns the folder that holds them. Raises :class:`DownloadError` with a hint to pass
    ``--data-dir`` when the network cannot be reached.
    """
    folder = cache_dir() / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    for name in names or list(files):
        target = folder / name
        if target.is_file():
            continue
        url = f"{REPOSITORY}/{COMMIT}/{files[name]}"
        partial = target.with_suffix(target.suffix + ".part")
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            partial.unlink(missing_ok=True)
            raise DownloadError(
                f"cannot download {url} ({err}). If this machine is offline, pass a local copy "
                f"of the data with --data-dir DIR (files: {', '.join(files)})"
            ) from err
        partial.rename(target)
        logger.info("downloaded %s", target)
    return folder
