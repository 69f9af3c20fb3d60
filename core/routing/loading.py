"""``core.load``: a saved router of either kind, torch imported only for a torch one.

A folder with a ``model.onnx`` is an exported router (:mod:`core.routing.onnx_router`), loaded with
ONNX Runtime and the ``tokenizers`` library alone; any other folder is a torch router
(:mod:`core.routing.router`), loaded with torch and transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import BaseRouter
from .onnx_router import OnnxRouter, is_exported


def load(path: str | Path, *, device: Any = "auto") -> BaseRouter:
    """Load a router saved by ``Router.save`` or exported by ``routerdc export``.

    Args:
        path: the router's folder.
        device: ``"auto"`` (cuda, then mps, then cpu for a torch router; the CPU for an
            exported one), ``"cpu"``, ``"cuda"``, or for a torch router any torch device.

    Returns:
        A :class:`core.Router` for a saved torch router, an
        :class:`~core.routing.onnx_router.OnnxRouter` for an exported one; both route the same
        way (:class:`~core.routing.base.BaseRouter`).

    Raises:
        RouterFileError: a file of the router is missing or unreadable.
    """
    if is_exported(path):
        return OnnxRouter.load(path, device=device)
    from .router import Router

    return Router.load(path, device=device)
