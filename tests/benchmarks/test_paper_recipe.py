"""Which paper-benchmark rows fine-tune the encoder, decided as fit decides it."""

from __future__ import annotations

import pytest
import torch

import benchmarks.paper
from benchmarks.paper import FULL_FINE_TUNING, router_trains_encoder


def test_on_a_cpu_only_an_explicit_request_fine_tunes() -> None:
    assert not router_trains_encoder({"device": "cpu"})
    assert router_trains_encoder({"device": "cpu", "train_encoder": True})
    assert router_trains_encoder({"device": "cpu", **FULL_FINE_TUNING})


def test_on_a_gpu_the_default_fine_tunes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(benchmarks.paper, "pick_device", lambda device: torch.device("cuda"))

    assert router_trains_encoder({})
    assert not router_trains_encoder({"train_encoder": False})
