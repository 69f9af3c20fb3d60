"""The public names, and what importing core pulls in (run in clean interpreters)."""

from __future__ import annotations

import json
import subprocess
import sys

import core

PUBLIC = {
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
    "RoutingError",
    "TrainConfig",
    "UnknownLLMError",
    "__version__",
    "fit",
    "load",
}


def modules_after(statement: str, *watched: str) -> set[str]:
    """Which of ``watched`` modules are imported after running ``statement`` in a new Python."""
    script = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps(sorted(m for m in {list(watched)!r} if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_core_exports_the_public_names_the_other_packages_rely_on() -> None:
    assert set(core.__all__) >= PUBLIC
    for name in core.__all__:
        assert getattr(core, name) is not None
    assert callable(core.fit) and callable(core.load)
    for method in ("route", "route_batch", "rank", "save", "llm_names"):
        assert hasattr(core.Router, method)
    for method in ("from_records", "from_file", "from_pandas"):
        assert hasattr(core.RoutingData, method)


def test_fit_is_the_trainers_fit_imported_on_first_use() -> None:
    from core.training.trainer import fit

    assert core.fit is fit


def test_importing_core_and_its_router_pulls_in_no_app_framework_and_no_training_stack() -> None:
    # One clean interpreter: importing core.routing.router imports the package core first, so this
    # covers both ``import core`` and the routing path an app that only routes loads.
    loaded = modules_after(
        "import core.routing.router\nfrom core import Router, load",
        "langchain",
        "langchain_core",
        "llama_index",
        "routerdc_langchain",
        "routerdc_llamaindex",
        "sklearn",
        "core.training.trainer",
        "core.training.losses",
        "core.training.clustering",
        "core.training.calibration",
    )
    assert loaded == set()
