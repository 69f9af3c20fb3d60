"""Exporting a router to ONNX and routing with it without torch (core.routing.export)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

import core
from core import cli
from core.errors import (
    ConfigError,
    QueryError,
    QueryTypeError,
    RouterFileError,
    UnknownLLMError,
)
from core.routing.encoder import load_tokenizer
from core.routing.export import OPSET
from core.routing.model import RouterDCModel
from core.routing.onnx_router import EXPORT_FILE, ONNX_FILE, TOKENIZER_FILE, OnnxRouter

ROOT = Path(__file__).resolve().parents[3]
WORDS = (
    "solve the equation integral derivative number write a python function class loop compile "
    "tell me a story about friendship holiday weather 12 48 ? ! é 中国 历史"
)


def random_queries(count: int, seed: int) -> list[str]:
    """Queries of 1 to 300 random words: some far past the tiny router's 64-token limit."""
    rng, words = random.Random(seed), WORDS.split()
    return [
        " ".join(rng.choice(words) for _ in range(rng.choice([1, 3, 8, 20, 60, 300])))
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def fp32_folder(tiny_router: core.Router, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_router.export(tmp_path_factory.mktemp("export") / "fp32")


@pytest.fixture(scope="module")
def int8_folder(tiny_router: core.Router, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_router.export(tmp_path_factory.mktemp("export") / "int8", int8=True)


@pytest.fixture(scope="module")
def fp32_router(fp32_folder: Path) -> OnnxRouter:
    return OnnxRouter.load(fp32_folder)


# ---------------------------------------------------------------------- what is written


def test_export_writes_the_model_tokenizer_config_and_how_it_was_exported(
    fp32_folder: Path, int8_folder: Path, tiny_router: core.Router
) -> None:
    for folder, int8 in ((fp32_folder, False), (int8_folder, True)):
        info = json.loads((folder / EXPORT_FILE).read_text())
        assert info["format"] == "onnx" and info["opset"] == OPSET and info["int8"] is int8
        assert info["max_tokens"] == tiny_router.max_tokens
        assert (folder / TOKENIZER_FILE).is_file()
        assert core.RouterConfig.from_json(folder / "config.json") == tiny_router.config


def test_int8_export_is_smaller_than_fp32(fp32_folder: Path, int8_folder: Path) -> None:
    fp32_size = (fp32_folder / ONNX_FILE).stat().st_size
    assert (int8_folder / ONNX_FILE).stat().st_size < 0.5 * fp32_size


# ---------------------------------------------------------------------- parity with torch


def test_fp32_export_gives_the_torch_routers_logits_and_vectors_on_random_queries(
    tiny_router: core.Router, fp32_router: OnnxRouter
) -> None:
    queries = random_queries(60, seed=1)
    np.testing.assert_allclose(
        fp32_router.logits(queries, batch_size=7), tiny_router.logits(queries), atol=1e-4
    )
    np.testing.assert_allclose(fp32_router.embed(queries), tiny_router.embed(queries), atol=1e-4)
    assert fp32_router.logits(queries).argmax(1).tolist() == (
        tiny_router.logits(queries).argmax(1).tolist()
    )


def test_a_batch_of_one_unpadded_query_routes_as_in_a_padded_batch(
    fp32_router: OnnxRouter,
) -> None:
    # The graph was traced on a padded batch; a batch without padding must score the same.
    queries = random_queries(5, seed=2)
    together = fp32_router.logits(queries)
    alone = np.concatenate([fp32_router.logits([q]) for q in queries])
    np.testing.assert_allclose(alone, together, atol=1e-5)


@pytest.mark.parametrize(("pooling", "projection"), [("first", True), ("mean", True)])
def test_fp32_export_matches_torch_with_first_token_pooling_and_a_projection(
    tiny_encoder: str, tmp_path: Path, pooling: str, projection: bool
) -> None:
    torch.manual_seed(0)
    model = RouterDCModel(
        AutoModel.from_pretrained(tiny_encoder),
        3,
        pooling=pooling,  # type: ignore[arg-type]
        temperature=0.1,
        projection=projection,
    )
    with torch.no_grad():  # a projection that is not the identity
        assert model.head.projection is not None
        model.head.projection.weight.add_(0.1 * torch.randn_like(model.head.projection.weight))
    config = core.RouterConfig(
        llm_names=["a", "b", "c"],
        pooling=pooling,
        projection=projection,
        max_length=32,  # type: ignore[arg-type]
    )
    router = core.Router(model, load_tokenizer(tiny_encoder), config, device="cpu")
    exported = OnnxRouter.load(router.export(tmp_path / "onnx"))
    queries = random_queries(20, seed=3)
    np.testing.assert_allclose(exported.logits(queries), router.logits(queries), atol=1e-4)


def test_int8_export_routes_nearly_as_the_torch_router(
    tiny_router: core.Router, int8_folder: Path, toy_data: core.RoutingData
) -> None:
    int8 = OnnxRouter.load(int8_folder)
    assert int8.int8
    queries = toy_data.queries
    same = int8.logits(queries).argmax(1) == tiny_router.logits(queries).argmax(1)
    assert same.mean() >= 0.95
    np.testing.assert_allclose(int8.probabilities(queries).sum(1), 1.0, rtol=1e-5)


def test_tokens_are_those_of_the_torch_router_truncated_on_the_left(
    tiny_router: core.Router, fp32_router: OnnxRouter
) -> None:
    queries = [*random_queries(10, seed=4), "weather " * 500 + "solve the equation"]
    ours = fp32_router.tokenize(queries)
    theirs = tiny_router.tokenize(queries)
    assert fp32_router.max_tokens == tiny_router.max_tokens == 64
    for name in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(ours[name], theirs[name].numpy())
    assert ours["input_ids"].shape[1] == 64


def test_an_enormous_query_is_routed_on_its_end(fp32_router: OnnxRouter) -> None:
    tail = " ".join(["solve the equation integral derivative number"] * 20)
    decision = fp32_router.route("weather " * 125_000 + tail)
    assert decision.llm == "math-llm"
    assert decision.probabilities == pytest.approx(fp32_router.route(tail).probabilities, abs=1e-6)


def test_routing_options_give_the_torch_routers_decisions(
    tiny_router: core.Router, fp32_router: OnnxRouter
) -> None:
    query = "solve the equation integral derivative number"
    costs = {"math-llm": 10.0, "code-llm": 1.0, "chat-llm": 0.1}
    for options in (
        {},
        {"exclude": ["math-llm"]},
        {"allowed": ["code-llm", "chat-llm"]},
        {"cost_weight": 1.0, "costs": costs},
    ):
        ours, theirs = fp32_router.route(query, **options), tiny_router.route(query, **options)
        assert ours.llm == theirs.llm and ours.ranking == theirs.ranking
        assert ours.probabilities == pytest.approx(theirs.probabilities, abs=1e-5)
    assert fp32_router.rank(query)[0][0] == "math-llm"


# ---------------------------------------------------------------------- loading


def test_core_load_returns_an_onnx_router_for_an_export_and_a_torch_router_otherwise(
    fp32_folder: Path, saved_router: Path
) -> None:
    assert isinstance(core.load(fp32_folder), OnnxRouter)
    assert isinstance(core.load(saved_router), core.Router)


def test_loading_an_export_and_routing_imports_neither_torch_nor_transformers(
    int8_folder: Path,
) -> None:
    script = (
        "import json, sys\n"
        "import core\n"
        f"router = core.load({str(int8_folder)!r})\n"
        "decision = router.route('solve the equation integral derivative number')\n"
        "batch = router.route_batch(['write a python function', 'tell me a story'])\n"
        "watched = ('torch', 'transformers', 'core.routing.router', 'sklearn')\n"
        "print(json.dumps({'llm': decision.llm, 'batch': [d.llm for d in batch],\n"
        "    'imported': [m for m in watched if m in sys.modules]}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["imported"] == []
    assert report["llm"] == "math-llm"
    assert report["batch"] == ["code-llm", "chat-llm"]


def test_a_missing_file_is_named(fp32_folder: Path, tmp_path: Path) -> None:
    for name in (TOKENIZER_FILE, EXPORT_FILE, "config.json"):
        broken = tmp_path / name
        broken.mkdir()
        for file in fp32_folder.iterdir():
            if file.name != name:
                (broken / file.name).write_bytes(file.read_bytes())
        with pytest.raises(RouterFileError, match=f"missing {name}"):
            core.load(broken)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "pt"}, "format must be 'onnx'"),
        ({"max_tokens": "64"}, "max_tokens must be a int"),
        ({"int8": None}, "int8 must be a bool"),
    ],
)
def test_a_bad_export_file_is_an_error_naming_the_field(
    fp32_folder: Path, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    for file in fp32_folder.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    info = json.loads((tmp_path / EXPORT_FILE).read_text()) | change
    (tmp_path / EXPORT_FILE).write_text(json.dumps(info))
    with pytest.raises(RouterFileError, match=message):
        OnnxRouter.load(tmp_path)


def test_a_truncated_model_file_is_a_router_file_error(fp32_folder: Path, tmp_path: Path) -> None:
    for file in fp32_folder.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    data = (tmp_path / ONNX_FILE).read_bytes()
    (tmp_path / ONNX_FILE).write_bytes(data[: len(data) // 3])
    with pytest.raises(RouterFileError, match=ONNX_FILE):
        OnnxRouter.load(tmp_path)


def test_a_config_naming_other_llms_than_the_model_scores_is_an_error(
    fp32_folder: Path, tmp_path: Path
) -> None:
    for file in fp32_folder.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    config = json.loads((tmp_path / "config.json").read_text())
    config["llm_names"] = ["a", "b"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(RouterFileError, match="scores 3 LLMs"):
        OnnxRouter.load(tmp_path)


@pytest.mark.parametrize("device", ["mps", "gpu"])
def test_an_unknown_device_is_a_config_error(fp32_folder: Path, device: str) -> None:
    with pytest.raises(ConfigError, match=f"device must be .* got '{device}'"):
        OnnxRouter.load(fp32_folder, device=device)


# ---------------------------------------------------------------------- bad input, threads


def test_bad_queries_and_options_are_the_torch_routers_errors(fp32_router: OnnxRouter) -> None:
    with pytest.raises(QueryError, match="query 0: the query is empty"):
        fp32_router.route("  ")
    with pytest.raises(QueryTypeError, match="expected a string, got int"):
        fp32_router.route(3)  # type: ignore[arg-type]
    with pytest.raises(QueryTypeError, match="list of queries"):
        fp32_router.route_batch("one string")
    with pytest.raises(UnknownLLMError, match="gpt-9"):
        fp32_router.route("hello", exclude=["gpt-9"])
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1, got 0"):
        fp32_router.logits(["hello"], batch_size=0)


def test_routing_from_eight_threads_gives_the_same_answers_as_serial_routing(
    fp32_router: OnnxRouter,
) -> None:
    queries = random_queries(24, seed=5)
    serial = [fp32_router.route(q).probabilities for q in queries]
    start = threading.Barrier(8)

    def work(worker: int) -> list[dict[str, float]]:
        start.wait()
        order = list(range(worker, len(queries))) + list(range(worker))
        got = {i: fp32_router.route(queries[i]).probabilities for i in order}
        return [got[i] for i in range(len(queries))]

    with ThreadPoolExecutor(max_workers=8) as pool:
        for result in pool.map(work, range(8)):
            for ours, expected in zip(result, serial, strict=True):
                assert ours == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------------- command line


def test_export_and_route_work_from_the_command_line(
    saved_router: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "onnx"
    assert cli.main(["export", "--router", str(saved_router), "--out", str(out), "--int8"]) == 0
    assert f"opset {OPSET}, int8" in capsys.readouterr().out
    query = "solve the equation integral derivative number"
    assert cli.main(["route", "--router", str(out), query]) == 0
    assert "-> math-llm" in capsys.readouterr().out


def test_exporting_a_folder_that_is_no_router_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["export", "--router", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "missing config.json" in capsys.readouterr().err


def test_the_export_keeps_the_training_query_summary_and_scores_queries_as_torch_does(
    tiny_router: core.Router, fp32_router: OnnxRouter
) -> None:
    assert tiny_router.ood is not None  # fit gives every router one
    queries = random_queries(16, seed=3)
    torch_scores = [d.in_distribution for d in tiny_router.route_batch(queries)]
    onnx_scores = [d.in_distribution for d in fp32_router.route_batch(queries)]
    assert fp32_router.ood_backoff == tiny_router.ood_backoff
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=0.02)
