"""The network: pooling, the router head's cosine logits, and the encoder + head model."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from core.errors import ConfigError
from core.routing.encoder import load_encoder, load_tokenizer, pool
from core.routing.model import RouterDCModel, RouterHead


def test_mean_pooling_averages_only_the_unpadded_tokens() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]


def test_first_token_pooling_takes_the_first_token() -> None:
    hidden = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    assert pool(hidden, torch.ones(2, 3), "first").tolist() == [[0.0, 1.0], [6.0, 7.0]]


def test_head_logits_are_cosine_similarities_over_the_temperature() -> None:
    torch.manual_seed(0)
    head = RouterHead(4, 3, temperature=0.5, projection=False)
    pooled = torch.randn(5, 4)
    logits, vectors = head(pooled)
    expected = F.cosine_similarity(pooled[:, None, :], head.llm_embeddings[None], dim=-1) / 0.5
    torch.testing.assert_close(logits, expected)
    assert logits.shape == (5, 3)
    assert torch.equal(vectors, pooled)
    assert logits.abs().max() <= 1 / 0.5 + 1e-6


def test_the_projection_starts_as_the_identity() -> None:
    torch.manual_seed(0)
    with_projection = RouterHead(4, 3, temperature=1.0, projection=True)
    torch.manual_seed(0)
    without = RouterHead(4, 3, temperature=1.0, projection=False)
    with torch.no_grad():
        with_projection.llm_embeddings.copy_(without.llm_embeddings)
    pooled = torch.randn(2, 4)
    torch.testing.assert_close(with_projection(pooled)[0], without(pooled)[0])


def test_model_gives_logits_and_vectors_for_a_tokenised_batch(tiny_encoder: str) -> None:
    tokenizer = load_tokenizer(tiny_encoder)
    model = RouterDCModel(
        AutoModel.from_pretrained(tiny_encoder),
        4,
        pooling="mean",
        temperature=1.0,
        projection=False,
    ).eval()
    batch = tokenizer(
        ["a short query", "a somewhat longer query here"], padding=True, return_tensors="pt"
    )
    logits, vectors = model(batch["input_ids"], batch["attention_mask"])
    assert logits.shape == (2, 4)
    assert vectors.shape == (2, 32)


def test_a_padded_query_gets_the_same_logits_as_alone(tiny_encoder: str) -> None:
    tokenizer = load_tokenizer(tiny_encoder)
    model = RouterDCModel(
        AutoModel.from_pretrained(tiny_encoder),
        3,
        pooling="mean",
        temperature=1.0,
        projection=False,
    ).eval()
    alone = tokenizer(["short query"], return_tensors="pt")
    padded = tokenizer(
        ["short query", "a much longer query " * 5], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        single = model(alone["input_ids"], alone["attention_mask"])[0]
        batched = model(padded["input_ids"], padded["attention_mask"])[0][:1]
    torch.testing.assert_close(single, batched, atol=1e-5, rtol=1e-5)


def test_tokenizer_truncates_on_the_left_keeping_the_end_of_a_query(tiny_encoder: str) -> None:
    tokenizer = load_tokenizer(tiny_encoder)
    ids = tokenizer(["one two three four five six"], truncation=True, max_length=4)["input_ids"][0]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "five six"


def test_a_local_encoder_that_is_not_there_is_a_config_error_without_going_online(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object) -> None:
        raise AssertionError("a local path must not reach the network")

    monkeypatch.setattr(socket.socket, "connect", offline)
    with pytest.raises(ConfigError, match="cannot load encoder"):
        load_encoder(str(tmp_path / "no-such-encoder"))
