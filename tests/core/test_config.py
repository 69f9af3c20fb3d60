"""The dataclass configs: validated when built, saved and read back as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core import ConfigError, RouterConfig, TrainConfig
from core.config import FROZEN_HEAD_LEARNING_RATE


def test_train_config_keeps_the_papers_optimiser_and_sample_sample_settings() -> None:
    config = TrainConfig()
    assert (config.learning_rate, config.batch_size, config.steps) == (5e-5, 64, 1000)
    assert (config.num_hard_negatives, config.sample_sample_weight) == (3, 1.0)
    assert (config.num_clusters, config.validation_fraction, config.max_length) == (5, 0.1, None)


def test_paper_recipe_restores_the_papers_loss_settings() -> None:
    config = TrainConfig.paper(steps=10)
    assert (config.temperature, config.top_k_positive, config.top_k_negative) == (1.0, 3, 3)
    assert (config.negative_max_score, config.smoothing_neighbours) == (0.5, 0)
    assert (config.binary, config.pooling, config.train_encoder) == (False, "first", True)
    assert config.max_length == 512  # the paper pads every query to 512 tokens
    assert config.steps == 10
    # The tuned defaults differ from it in exactly these fields.
    assert TrainConfig().temperature == 0.1
    assert TrainConfig().smoothing_neighbours is None  # chosen on validation


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", 0),
        ("steps", 1.5),
        ("steps", True),
        ("batch_size", -1),
        ("top_k_positive", 0),
        ("top_k_negative", 0),
        ("num_clusters", 0),
        ("eval_every", 0),
        ("encode_batch_size", 0),
        ("num_hard_negatives", 0),
        ("smoothing_neighbours", -1),
        ("smoothing_neighbours", 2.5),
        ("binary", "yes"),
        ("learning_rate", 0.0),
        ("learning_rate", float("nan")),
        ("head_learning_rate", -1e-3),
        ("weight_decay", -0.1),
        ("temperature", 0.0),
        ("temperature", float("inf")),
        ("sample_sample_weight", -1.0),
        ("negative_max_score", 1.5),
        ("validation_fraction", 1.0),
        ("validation_fraction", -0.1),
        ("pooling", "median"),
        ("max_length", 4),
    ],
)
def test_a_bad_train_config_value_is_a_config_error_naming_field_and_value(
    field: str, value: Any
) -> None:
    with pytest.raises(ConfigError, match=field) as caught:
        TrainConfig(**{field: value})
    assert isinstance(caught.value, ValueError)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"llm_names": ["only"]}, "at least two"),
        ({"llm_names": ["a", "a"]}, "duplicates"),
        ({"llm_names": ["a", "b"], "pooling": "median"}, "pooling"),
        ({"llm_names": ["a", "b"], "temperature": 0.0}, "temperature"),
        ({"llm_names": ["a", "b"], "max_length": 2}, "max_length"),
    ],
)
def test_a_bad_router_config_is_a_config_error(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        RouterConfig(**options)


def test_router_config_round_trips_through_json(tmp_path: Path) -> None:
    config = RouterConfig(
        llm_names=["b", "a"],
        encoder="some/encoder",
        pooling="first",
        temperature=0.5,
        max_length=128,
        projection=True,
        costs={"a": 0.01, "b": 0.001},
        version="0.1.0",
    )
    path = tmp_path / "config.json"
    config.to_json(path)
    assert json.loads(path.read_text())["llm_names"] == ["b", "a"]
    assert RouterConfig.from_json(path) == config


def test_router_config_json_with_unknown_fields_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"llm_names": ["a", "b"], "surprise": 1}))
    with pytest.raises(ConfigError, match="surprise"):
        RouterConfig.from_json(path)


def test_the_default_recipe_freezes_the_encoder_on_cpu_and_fine_tunes_it_on_a_gpu() -> None:
    on_cpu = TrainConfig().resolved("cpu")
    on_gpu = TrainConfig().resolved("cuda")
    assert (on_cpu.train_encoder, on_cpu.projection) == (False, True)
    assert on_cpu.head_learning_rate == FROZEN_HEAD_LEARNING_RATE
    assert (on_gpu.train_encoder, on_gpu.projection) == (True, False)
    assert on_gpu.head_learning_rate == on_gpu.learning_rate


def test_an_explicit_choice_survives_resolution_for_any_device() -> None:
    config = TrainConfig(train_encoder=True, projection=True, head_learning_rate=0.01)
    resolved = config.resolved("cpu")
    assert (resolved.train_encoder, resolved.projection) == (True, True)
    assert resolved.head_learning_rate == 0.01
