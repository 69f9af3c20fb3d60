"""The encoder comparison: cross-validated accuracy, size and speed, one cache file each."""

from __future__ import annotations

from pathlib import Path

import core
from benchmarks.encoders import cache_file, compare
from benchmarks.tuning import folds_of
from core.routing.encoder import load_encoder
from core.training.trainer import EncodingCache


def test_compare_cross_validates_the_default_recipe_and_measures_the_encoder(
    tiny_encoder: str, toy_data: core.RoutingData
) -> None:
    cache = EncodingCache()
    row = compare(toy_data, folds_of(toy_data.tasks or [], 2), tiny_encoder, cache)

    assert set(toy_data.tasks or []) < set(row)
    # Each topic's words pick its LLM (score 1; the others score at most 0.3).
    assert row["average"] > 80
    assert row["encoder_parameters"] == load_encoder(tiny_encoder)[1].num_parameters()
    assert row["encode_queries_per_s"] > 0
    assert len(cache) == len(set(toy_data.queries))  # every query encoded once, for all folds


def test_each_encoder_gets_its_own_cache_file(tmp_path: Path) -> None:
    assert cache_file(None, "all-MiniLM-L6-v2") is None
    assert cache_file(tmp_path, "/models/all-mpnet-base-v2") == (
        tmp_path / "all-mpnet-base-v2.safetensors"
    )
    assert cache_file(tmp_path, "microsoft/mdeberta-v3-base") == (
        tmp_path / "mdeberta-v3-base.safetensors"
    )
