"""Replacing a folder whole: write the new version beside it, fsync, then swap it into place.

A save killed at any point leaves the old folder or the new one, never a mix of the two.
The new version is written to a hidden sibling (``.NAME.new-XXXXXXXX``, on the same file
system, so renames are atomic), every file and folder in it is fsynced, and only then does it
take the target's place:

- no target yet (or an empty folder): one ``rename``, atomic on POSIX;
- a target to replace, on Linux and macOS: one atomic exchange of the two folders
  (``renameat2(RENAME_EXCHANGE)``, ``renamex_np(RENAME_SWAP)``), so the target path always
  holds a whole version; the old one, now in the sibling, is then removed;
- where the file system cannot exchange: the old folder is renamed to ``.NAME.old-XXXXXXXX``
  and the new one to the target. A kill between those two renames leaves no target but a
  whole previous version beside it; :func:`interrupted_saves` finds it, so that a loader can
  say so.

Leftover siblings of a save that was killed are removed by the next save into the target.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h
_RENAME_SWAP = 2  # macOS sys/stdio.h


def replace_folder(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Fill a fresh folder with ``write`` and make it ``target``, atomically where possible.

    Args:
        target: the folder to create or replace; its parent is created when missing.
        write: called with the fresh folder (empty, beside ``target``) to write into.

    Returns:
        ``target``, resolved to an absolute path.

    Raises:
        Whatever ``write`` raises, or an ``OSError`` from the file system; the target is then
        left as it was and the fresh folder removed.
    """
    target = Path(os.path.realpath(target))
    if os.path.lexists(target) and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _new_sibling(target, "new")
    try:
        write(staging)
        _fsync_tree(staging)
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_folder(target.parent)
    _remove_leftovers(target)
    return target


def interrupted_saves(target: str | Path) -> list[Path]:
    """Siblings of ``target`` that a killed save left behind, previous versions first.

    A ``.old-`` sibling is a whole previous version (the save was killed between its two
    renames); a ``.new-`` sibling may be incomplete.
    """
    target = Path(os.path.realpath(target))
    found = [p for p in _leftovers(target) if p.is_dir()]
    return sorted(found, key=lambda p: (".new-" in p.name, p.name))


def _swap_into_place(staging: Path, target: Path) -> None:
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()  # rename over an empty folder is POSIX-only; this works everywhere
        os.rename(staging, target)
        return
    shutil.copymode(target, staging)  # keep the folder's permissions
    if _exchange(staging, target):
        _fsync_folder(target.parent)  # the exchange is durable before the old copy goes
        shutil.rmtree(staging)  # it now holds the previous version
        return
    previous = _new_sibling(target, "old", create=False)
    os.rename(target, previous)
    os.rename(staging, target)
    _fsync_folder(target.parent)
    shutil.rmtree(previous)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step; False where the platform or file system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        if sys.platform.startswith("linux"):
            result = libc.renameat2(
                _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
            )
        elif sys.platform == "darwin":
            result = libc.renamex_np(os.fsencode(first), os.fsencode(second), _RENAME_SWAP)
        else:
            return False
    except (AttributeError, OSError):  # no such function in this C library
        return False
    if result != 0:
        error = ctypes.get_errno()
        logger.debug("atomic exchange unavailable (%s); renaming in two steps", os.strerror(error))
        return False
    return True


def _new_sibling(target: Path, kind: str, *, create: bool = True) -> Path:
    """A fresh hidden path beside ``target``; created (with the usual permissions) if asked."""
    while True:
        path = target.parent / f".{target.name}.{kind}-{secrets.token_hex(4)}"
        if not create:
            if not os.path.lexists(path):
                return path
            continue
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path


def _leftovers(target: Path) -> list[Path]:
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(new|old)-[0-9a-f]{{8}}")
    if not target.parent.is_dir():
        return []
    return [p for p in target.parent.iterdir() if pattern.fullmatch(p.name)]


def _remove_leftovers(target: Path) -> None:
    for path in _leftovers(target):
        logger.info("removing %s, left by an interrupted save", path)
        shutil.rmtree(path, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    """fsync every file under ``folder``, then every folder, deepest first."""
    for root, _, files in os.walk(folder, topdown=False):
        for name in files:
            _fsync_file(Path(root) / name)
        _fsync_folder(Path(root))


def _fsync_file(path: Path) -> None:
    # Windows cannot flush a read-only handle.
    fd = os.open(path, os.O_RDONLY if os.name == "posix" else os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(path: Path) -> None:
    """Make a folder's entries (renames, new files) durable; POSIX only."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
