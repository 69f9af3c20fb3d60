"""Hostile and careless input (issue 13): a router folder never runs code, a save killed at any
point leaves a whole router, the file decides nothing before it is checked, and no decision is
ever made from NaN."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, BertConfig, BertTokenizer

import core
from core import (
    BaseRouter,
    ConfigError,
    Router,
    RouterConfig,
    RouterFileError,
    RoutingError,
    atomic,
)
from core.routing.encoder import load_encoder, load_tokenizer
from core.routing.model import RouterDCModel

ROOT = Path(__file__).resolve().parents[2]
EVIL_MODULE = """\
import pathlib
pathlib.Path({marker!r}).write_text("imported")
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast
class EvilTokenizer(PreTrainedTokenizerFast): pass
class EvilConfig(BertConfig): pass
class EvilModel(BertModel): pass
"""


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def rewrite_weights(
    folder: Path,
    change_state: Callable[[dict[str, torch.Tensor]], None] | None = None,
    change_metadata: Callable[[dict[str, str]], None] | None = None,
) -> None:
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as weights:
        metadata = dict(weights.metadata() or {})
        state = {key: weights.get_tensor(key) for key in weights.keys()}  # noqa: SIM118
    if change_state is not None:
        change_state(state)
    if change_metadata is not None:
        change_metadata(metadata)
    save_file(state, str(path), metadata=metadata)


def never_asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every prompt answer "y", as a user at a terminal might; returns the prompts."""
    prompts: list[str] = []

    def answer_yes(prompt: str = "") -> str:
        prompts.append(prompt)
        return "y"

    monkeypatch.setattr("builtins.input", answer_yes)
    return prompts


# ---------------------------------------------------------------------- 1. no code from a folder


def plant_tokenizer_code(folder: Path, marker: Path) -> None:
    """Point the folder's tokenizer at a module beside it that leaves ``marker`` when imported."""

    def ask_for_code(config: dict[str, Any]) -> None:
        config.pop("tokenizer_class", None)
        config["auto_map"] = {"AutoTokenizer": [None, "evil_tok.EvilTokenizer"]}

    edit_json(folder / "tokenizer_config.json", ask_for_code)
    (folder / "evil_tok.py").write_text(EVIL_MODULE.format(marker=str(marker)))


