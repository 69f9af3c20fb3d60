"""The ``routerdc`` command line, driven through ``main(argv)`` with the tiny encoder."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

import core
from core import TrainConfig, cli
from core.data import download


@pytest.fixture
def data_files(tmp_path: Path, toy_data: core.RoutingData) -> list[str]:
    """The toy data as two JSON files in the RouterDC layout, one per half."""
    records = [
        {"query": q, "scores": dict(zip(toy_data.llm_names, row.tolist(), strict=False))}
        for q, row in zip(toy_data.queries, toy_data.scores, strict=False)
    ]
    paths = []
    for name, part in (("first.json", records[::2]), ("second.json", records[1::2])):
        path = tmp_path / name
        path.write_text(json.dumps(part))
        paths.append(str(path))
    return paths


def test_train_eval_and_route_work_from_the_command_line(
    tmp_path: Path, data_files: list[str], tiny_encoder: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "router"
    argv = ["train", "--data", *data_files, "--out", str(out), "--encoder", tiny_encoder]
    assert (
        cli.main(
            [
                *argv,
                "--steps",
                "40",
                "--batch-size",
                "16",
                "--max-length",
                "64",
                "--full-encoder",
                "--learning-rate",
                "1e-3",
            ]
        )
        == 0
    )
    assert (out / "config.json").is_file()
    assert "chosen from the training data: smoothing_neighbours = {" in capsys.readouterr().out

    results = tmp_path / "results.json"
    assert (
        cli.main(["eval", "--router", str(out), "--data", *data_files, "--json", str(results)]) == 0
    )
    table = capsys.readouterr().out
    assert "first.json" in table and "oracle" in table and "average" in table
    written = json.loads(results.read_text())
    assert set(written["files"]) == {"first.json", "second.json"}
    assert set(written["average"]) >= {"router", "best_single", "oracle"}

    assert cli.main(["route", "--router", str(out), "solve the integral of x"]) == 0
    printed = capsys.readouterr().out
    assert "-> " in printed and "in-distribution score: " in printed


def test_route_with_a_cost_weight_and_no_prices_fails_with_a_clear_message(
    saved_router: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["route", "--router", str(saved_router), "--cost-weight", "0.5", "hello"])
    assert code == 2
    assert "no prices are known" in capsys.readouterr().err


def test_calibrate_prints_the_cost_weight_for_a_budget(
    saved_router: Path, data_files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    costs = json.dumps({"math-llm": 0.01, "code-llm": 0.001, "chat-llm": 0.0001})
    code = cli.main(
        [
            "calibrate",
            "--router",
            str(saved_router),
            "--data",
            data_files[0],
            "--budget",
            "0.002",
            "--costs",
            costs,
        ]
    )
    assert code == 0
    assert "cost weight" in capsys.readouterr().out


def test_calibrate_passes_the_tie_tolerance_on(
    saved_router: Path, data_files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    costs = json.dumps({"math-llm": 0.01, "code-llm": 0.001, "chat-llm": 0.0001})
    arguments = ["calibrate", "--router", str(saved_router), "--data", data_files[0]]
    arguments += ["--budget", "0.002", "--costs", costs, "--tie-standard-errors", "-1"]
    assert cli.main(arguments) == 2
    assert "tie_standard_errors must be a finite number >= 0, got -1.0" in capsys.readouterr().err


def test_eval_of_a_missing_router_fails_with_a_clear_message(
    tmp_path: Path, data_files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["eval", "--router", str(tmp_path / "nope"), "--data", *data_files]) == 2
    assert "missing config.json" in capsys.readouterr().err


def test_demo_offline_says_how_to_pass_a_local_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setenv("ROUTERDC_CACHE", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "--data-dir" in err and "network is unreachable" in err
    assert not any(tmp_path.rglob("*.part")), "a failed download leaves no partial file"
    assert download.cache_dir() == tmp_path


def test_train_options_override_the_default_or_the_papers_recipe() -> None:
    args = cli._parser().parse_args(["train", "--data", "d.json", "--out", "r", "--steps", "7"])
    default = cli._recipe(args)
    assert default == replace(TrainConfig(), steps=7)

    args = cli._parser().parse_args(
        ["train", "--data", "d.json", "--out", "r", "--paper-recipe", "--frozen-encoder"]
    )
    paper = cli._recipe(args)
    assert paper == replace(TrainConfig.paper(), train_encoder=False)
    assert (paper.temperature, paper.top_k_positive, paper.pooling) == (1.0, 3, "first")
