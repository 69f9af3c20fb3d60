"""Shared fixtures: a tiny offline encoder, a toy routing data set, and a router trained on it.

The tiny encoder is a 2-layer BERT with random weights and the bundled MiniLM tokenizer,
saved to a temporary folder, so tests load it through the same code path as any
Hugging Face encoder, offline and in well under a second.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

import core
from core.routing.encoder import save_random_encoder

# The test models are tiny: intra-op threads buy nothing, and on a busy shared CPU their
# spin-waiting made the tiny router's training ten times slower.
torch.set_num_threads(1)

# Three kinds of query, each answered best by a different LLM.
TOPICS = {
    "math": ("solve the equation integral derivative number", "math-llm"),
    "code": ("write a python function class loop compile", "code-llm"),
    "chat": ("tell me a story about friendship holiday weather", "chat-llm"),
}
LLMS = ["math-llm", "code-llm", "chat-llm"]


def toy_records(n_per_topic: int = 40, seed: int = 0) -> list[dict]:
    """Queries built from each topic's words; the topic's own LLM scores 1, the others 0-0.3."""
    rng = random.Random(seed)
    records = []
    for topic, (words, best) in TOPICS.items():
        vocab = words.split()
        for i in range(n_per_topic):
            text = " ".join(rng.choice(vocab) for _ in range(rng.randint(4, 9)))
            scores = {
                llm: (1.0 if llm == best else rng.choice([0.0, 0.1, 0.2, 0.3])) for llm in LLMS
            }
            records.append({"query": f"{text} #{i}", "scores": scores, "task": topic})
    rng.shuffle(records)
    return records


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny random BERT encoder with the bundled tokenizer."""
    return save_random_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def toy_data() -> core.RoutingData:
    return core.RoutingData.from_records(toy_records())


@pytest.fixture(scope="session")
def tiny_router(tiny_encoder: str, toy_data: core.RoutingData) -> core.Router:
    """A router trained on the toy data; it routes each topic to its LLM."""
    return core.fit(
        toy_data,
        encoder=tiny_encoder,
        train_encoder=True,
        steps=60,
        batch_size=16,
        learning_rate=1e-3,
        head_learning_rate=1e-2,
        max_length=64,
        # tau 1 keeps the probabilities graded, so that a cost weight of 1 can move a choice.
        temperature=1.0,
        seed=0,
        progress=False,
    )


@pytest.fixture
def saved_router(tiny_router: core.Router, tmp_path: Path) -> Path:
    return tiny_router.save(tmp_path / "router")
