"""Finds a foreign ``core`` package shadowing routerdc's before anything imports it."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def check_core_is_ours() -> None:
    """Raise one clear ImportError when the ``core`` Python would import is not routerdc's.

    routerdc's engine is the top-level package ``core``, installed beside this adapter; an app
    with its own ``core`` package (a Django app's ``core/``, say) earlier on ``sys.path``
    shadows it. The check reads where ``core`` would come from without running its code.
    """
    ours = Path(__file__).resolve().parent.parent / "core" / "__init__.py"
    try:
        spec = importlib.util.find_spec("core")
    except (ImportError, ValueError):  # a module named core without a spec
        spec = None
    found = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if found == ours:
        return
    where = str(found) if found is not None else "a module named 'core' with no file"
    raise ImportError(
        f"routerdc's 'core' package is shadowed by {where}, which Python imports as 'core' "
        f"instead of routerdc's ({ours}). Rename your own 'core' package, or put "
        f"{ours.parent.parent} before its folder on sys.path (PYTHONPATH) and do not import "
        "your 'core' before routerdc."
    )
