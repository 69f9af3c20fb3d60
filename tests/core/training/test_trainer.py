"""Training: seeding, validation and the best checkpoint, history, frozen mode, clusters."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModel

import core
import core.training.trainer as trainer
from core import ConfigError, DataError, Router, RoutingData, TrainConfig
from core.training.clustering import labels_to_ids
from core.training.metrics import accuracy, reference_rows, task_mean_accuracy

LLMS = ["math-llm", "code-llm", "chat-llm"]
TOPIC_WORDS = {
    "math": "solve the equation integral derivative number",
    "code": "write a python function class loop compile",
    "chat": "tell me a story about friendship holiday weather",
}
# Small recipes for the tiny encoder: a few steps, short queries, no progress bar.
FULL: dict[str, Any] = {
    "train_encoder": True,
    "learning_rate": 1e-3,
    "head_learning_rate": 1e-2,
    "max_length": 64,
    "progress": False,
}
FROZEN: dict[str, Any] = {
    "train_encoder": False,
    "projection": True,
    "head_learning_rate": 1e-2,
    "max_length": 64,
    "progress": False,
}


def topic_records(n_per_topic: int, seed: int) -> list[dict[str, Any]]:
    """Queries of each topic's words; the topic's own LLM scores 1, the others 0 to 0.3."""
    rng = random.Random(seed)
    records = []
    for (topic, words), best in zip(TOPIC_WORDS.items(), LLMS, strict=True):
        vocab = words.split()
        for i in range(n_per_topic):
            text = " ".join(rng.choice(vocab) for _ in range(rng.randint(4, 9)))
            scores = {llm: 1.0 if llm == best else rng.choice([0.0, 0.1, 0.2, 0.3]) for llm in LLMS}
            records.append({"query": f"{text} #{seed}-{i}", "scores": scores, "task": topic})
    rng.shuffle(records)
    return records


def weights(router: Router) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in router.model.state_dict().items()}


def same_weights(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


# ---------------------------------------------------------------------- reproducibility


def test_a_seeded_fit_is_reproducible(tiny_encoder: str, toy_data: RoutingData) -> None:
    def run(seed: int) -> dict[str, torch.Tensor]:
        return weights(
            core.fit(toy_data, encoder=tiny_encoder, steps=3, batch_size=16, seed=seed, **FULL)
        )

    first = run(0)
    assert same_weights(first, run(0))
    assert not same_weights(first, run(1))


def test_a_seeded_frozen_encoder_fit_is_reproducible(
    tiny_encoder: str, toy_data: RoutingData
) -> None:
    def run(seed: int) -> Router:
        return core.fit(
            toy_data, encoder=tiny_encoder, steps=10, batch_size=16, seed=seed, **FROZEN
        )

    first, second = run(3), run(3)
    assert same_weights(weights(first), weights(second))
    assert first.history == second.history


# ---------------------------------------------------------------------- validation and history


def test_history_has_a_row_per_step_and_validation_every_eval_every_steps(
    tiny_encoder: str, toy_data: RoutingData
) -> None:
    router = core.fit(
        toy_data, encoder=tiny_encoder, steps=7, eval_every=3, batch_size=16, seed=0, **FROZEN
    )
    assert [row["step"] for row in router.history] == list(range(1, 8))
    validated = [row["step"] for row in router.history if "validation_accuracy" in row]
    assert validated == [3, 6, 7]  # every eval_every steps, and the last step
    for row in router.history:
        assert np.isfinite(row["loss"]) and np.isfinite(row["sample_llm"])


def test_fit_holds_out_ten_percent_for_validation_by_default(
    tiny_encoder: str, toy_data: RoutingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_on_build(monkeypatch)
    core.fit(toy_data, encoder=tiny_encoder, steps=1, seed=0, **FROZEN)
    assert len(seen["queries"]) == len(toy_data) - round(0.1 * len(toy_data))


def test_fit_keeps_the_checkpoint_with_the_best_validation_accuracy(tiny_encoder: str) -> None:
    train = RoutingData.from_records(topic_records(40, seed=0))
    # A validation set where each topic is best answered by the *next* topic's LLM: the more
    # the router learns the training data, the worse it does here, so the best checkpoint is
    # an early one and keeping the last would be visible.
    shifted = topic_records(10, seed=7)
    for record in shifted:
        old = record["scores"]
        record["scores"] = {llm: old[LLMS[(j - 1) % 3]] for j, llm in enumerate(LLMS)}
    validation = RoutingData.from_records(shifted)
    assert validation.llm_names == train.llm_names
    router = core.fit(
        train,
        encoder=tiny_encoder,
        validation=validation,
        steps=20,
        eval_every=2,
        batch_size=16,
        seed=0,
        **FROZEN,
    )
    scored = [row["validation_accuracy"] for row in router.history if "validation_accuracy" in row]
    assert len(scored) == 10
    assert scored[-1] < max(scored)
    chosen = router.logits(validation.queries).argmax(axis=1)
    assert task_mean_accuracy(validation, chosen) == pytest.approx(max(scored))


def test_validation_with_llms_in_another_order_is_scored_by_name(tiny_encoder: str) -> None:
    train = RoutingData.from_records(topic_records(20, seed=0))
    # Validation LLMs rotated (no LLM keeps its column) with random scores, so scoring by
    # column index cannot agree with scoring by name by chance.
    rng = random.Random(5)
    rotated = LLMS[1:] + LLMS[:1]
    records = [
        {"query": r["query"], "scores": {llm: rng.randint(0, 10) / 10 for llm in rotated}}
        for r in topic_records(10, seed=5)
    ]
    validation = RoutingData.from_records(records)
    assert validation.llm_names == rotated != train.llm_names
    router = core.fit(train, encoder=tiny_encoder, validation=validation, steps=1, seed=0, **FROZEN)
    columns = [validation.llm_names.index(d.llm) for d in router.route_batch(validation.queries)]
    (row,) = router.history
    assert row["validation_accuracy"] == pytest.approx(task_mean_accuracy(validation, columns))


def test_history_path_gets_one_json_line_per_step(
    tiny_encoder: str, toy_data: RoutingData, tmp_path: Path
) -> None:
    path = tmp_path / "runs" / "history.jsonl"
    router = core.fit(toy_data, encoder=tiny_encoder, steps=5, seed=0, history_path=path, **FROZEN)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == router.history
    assert len(lines) == 5


# ---------------------------------------------------------------------- frozen encoder


def test_frozen_encoder_mode_leaves_the_encoder_weights_unchanged(
    tiny_encoder: str, toy_data: RoutingData
) -> None:
    untouched = AutoModel.from_pretrained(tiny_encoder).state_dict()
    router = core.fit(toy_data, encoder=tiny_encoder, steps=10, seed=0, **FROZEN)
    trained = router.model.encoder.state_dict()
    assert all(torch.equal(trained[k], untouched[k]) for k in untouched)


def test_full_mode_does_change_the_encoder_weights(
    tiny_encoder: str, toy_data: RoutingData
) -> None:
    untouched = AutoModel.from_pretrained(tiny_encoder).state_dict()
    router = core.fit(toy_data, encoder=tiny_encoder, steps=2, batch_size=8, seed=0, **FULL)
    trained = router.model.encoder.state_dict()
    assert not all(torch.equal(trained[k], untouched[k]) for k in untouched)


def test_a_frozen_encoder_without_projection_trains_only_the_sample_llm_loss(
    tiny_encoder: str, toy_data: RoutingData
) -> None:
    plain = {**FROZEN, "projection": False}
    router = core.fit(toy_data, encoder=tiny_encoder, steps=2, seed=0, **plain)
    assert all("sample_sample" not in row for row in router.history)
    projected = core.fit(toy_data, encoder=tiny_encoder, steps=2, seed=0, **FROZEN)
    assert all("sample_sample" in row for row in projected.history)


def test_a_config_asking_for_a_frozen_encoder_is_honoured(
    tiny_encoder: str, toy_data: RoutingData
) -> None:
    untouched = AutoModel.from_pretrained(tiny_encoder).state_dict()
    config = TrainConfig(steps=2, batch_size=8, train_encoder=False, max_length=64)
    router = core.fit(toy_data, encoder=tiny_encoder, config=config, progress=False)
    trained = router.model.encoder.state_dict()
    assert all(torch.equal(trained[k], untouched[k]) for k in untouched)


# ---------------------------------------------------------------------- clusters


def spy_on_build(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Record what fit hands to ``build``: the training queries and their cluster ids."""
    seen: dict[str, Any] = {}
    original = trainer.build

    def spy(router: Router, queries: list[str], scores: Any, clusters: Any, *rest: Any) -> Any:
        seen.update(queries=list(queries), clusters=np.asarray(clusters))
        return original(router, queries, scores, clusters, *rest)

    monkeypatch.setattr(trainer, "build", spy)
    return seen


