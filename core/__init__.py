"""routerdc core: the RouterDC engine (train, route, save, load), free of any app framework.

Example:
    >>> import core
    >>> data = core.RoutingData.from_file("logs.jsonl")       # doctest: +SKIP
    >>> router = core.fit(data)                                # doctest: +SKIP
    >>> router.route("Natalia sold 48 clips in April ...").llm  # doctest: +SKIP

``Router``, ``load``, ``fit`` and ``calibrate`` are imported on first use: ``import core`` is
light (no torch, no transformers), and an app that only loads a router and routes never imports
the training stack (losses, clustering, scikit-learn). ``load`` of an exported router
(``routerdc export``) imports neither torch nor transformers: it routes on ONNX Runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .config import RouterConfig, TrainConfig
from .data.dataset import RoutingData
from .data.log import RoutingLog
from .errors import (
    AllLLMsFailedError,
    ConfigError,
    DataError,
    DataTypeError,
    LLMTimeoutError,
    QueryError,
    QueryTypeError,
    RouterDCError,
    RouterFileError,
    RoutingError,
    UnknownLLMError,
    UnknownRunError,
)
from .routing.base import BaseRouter, Decision, explore

if TYPE_CHECKING:
    from .routing.loading import load
    from .routing.onnx_router import OnnxRouter
    from .routing.router import Router
    from .training.calibration import Calibration, calibrate
    from .training.trainer import fit

__all__ = [
    "AllLLMsFailedError",
    "BaseRouter",
    "Calibration",
    "ConfigError",
    "DataError",
    "DataTypeError",
    "Decision",
    "LLMTimeoutError",
    "OnnxRouter",
    "QueryError",
    "QueryTypeError",
    "Router",
    "RouterConfig",
    "RouterDCError",
    "RouterFileError",
    "RoutingData",
    "RoutingError",
    "RoutingLog",
    "TrainConfig",
    "UnknownLLMError",
    "UnknownRunError",
    "__version__",
    "calibrate",
    "explore",
    "fit",
    "load",
]

# Imported on first use: torch and transformers load only when a router is loaded or trained.
_LAZY = {
    "fit": ".training.trainer",
    "calibrate": ".training.calibration",
    "Calibration": ".training.calibration",
    "Router": ".routing.router",
    "load": ".routing.loading",
    "OnnxRouter": ".routing.onnx_router",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'core' has no attribute {name!r}")
