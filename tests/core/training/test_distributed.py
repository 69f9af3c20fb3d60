"""Data-parallel training under Accelerate: two CPU processes (gloo) against one process."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import core
from core import cli
from core.training.distributed import Processes, launched
from tests.conftest import toy_records
from tests.core.training.distributed_fit import FIT_SETTINGS

SCRIPT = Path(__file__).with_name("distributed_fit.py")
# Per-step loss difference allowed between 2 processes and 1: the gradient all-reduce sums
# in another order than one process does, so float32 rounding differs, nothing more
# (measured: 2.4e-7 at most over 12 steps).
LOSS_TOLERANCE = 1e-5

needs_accelerate = pytest.mark.skipif(
    importlib.util.find_spec("accelerate") is None,
    reason="accelerate is not installed (pip install 'routerdc[distributed]')",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def toy_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("distributed") / "toy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in toy_records()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def two_process_run(
    tiny_encoder: str, toy_jsonl: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The folder of a 2-process CPU run: ``router/`` and ``history.jsonl``."""
    folder = tmp_path_factory.mktemp("two-processes")
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        # --multi_gpu is the torchrun launcher; ACCELERATE_USE_CPU makes it gloo on the CPU
        # (accelerate launch --cpu alone starts a single process).
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        str(SCRIPT),
        tiny_encoder,
        str(toy_jsonl),
        str(folder / "router"),
        str(folder / "history.jsonl"),
    ]
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(Path(__file__).parents[3]),
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return folder


@needs_accelerate
def test_two_processes_finish_and_save_a_router_that_loads_and_routes(
    two_process_run: Path,
) -> None:
    router = core.load(two_process_run / "router")
    decision = router.route("solve the equation integral derivative number")
    assert decision.llm in router.config.llm_names
    training = json.loads((two_process_run / "router" / "training.json").read_text())
    assert training["num_processes"] == 2
    assert training["global_batch_size"] == FIT_SETTINGS["batch_size"]


@needs_accelerate
def test_two_processes_follow_the_loss_curve_of_one_with_the_same_seed_and_global_batch(
    two_process_run: Path, tiny_encoder: str, toy_jsonl: Path
) -> None:
    distributed = [
        json.loads(line) for line in (two_process_run / "history.jsonl").read_text().splitlines()
    ]
    single = core.fit(
        core.RoutingData.from_files([toy_jsonl]), encoder=tiny_encoder, **FIT_SETTINGS
    ).history
    assert len(distributed) == len(single) == FIT_SETTINGS["steps"]
    # The sample-sample part is there: the gathered batch has its in-batch neighbours.
    assert all("sample_sample" in row for row in distributed)
    for key in ("loss", "sample_llm", "sample_sample"):
        np.testing.assert_allclose(
            [r[key] for r in distributed], [r[key] for r in single], rtol=0, atol=LOSS_TOLERANCE
        )
    accuracies = [r.get("validation_accuracy") for r in distributed]
    assert accuracies == [r.get("validation_accuracy") for r in single]


def test_one_process_without_a_launcher_uses_no_accelerator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("WORLD_SIZE", "ACCELERATE_MIXED_PRECISION"):
        monkeypatch.delenv(name, raising=False)
    assert not launched()
    processes = Processes.detect()
    assert processes.accelerator is None
    assert processes.num_processes == 1
    rows = np.arange(6)
    assert processes.local_rows(rows) is rows
    vectors = torch.ones(3, 2)
    assert processes.gather_for_contrast(vectors, torch.zeros(3))[0] is vectors


def test_a_launch_is_recognised_from_the_launcher_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched()
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert launched()


def test_a_single_process_router_folder_carries_its_training_record(
    tiny_router: core.Router, tmp_path: Path
) -> None:
    folder = tiny_router.save(tmp_path / "router")
    record = json.loads((folder / "training.json").read_text())
    assert record["num_processes"] == 1
    assert record["steps"] == 60
    assert record["llms"] == list(tiny_router.config.llm_names)
    assert record["training_queries"] + record["validation_queries"] == 120
    assert record["recipe"]["batch_size"] == 16
    assert "torch" in record["packages"]
    assert record["wall_time_s"] > 0
    assert core.load(folder).config.llm_names == tiny_router.config.llm_names
    # A router folder with training.json may be saved over.
    assert tiny_router.save(folder) == folder


def test_info_prints_the_training_record_of_a_saved_router(
    saved_router: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["info", "--router", str(saved_router)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((saved_router / "training.json").read_text())
    assert printed["num_processes"] == 1


def test_info_says_when_a_router_has_no_training_record(
    saved_router: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (saved_router / "training.json").unlink()
    assert cli.main(["info", "--router", str(saved_router)]) == 0
    assert "has no training.json" in capsys.readouterr().out
    assert cli.main(["info", "--router", str(saved_router / "missing")]) == 2


def test_a_launch_without_accelerate_installed_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "accelerate", None)  # import accelerate -> ImportError
    with pytest.raises(core.ConfigError, match=r"routerdc\[distributed\]"):
        Processes.detect()


def test_each_process_takes_its_contiguous_slice_of_the_global_batch() -> None:
    core_logger = logging.getLogger("core")
    previous = core_logger.level
    try:  # a process other than the main one quiets core's logs
        second = Processes(SimpleNamespace(num_processes=2, process_index=1, is_main_process=False))
        assert core_logger.level == logging.ERROR
    finally:
        core_logger.setLevel(previous)
    assert second.local_rows(np.arange(5)).tolist() == [3, 4]
    assert second._weight == pytest.approx(2 * 2 / 5)  # its share of the batch, times 2
    with pytest.raises(core.ConfigError, match="batch_size must be at least"):
        second.local_rows(np.arange(1))