def test_a_router_folder_whose_tokenizer_asks_to_run_its_code_is_refused_and_nothing_imported(
    saved_router: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported.txt"
    plant_tokenizer_code(saved_router, marker)
    prompts = never_asked(monkeypatch)
    with pytest.raises(RouterFileError, match="auto_map") as caught:
        core.load(saved_router)
    assert "tokenizer_config.json" in str(caught.value)
    assert not marker.exists()
    assert prompts == []
    assert "evil_tok" not in sys.modules


def test_the_cli_refuses_such_a_folder_even_when_stdin_answers_yes(
    saved_router: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "imported.txt"
    plant_tokenizer_code(saved_router, marker)
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "route", "--router", str(saved_router), "hello"],
        input="y\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode != 0, done.stdout
    assert "auto_map" in done.stderr
    assert not marker.exists()


def test_an_encoder_folder_that_needs_its_own_code_is_a_config_error_and_nothing_imported(
    tiny_encoder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "evil-encoder"
    shutil.copytree(tiny_encoder, folder)
    marker = tmp_path / "imported.txt"
    edit_json(
        folder / "config.json",
        lambda c: c.update(
            model_type="evil-bert",
            auto_map={"AutoConfig": "evil_model.EvilConfig", "AutoModel": "evil_model.EvilModel"},
        ),
    )
    (folder / "evil_model.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    prompts = never_asked(monkeypatch)
    with pytest.raises(ConfigError, match="evil-encoder"):
        load_encoder(str(folder))
    assert not marker.exists()
    assert prompts == []


# ---------------------------------------------------------------------- 2. checked before built


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_hidden_layers", 60),
        ("hidden_size", 4096),
        ("intermediate_size", 100_000),
        ("vocab_size", 10_000_000),
        ("max_position_embeddings", 1_000_000),
    ],
)
def test_an_encoder_config_larger_than_the_weights_is_refused_before_any_model_is_built(
    saved_router: Path, monkeypatch: pytest.MonkeyPatch, field: str, value: int
) -> None:
    edit_json(saved_router / "encoder_config.json", lambda c: c.update({field: value}))

    def must_not_build(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the encoder was built before its config was checked")

    monkeypatch.setattr(AutoModel, "from_config", must_not_build)
    with pytest.raises(RouterFileError, match=f"{field} is {value}") as caught:
        core.load(saved_router)
    assert "encoder_config.json" in str(caught.value)


# ---------------------------------------------------------------------- 3. atomic saves


@pytest.fixture(scope="module")
def micro_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A far smaller encoder than the shared tiny one (15 tokens, width 8), so that the tests
    below can save and load dozens of times in a few seconds."""
    folder = tmp_path_factory.mktemp("micro-encoder")
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "solve",
        "write",
        "tell",
        "the",
        "a",
        "of",
    ]
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(words)})
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=32,
    )
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def random_router(encoder: str, llm_names: Sequence[str], seed: int) -> Router:
    """A router with random weights of its own, the encoder's shape."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = RouterDCModel(
            AutoModel.from_config(AutoConfig.from_pretrained(encoder)),
            len(llm_names),
            pooling="mean",
            temperature=1.0,
            projection=False,
        )
    config = RouterConfig(llm_names=list(llm_names), encoder=encoder, max_length=16)
    return Router(model, load_tokenizer(encoder), config, device="cpu")


@pytest.fixture(scope="module")
def two_routers(micro_encoder: str) -> tuple[Router, Router]:
    """Two routers with as many LLMs, named differently, with different weights."""
    return (
        random_router(micro_encoder, ["llm-a", "llm-b", "llm-c"], seed=1),
        random_router(micro_encoder, ["llm-c", "llm-a", "llm-d"], seed=2),
    )


def same_router(loaded: Router, expected: Router) -> bool:
    """Same LLM names and every weight equal."""
    if loaded.llm_names != expected.llm_names:
        return False
    ours, theirs = loaded.model.state_dict(), expected.model.state_dict()
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def which_router(folder: Path, routers: Sequence[Router]) -> int:
    """The index of the router ``folder`` loads as; fails the test on a mix."""
    loaded = core.load(folder, device="cpu")
    matches = [i for i, router in enumerate(routers) if same_router(loaded, router)]
    assert len(matches) == 1, f"{folder} loads as neither router: {loaded.llm_names}"
    return matches[0]


def save_in_child(
    router: Router, folder: Path, *, kill_at: int | None = None, exchange: bool = True
) -> int:
    """Fork a process that saves ``router`` to ``folder``; returns its pid.

    With ``kill_at``, the child SIGKILLs itself just before its ``kill_at``-th file-system step
    (a write, an fsync, a rename, a removal); without, it exits with the number of steps.
    With ``exchange=False`` it saves as on a file system that cannot swap two folders.
    """
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: never returns to pytest
        steps = 0

        def counted(step: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any, **kwargs: Any) -> Any:
                nonlocal steps
                steps += 1
                if steps == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return step(*args, **kwargs)

            return run

        import core.routing.router as router_module

        if not exchange:
            atomic._exchange = lambda first, second: False  # type: ignore[assignment]
        for module, name in [
            (atomic, "_exchange"),
            (atomic, "_fsync_file"),
            (atomic, "_fsync_folder"),
            (os, "rename"),
            (shutil, "rmtree"),
            (router_module, "save_file"),
        ]:
            setattr(module, name, counted(getattr(module, name)))
        RouterConfig.to_json = counted(RouterConfig.to_json)  # type: ignore[method-assign]
        router.save(folder)
        os._exit(min(steps, 255))
    except BaseException:
        os._exit(255)


def wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@needs_fork
def test_a_save_killed_at_random_points_leaves_the_old_or_the_new_router_never_a_mix(
    two_routers: tuple[Router, Router], tmp_path: Path
) -> None:
    folder = tmp_path / "router"
    two_routers[0].save(folder)
    current = 0
    # How long a whole save takes here, fork included, to spread the kills over (not asserted).
    start = time.perf_counter()
    assert wait(save_in_child(two_routers[1], folder)) > 0
    duration = time.perf_counter() - start
    current = which_router(folder, two_routers)
    assert current == 1
    rng = random.Random(13)
    for _ in range(30):
        pid = save_in_child(two_routers[1 - current], folder)
        time.sleep(rng.uniform(0, duration * 1.2))
        os.kill(pid, signal.SIGKILL)
        wait(pid)
        current = which_router(folder, two_routers)
    two_routers[0].save(folder)
    assert which_router(folder, two_routers) == 0
    assert leftovers(folder) == []  # the next save cleans what killed ones left


@needs_fork
@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_a_save_killed_before_each_of_its_steps_leaves_a_whole_router(
    two_routers: tuple[Router, Router], tmp_path: Path, exchange: bool
) -> None:
    folder = tmp_path / "router"
    two_routers[0].save(folder)
    steps = wait(save_in_child(two_routers[1], folder, exchange=exchange))
    assert 5 < steps < 255
    seen = set()
    for kill_at in range(1, steps + 1):
        two_routers[0].save(folder)
        assert wait(save_in_child(two_routers[1], folder, kill_at=kill_at, exchange=exchange)) < 0
        try:
            seen.add(which_router(folder, two_routers))
        except RouterFileError as err:
            # Only where folders cannot be swapped in one step, and only between the two
            # renames: the previous router is whole beside the target, and the error says so.
            assert not exchange
            assert "interrupted" in str(err) and "rename it to" in str(err)
            seen.add(-1)
            previous = next(p for p in folder.parent.iterdir() if ".old-" in p.name)
            assert which_router(previous, two_routers) == 0
    assert seen == ({0, 1} if exchange else {0, 1, -1})


def test_a_save_that_fails_while_writing_leaves_the_old_router_and_nothing_beside_it(
    two_routers: tuple[Router, Router], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "router"
    two_routers[0].save(folder)

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RouterConfig, "to_json", disk_full)
    with pytest.raises(OSError, match="No space left"):
        two_routers[1].save(folder)
    monkeypatch.undo()
    assert which_router(folder, two_routers) == 0
    assert leftovers(folder) == []


def test_saving_over_a_router_replaces_it_and_leaves_nothing_beside_it(
    two_routers: tuple[Router, Router], tmp_path: Path
) -> None:
    folder = tmp_path / "router"
    two_routers[0].save(folder)
    two_routers[1].save(folder)
    assert which_router(folder, two_routers) == 1
    assert leftovers(folder) == []


def test_saving_into_an_empty_folder_works(
    two_routers: tuple[Router, Router], tmp_path: Path
) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    two_routers[0].save(folder)
    assert which_router(folder, two_routers) == 0


def test_saving_over_a_folder_holding_other_files_is_refused_and_names_them(
    two_routers: tuple[Router, Router], saved_router: Path
) -> None:
    (saved_router / "notes.txt").write_text("mine")
    (saved_router / "runs").mkdir()
    before = sorted(p.name for p in saved_router.iterdir())
    with pytest.raises(RouterFileError, match=r"notes\.txt.*runs|runs.*notes\.txt"):
        two_routers[0].save(saved_router)
    assert sorted(p.name for p in saved_router.iterdir()) == before
    assert (saved_router / "notes.txt").read_text() == "mine"


def test_saving_over_a_hugging_face_model_folder_is_refused(
    two_routers: tuple[Router, Router], micro_encoder: str, tmp_path: Path
) -> None:
    folder = tmp_path / "encoder"
    shutil.copytree(micro_encoder, folder)
    with pytest.raises(RouterFileError, match="not a router's"):
        two_routers[0].save(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "bert"


def test_saving_over_a_file_is_refused(two_routers: tuple[Router, Router], tmp_path: Path) -> None:
    path = tmp_path / "router"
    path.write_text("a file")
    with pytest.raises(RouterFileError, match="not a folder"):
        two_routers[0].save(path)
    assert path.read_text() == "a file"


def test_weights_and_config_of_two_routers_with_as_many_llms_are_refused_as_a_mix(
    two_routers: tuple[Router, Router], tmp_path: Path
) -> None:
    first, second = two_routers[0].save(tmp_path / "a"), two_routers[1].save(tmp_path / "b")
    shutil.copy(second / "config.json", first / "config.json")
    with pytest.raises(RouterFileError, match="mixes two routers") as caught:
        core.load(first)
    assert "llm-d" in str(caught.value) and "llm-b" in str(caught.value)


def test_the_weights_record_the_llm_names_and_their_count(
    two_routers: tuple[Router, Router], tmp_path: Path
) -> None:
    folder = two_routers[1].save(tmp_path / "router")
    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        metadata = weights.metadata()
    assert json.loads(metadata["llm_names"]) == ["llm-c", "llm-a", "llm-d"]
    assert metadata["num_llms"] == "3"


def test_loading_a_folder_an_interrupted_save_left_missing_names_the_previous_router(
    saved_router: Path,
) -> None:
    previous = saved_router.parent / f".{saved_router.name}.old-0123abcd"
    saved_router.rename(previous)
    with pytest.raises(RouterFileError, match="interrupted") as caught:
        core.load(saved_router)
    assert str(previous) in str(caught.value)


# ---------------------------------------------------------------------- 4. batch_size


class FixedLogits(BaseRouter):
    """A backend that returns given logits: shows what BaseRouter does for every backend."""

    def __init__(self, logits: np.ndarray, llm_names: Sequence[str]) -> None:
        self.config = RouterConfig(llm_names=list(llm_names))
        self.max_tokens = 64
        self._logits = logits

    def logits(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return np.repeat(self._logits[None, :], len(self.check_queries(queries)), axis=0)

    def embed(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return np.zeros((len(queries), 4), dtype=np.float32)


BAD_BATCH_SIZES = [-1, 0, 2.5, True, "64", None]


@pytest.mark.parametrize("batch_size", BAD_BATCH_SIZES, ids=repr)
@pytest.mark.parametrize("method", ["route_batch", "logits", "probabilities", "embed"])
def test_a_bad_batch_size_is_a_config_error_naming_it_and_its_value(
    tiny_router: Router, method: str, batch_size: object
) -> None:
    with pytest.raises(ConfigError, match="batch_size") as caught:
        getattr(tiny_router, method)(["solve the equation", "write a loop"], batch_size=batch_size)
    assert repr(batch_size) in str(caught.value)


@pytest.mark.parametrize("batch_size", BAD_BATCH_SIZES, ids=repr)
@pytest.mark.parametrize("method", ["route_batch", "probabilities"])
def test_base_router_checks_batch_size_for_every_backend(method: str, batch_size: object) -> None:
    router = FixedLogits(np.array([1.0, 0.0], dtype=np.float32), ["a", "b"])
    with pytest.raises(ConfigError, match="batch_size"):
        getattr(router, method)(["a query"], batch_size=batch_size)


def test_a_numpy_integer_batch_size_is_accepted(tiny_router: Router) -> None:
    queries = ["solve the equation", "write a loop", "tell me a story"]
    given = tiny_router.route_batch(queries, batch_size=np.int64(2))
    assert given == tiny_router.route_batch(queries, batch_size=2)


# ---------------------------------------------------------------------- 7. NaN


@pytest.mark.parametrize("tensor", ["head.llm_embeddings", "encoder.pooler.dense.bias"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_on_load_naming_the_tensor(
    saved_router: Path, tensor: str, value: float
) -> None:
    def spoil(state: dict[str, torch.Tensor]) -> None:
        state[tensor].view(-1)[0] = value

    rewrite_weights(saved_router, change_state=spoil)
    with pytest.raises(RouterFileError, match=tensor.replace(".", r"\.")):
        core.load(saved_router)


@pytest.mark.parametrize("temperature", [1e-45, 1e-5, 1e5, float("nan"), 0.0, -1.0])
def test_a_temperature_out_of_range_is_refused_on_load(
    saved_router: Path, temperature: float
) -> None:
    edit_json(saved_router / "config.json", lambda c: c.update(temperature=temperature))
    with pytest.raises(RouterFileError, match="temperature") as caught:
        core.load(saved_router)
    assert "config.json" in str(caught.value)


@pytest.mark.parametrize("temperature", [1e-45, 1e-5, 1e5])
def test_router_and_train_configs_refuse_a_temperature_out_of_range(temperature: float) -> None:
    with pytest.raises(ConfigError, match="temperature"):
        RouterConfig(llm_names=["a", "b"], temperature=temperature)
    with pytest.raises(ConfigError, match="temperature"):
        core.TrainConfig(temperature=temperature)


def test_routing_never_decides_from_nan_logits(tiny_router: Router) -> None:
    saved = tiny_router.model.head.llm_embeddings.detach().clone()
    try:  # the router is shared by other tests: restore what this one spoils
        with torch.no_grad():
            tiny_router.model.head.llm_embeddings[0, 0] = float("nan")
        with pytest.raises(RoutingError, match="NaN or infinite"):
            tiny_router.route("solve the equation")
        with pytest.raises(RoutingError, match="NaN or infinite"):
            tiny_router.probabilities(["solve the equation"])
    finally:
        with torch.no_grad():
            tiny_router.model.head.llm_embeddings.copy_(saved)
    assert tiny_router.route("solve the equation integral derivative number").llm == "math-llm"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_base_router_raises_rather_than_route_on_non_finite_logits(value: float) -> None:
    router = FixedLogits(np.array([value, 0.0, 1.0], dtype=np.float32), ["a", "b", "c"])
    with pytest.raises(RoutingError, match="query 0"):
        router.route_batch(["first", "second"])
    assert issubclass(RoutingError, RuntimeError)


# ---------------------------------------------------------------------- unclear errors


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("encoder_config.json", "hidden_size", "384"),
        ("encoder_config.json", "num_hidden_layers", 2.5),
        ("config.json", "costs", "cheap"),
        ("config.json", "costs", {"math-llm": "free"}),
        ("config.json", "costs", {"gpt-9": 1.0}),
        ("config.json", "projection", "yes"),
        ("config.json", "encoder", 5),
    ],
)
def test_a_config_field_of_the_wrong_type_is_a_router_file_error_naming_file_and_field(
    saved_router: Path, name: str, field: str, value: object
) -> None:
    edit_json(saved_router / name, lambda c: c.update({field: value}))
    with pytest.raises(RouterFileError, match=field) as caught:
        core.load(saved_router)
    assert name in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tokenizer_files", "not json"),
        ("tokenizer_files", '{"a": 1}'),
        ("tokenizer_size", "many"),
        ("tokenizer_size", "-3"),
        ("llm_names", "[1, 2, 3]"),
        ("num_llms", "three"),
    ],
)
def test_bad_weights_metadata_is_a_router_file_error_naming_file_and_field(
    saved_router: Path, field: str, value: str
) -> None:
    rewrite_weights(saved_router, change_metadata=lambda m: m.update({field: value}))
    with pytest.raises(RouterFileError, match=field) as caught:
        core.load(saved_router)
    assert "model.safetensors" in str(caught.value)
