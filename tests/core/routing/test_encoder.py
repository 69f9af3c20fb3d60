"""The encoder's own settings: a sentence-transformers folder says how to pool and truncate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import core
from core.errors import ConfigError
from core.routing.encoder import pool, read_encoder_settings, resolve_encoder


def _sentence_transformers_folder(
    tiny_encoder: str, folder: Path, pooling: dict[str, bool], max_seq_length: int
) -> str:
    """The tiny encoder made a sentence-transformers folder: Transformer, Pooling, Normalize."""
    shutil.copytree(tiny_encoder, folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    flags = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False} | pooling
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(flags))
    bert = {"max_seq_length": max_seq_length, "do_lower_case": False}
    (folder / "sentence_bert_config.json").write_text(json.dumps(bert))
    return str(folder)


def test_the_bundled_minilm_folder_says_mean_pooling_256_tokens_and_normalize() -> None:
    settings = read_encoder_settings(resolve_encoder(None))
    assert (settings.pooling, settings.max_length, settings.normalize) == ("mean", 256, True)


def test_a_folder_without_sentence_transformers_files_leaves_both_settings_to_the_defaults(
    tiny_encoder: str,
) -> None:
    settings = read_encoder_settings(tiny_encoder)
    assert (settings.pooling, settings.max_length) == (None, None)
    assert (settings.pooling_or_default(), settings.max_length_or_default()) == ("mean", 512)


def test_fit_pools_and_truncates_as_the_encoders_folder_says_and_records_it(
    tiny_encoder: str, toy_data: core.RoutingData, tmp_path: Path
) -> None:
    folder = _sentence_transformers_folder(
        tiny_encoder, tmp_path / "st", {"pooling_mode_cls_token": True}, 48
    )
    router = core.fit(toy_data, encoder=folder, steps=2, batch_size=8, progress=False)
    assert (router.config.pooling, router.config.max_length) == ("first", 48)
    assert router.model.pooling == "first"


def test_fit_keeps_a_pooling_and_max_length_the_caller_sets_over_the_folders(
    tiny_encoder: str, toy_data: core.RoutingData, tmp_path: Path
) -> None:
    folder = _sentence_transformers_folder(
        tiny_encoder, tmp_path / "st", {"pooling_mode_max_tokens": True}, 48
    )
    router = core.fit(
        toy_data,
        encoder=folder,
        steps=2,
        batch_size=8,
        progress=False,
        pooling="mean",
        max_length=64,
    )
    assert (router.config.pooling, router.config.max_length) == ("mean", 64)


def test_a_pooling_mode_routerdc_does_not_implement_is_refused_naming_the_file(
    tiny_encoder: str, tmp_path: Path
) -> None:
    folder = _sentence_transformers_folder(
        tiny_encoder, tmp_path / "st", {"pooling_mode_mean_sqrt_len_tokens": True}, 48
    )
    with pytest.raises(ConfigError, match=r"1_Pooling/config.json.*mean_sqrt_len.*pooling="):
        read_encoder_settings(folder)


def test_max_pooling_takes_each_dimensions_largest_unpadded_value() -> None:
    hidden = torch.tensor([[[1.0, 5.0], [3.0, 2.0], [100.0, 100.0]]])  # (1, 3, 2)
    assert pool(hidden, torch.tensor([[1, 1, 0]]), "max").tolist() == [[3.0, 5.0]]


def test_last_token_pooling_takes_the_last_unpadded_token() -> None:
    hidden = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert pool(hidden, mask, "last").tolist() == [[2.0, 3.0], [10.0, 11.0]]
