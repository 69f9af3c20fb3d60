"""routerdc core: the RouterDC engine (train, route, save, load), free of any app framework.

Example:
    >>> import core
    >>> data = core.RoutingData.from_file("logs.jsonl")       # doctest: +SKIP
    >>> router = core.fit(data)                                # doctest: +SKIP
    >>> router.route("Natalia sold 48 clips in April ...").llm  # doctest: +SKIP

``fit`` and ``calibrate`` are imported on first use, so an app that only loads a router and
routes never imports the training stack (losses, clustering, scikit-learn).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from core.config import RouterConfig, TrainConfig
from core.data import RoutingData
from core.errors import (
    AllLLMsFailedError,
    ConfigError,
    DataError,
    DataTypeError,
    QueryError,
    QueryTypeError,
    RouterDCError,
    RouterFileError,
    UnknownLLMError,
)
from core.router import Decision, Router, load

if TYPE_CHECKING:
    from core.calibration import Calibration, calibrate
    from core.trainer import fit

__all__ = [
    "AllLLMsFailedError",
    "Calibration",
    "ConfigError",
    "DataError",
    "DataTypeError",
    "Decision",
    "QueryError",
    "QueryTypeError",
    "Router",
    "RouterConfig",
    "RouterDCError",
    "RouterFileError",
    "RoutingData",
    "TrainConfig",
    "UnknownLLMError",
    "__version__",
    "calibrate",
    "fit",
    "load",
]

_LAZY = {"fit": "core.trainer", "calibrate": "core.calibration", "Calibration": "core.calibration"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'core' has no attribute {name!r}")
