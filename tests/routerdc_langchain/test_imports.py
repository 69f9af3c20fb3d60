"""The public names of routerdc_langchain, pinned; and core stays free of LangChain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import routerdc_langchain

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_ALL = [
    "AllLLMsFailedError",
    "ChatRouterDC",
    "LLMTimeoutError",
    "RouterDCDecisionModel",
    "RouterDCMiddleware",
    "RunnableRouter",
]


def test_all_public_names_are_pinned() -> None:
    assert sorted(routerdc_langchain.__all__) == sorted(EXPECTED_ALL)


def test_every_public_name_is_importable() -> None:
    for name in EXPECTED_ALL:
        assert getattr(routerdc_langchain, name).__name__ == name


def test_core_imports_no_langchain_module() -> None:
    # A fresh interpreter, since this one has langchain loaded already.
    code = (
        "import sys, core; "
        "leaked = sorted(m for m in sys.modules if m.split('.')[0].startswith('langchain')); "
        "print(leaked); sys.exit(1 if leaked else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def run_python(code: str, *, cwd: Path | None = None, path: list[str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter; its stdout and stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path or [str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd or ROOT, env=env
    )
    return result.stdout + result.stderr


def test_importing_both_adapters_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, routerdc_langchain, routerdc_llamaindex; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))"
    )
    assert run_python(code).strip().splitlines()[-1] == "[]"


def test_importing_the_adapter_does_not_need_langchain_itself() -> None:
    # The middleware (which needs the optional ``langchain`` package) is imported on first use.
    code = "import sys, routerdc_langchain; print('langchain' in sys.modules)"
    assert run_python(code).strip().splitlines()[-1] == "False"


def test_a_foreign_core_package_gets_one_clear_error(tmp_path: Path) -> None:
    app = tmp_path / "djapp"
    (app / "core").mkdir(parents=True)
    (app / "core" / "__init__.py").write_text("IMPORTED = True\n")
    for adapter in ("routerdc_langchain", "routerdc_llamaindex"):
        output = run_python(f"import {adapter}", cwd=app, path=[str(app), str(ROOT)])
        assert "ImportError: routerdc's 'core' package is shadowed by" in output, output
        assert str(app / "core" / "__init__.py") in output
        assert "Rename your own 'core' package" in output
