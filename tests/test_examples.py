"""The agent examples run as a user runs them (a fresh interpreter, from the repository root) and
route the maths question to the maths LLM. The RouterBench examples need the shared data and are
run by hand (their docstrings give the command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["langchain_agent.py", "llamaindex_agent.py"])
def test_agent_example_runs_and_routes_the_maths_question_to_the_maths_llm(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "answer:   [math-llm]" in done.stdout, done.stdout[-2000:]
