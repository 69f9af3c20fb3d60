"""The public names of routerdc_langchain, pinned; and core stays free of LangChain."""

from __future__ import annotations

import subprocess
import sys

import routerdc_langchain

EXPECTED_ALL = ["AllLLMsFailedError", "ChatRouterDC", "RunnableRouter"]


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
