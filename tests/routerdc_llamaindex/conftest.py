"""Fixtures for the LlamaIndex adapter: one query per toy LLM, and MockLLM candidates."""

from __future__ import annotations

import pytest
from llama_index.core.llms import MockLLM

import core

# Words of each toy topic (see tests/conftest.py), one query per LLM.
QUERIES = {
    "math-llm": "solve the equation integral derivative",
    "code-llm": "write a python function class loop",
    "chat-llm": "tell me a story about friendship holiday weather",
}
# Each candidate answers with this many words, so an answer shows which LLM gave it.
WORDS = {"math-llm": 1, "code-llm": 2, "chat-llm": 3}


@pytest.fixture(scope="session")
def queries(tiny_router: core.Router) -> dict[str, str]:
    """One query per LLM, each of which the tiny router sends to that LLM."""
    routed = {llm: tiny_router.route(query).llm for llm, query in QUERIES.items()}
    assert routed == {llm: llm for llm in QUERIES}, f"the tiny router routes {routed}"
    return QUERIES


@pytest.fixture
def mock_llms() -> dict[str, MockLLM]:
    """A MockLLM per toy LLM; math-llm answers "text", code-llm "text text", chat-llm three."""
    return {name: MockLLM(max_tokens=words) for name, words in WORDS.items()}


@pytest.fixture
def words() -> dict[str, int]:
    """How many words each of ``mock_llms`` answers with."""
    return dict(WORDS)