def forbid_kmeans(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("k-means must not run when clusters are given")

    monkeypatch.setattr(trainer, "cluster_queries", fail)


def test_clusters_tasks_uses_the_task_labels_instead_of_kmeans(
    tiny_encoder: str, toy_data: RoutingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_kmeans(monkeypatch)
    seen = spy_on_build(monkeypatch)
    core.fit(toy_data, encoder=tiny_encoder, steps=2, clusters="tasks", seed=0, **FULL)
    assert toy_data.tasks is not None
    task_of = dict(zip(toy_data.queries, toy_data.tasks, strict=True))
    expected = labels_to_ids([task_of[q] for q in seen["queries"]])
    assert seen["clusters"].tolist() == expected.tolist()


def test_an_explicit_cluster_list_is_used_as_given(
    tiny_encoder: str, toy_data: RoutingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_kmeans(monkeypatch)
    seen = spy_on_build(monkeypatch)
    labels = [i % 4 for i in range(len(toy_data))]
    core.fit(
        toy_data,
        encoder=tiny_encoder,
        steps=2,
        clusters=labels,
        validation_fraction=0.0,
        seed=0,
        **FULL,
    )
    assert seen["queries"] == toy_data.queries
    assert seen["clusters"].tolist() == labels


def test_kmeans_clusters_are_computed_by_default(
    tiny_encoder: str, toy_data: RoutingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = trainer.cluster_queries

    def spy(embeddings: np.ndarray, num_clusters: int, *, seed: int = 0) -> np.ndarray:
        calls.append(num_clusters)
        return original(embeddings, num_clusters, seed=seed)

    monkeypatch.setattr(trainer, "cluster_queries", spy)
    core.fit(toy_data, encoder=tiny_encoder, steps=1, num_clusters=4, seed=0, **FULL)
    assert calls == [4]


def test_unknown_cluster_source_is_a_config_error(tiny_encoder: str, toy_data: RoutingData) -> None:
    with pytest.raises(ConfigError, match="clusters"):
        core.fit(toy_data, encoder=tiny_encoder, steps=1, clusters="bogus", **FULL)  # type: ignore[arg-type]


def test_a_cluster_list_of_the_wrong_length_is_a_data_error(
    tiny_encoder: str, toy_data: RoutingData
) -> None:
    with pytest.raises(DataError, match="clusters"):
        core.fit(toy_data, encoder=tiny_encoder, steps=1, clusters=[0, 1, 2], **FULL)


def test_clusters_tasks_without_task_labels_is_a_data_error(tiny_encoder: str) -> None:
    data = RoutingData.from_records(
        [{"query": f"q{i}", "scores": {"a": i % 2, "b": 1 - i % 2}} for i in range(4)]
    )
    assert data.tasks is None
    with pytest.raises(DataError, match="task"):
        core.fit(data, encoder=tiny_encoder, steps=1, clusters="tasks", **FULL)


# ---------------------------------------------------------------------- bad options


def test_a_bad_training_option_is_a_config_error_naming_it(
    tiny_encoder: str, toy_data: RoutingData
) -> None:
    with pytest.raises(ConfigError, match="steps"):
        core.fit(toy_data, encoder=tiny_encoder, steps=0, **FULL)
    with pytest.raises(ConfigError, match="temperature"):
        core.fit(toy_data, encoder=tiny_encoder, temperature=-1.0, **FULL)


def test_cost_aware_training_without_costs_is_a_data_error(
    tiny_encoder: str, toy_data: RoutingData
) -> None:
    with pytest.raises(DataError, match="cost"):
        core.fit(toy_data, encoder=tiny_encoder, steps=1, cost_rate=0.5, **FULL)


# ---------------------------------------------------------------------- partial labels


def hide_scores(records: list[dict[str, Any]], share: float, seed: int) -> None:
    """Set ``share`` of all scores to None at random; every query keeps at least one."""
    rng = random.Random(seed)
    cells = [(i, llm) for i, record in enumerate(records) for llm in record["scores"]]
    keep = {(i, rng.choice(sorted(record["scores"]))) for i, record in enumerate(records)}
    rest = [cell for cell in cells if cell not in keep]
    rng.shuffle(rest)
    keep |= set(rest[: round((1 - share) * len(cells)) - len(keep)])
    for i, llm in cells:
        if (i, llm) not in keep:
            records[i]["scores"][llm] = None


def test_a_router_trained_with_70_percent_of_scores_hidden_beats_the_best_single_llm(
    tiny_encoder: str,
) -> None:
    # Four LLMs: three specialists and a generalist that scores 0.5 everywhere, the best
    # single LLM. In the training logs 70% of the (query, LLM) scores are missing.
    def records(seed: int) -> list[dict[str, Any]]:
        rows = topic_records(100, seed)
        for row in rows:
            row["scores"]["generalist"] = 0.5
        return rows

    logs = records(seed=0)
    hide_scores(logs, 0.7, seed=0)
    train = RoutingData.from_records(logs)
    assert 1 - train.mask.mean() == pytest.approx(0.7, abs=0.01)
    held_out = RoutingData.from_records(records(seed=1))

    router = core.fit(train, encoder=tiny_encoder, steps=100, seed=0, **FROZEN)
    chosen = [held_out.llm_names.index(d.llm) for d in router.route_batch(held_out.queries)]
    reference = reference_rows(held_out.scores, held_out.llm_names)
    assert reference["best_single_llm"] == "generalist"
    assert accuracy(held_out.scores, chosen) > reference["best_single"] + 0.2


def test_an_encoding_cache_saved_and_loaded_serves_the_same_vectors_without_encoding(
    tiny_encoder: str, toy_data: RoutingData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = trainer.EncodingCache()
    router = core.fit(
        toy_data, encoder=tiny_encoder, steps=1, encoding_cache=cache, clusters="tasks", **FROZEN
    )
    config = TrainConfig(**{k: v for k, v in FROZEN.items() if k != "progress"})
    vectors = cache.encode(router, toy_data.queries, config)  # (N, D)
    cache.save(tmp_path / "cache.safetensors")

    loaded = trainer.EncodingCache.load(tmp_path / "cache.safetensors")
    monkeypatch.setattr(router.model, "encode", None)  # any encoding would now fail
    assert len(loaded) == len(cache)
    assert torch.equal(loaded.encode(router, toy_data.queries, config), vectors)


def test_fit_refuses_an_llm_that_no_training_query_scores(tiny_encoder: str) -> None:
    rows = topic_records(8, seed=0)
    for row in rows:
        row["scores"]["never-scored"] = None
    data = RoutingData.from_records(rows)
    with pytest.raises(DataError, match=r"\['never-scored'\] have no score in the training data"):
        core.fit(data, encoder=tiny_encoder, steps=1, batch_size=4, **FROZEN)


def test_fit_refuses_an_llm_whose_only_scores_fell_in_the_validation_split(
    tiny_encoder: str,
) -> None:
    data = RoutingData.from_records(topic_records(10, seed=0))
    _, held_out = data.split_indices(0.1, seed=0)
    scores = np.hstack([data.scores, np.full((len(data), 1), np.nan)])
    scores[held_out[0], -1] = 1.0  # scored once, on a query fit holds out
    rare = RoutingData(data.queries, [*data.llm_names, "rare"], scores, tasks=data.tasks)
    with pytest.raises(DataError, match=r"\['rare'\] have no score in the training part"):
        core.fit(rare, encoder=tiny_encoder, steps=1, batch_size=4, seed=0, **FROZEN)


def test_fit_with_progress_false_prints_no_progress_bar(
    tiny_encoder: str, capfd: pytest.CaptureFixture[str]
) -> None:
    data = RoutingData.from_records(topic_records(10, seed=0))
    core.fit(data, encoder=tiny_encoder, steps=2, batch_size=4, encode_batch_size=4, **FROZEN)
    err = capfd.readouterr().err
    assert "encoding" not in err and "Loading weights" not in err and "it/s" not in err, err


# ---------------------------------------------------------------------- logs: no tasks, gaps


def test_an_unobserved_best_llm_still_gets_a_target_from_the_nearest_queries_that_scored_it() -> (
    None
):
    # Six queries on a line. "best" was scored only on the three right ones (1.0 each), "other"
    # everywhere (0.5). Query 0's own neighbourhood never saw "best", yet its target must rank
    # "best" first: imputed from the nearest queries that did score it, not left out.
    angles = np.linspace(0.0, 1.5, 6)
    pooled = torch.tensor(np.stack([np.cos(angles), np.sin(angles)], axis=1), dtype=torch.float32)
    scores = np.array([[np.nan, 0.5]] * 3 + [[1.0, 0.5]] * 3)
    targets = trainer._Targets(
        [f"q{i}" for i in range(6)], scores, np.zeros_like(scores), np.zeros(6, dtype=int), pooled
    )
    smoothed = targets(2)
    assert not np.isnan(smoothed).any()
    assert (smoothed.argmax(axis=1) == 0).all()


def test_fit_without_task_labels_binarises_only_the_probability_scored_queries(
    tiny_encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A graded query (0.3 of 10 samples right) beside multiple-choice ones (probabilities):
    # the graded score must reach the loss as 0.3, the probabilities as 1 or 0.
    records = [
        {"query": f"math question {i}", "scores": {"x": 0.3, "y": 0.0}} for i in range(10)
    ] + [{"query": f"quiz question {i}", "scores": {"x": 0.0, "y": 0.37}} for i in range(10)]
    data = RoutingData.from_records(records)
    assert data.tasks is None
    seen: dict[str, np.ndarray] = {}
    build = trainer.build

    def spy(router: Router, queries: list[str], scores: np.ndarray, *args: Any) -> Any:
        seen["scores"] = scores
        return build(router, queries, scores, *args)

    monkeypatch.setattr(trainer, "build", spy)
    core.fit(
        data,
        encoder=tiny_encoder,
        steps=1,
        smoothing_neighbours=0,
        validation_fraction=0.0,
        **FROZEN,
    )
    rows = {q: s for q, s in zip(data.queries, seen["scores"], strict=True)}
    np.testing.assert_array_equal(rows["math question 0"], [0.3, 0.0])
    np.testing.assert_array_equal(rows["quiz question 0"], [0.0, 1.0])
