"""A tiny router trained offline in seconds, for the agent examples: a 2-layer random BERT with
the bundled MiniLM tokenizer, trained on made-up queries of three kinds (maths, code, chat),
each answered best by its own LLM. Real apps load a router trained on their own data."""

from __future__ import annotations

import random
import tempfile

import core

TOPICS = {
    "math-llm": "solve the equation integral derivative number sum add",
    "code-llm": "write a python function class loop compile",
    "chat-llm": "tell me a story about friendship holiday weather",
}


def toy_router() -> core.Router:
    """Train and return the toy router (a few seconds on a CPU)."""
    from core.routing.encoder import save_random_encoder

    folder = save_random_encoder(tempfile.mkdtemp(prefix="routerdc-toy-encoder-"))

    rng = random.Random(0)
    records = []
    for best, words in TOPICS.items():
        vocab = words.split()
        for i in range(40):
            text = " ".join(rng.choice(vocab) for _ in range(rng.randint(4, 9)))
            scores = {llm: 1.0 if llm == best else rng.choice([0.0, 0.2]) for llm in TOPICS}
            records.append({"query": f"{text} #{i}", "scores": scores})
    return core.fit(
        core.RoutingData.from_records(records),
        encoder=folder,
        train_encoder=True,
        steps=60,
        batch_size=16,
        learning_rate=1e-3,
        head_learning_rate=1e-2,
        max_length=64,
        temperature=1.0,
        seed=0,
        progress=False,
    )
