"""The readers on the real shared data: the paper's JSON files and RouterBench's CSVs.

These read ``../shared/data`` next to the project and skip, saying so, where it is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import core
from core.training.metrics import is_probability_scored

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the shared data folder {SHARED} is absent on this machine"
)


@needs_shared_data
def test_the_papers_files_read_with_seven_llms_and_the_right_metric_per_task() -> None:
    folder = SHARED / "routerdc-7llm"
    for path in sorted(folder.glob("*.json")):
        data = core.RoutingData.from_file(path)
        assert len(data.llm_names) == 7
        assert not np.isnan(data.scores).any()
        multiple_choice = path.stem.split("_")[0] in {"mmlu", "cmmlu", "arc"}
        assert is_probability_scored(data.scores) == multiple_choice, path.name


@needs_shared_data
def test_routerbench_csvs_read_with_eleven_llms_their_costs_and_plain_prompts() -> None:
    data = core.RoutingData.from_file(SHARED / "routerbench" / "mbpp_train.csv")
    assert len(data.llm_names) == 11
    assert data.costs is not None and (np.nan_to_num(data.costs) >= 0).all()
    assert data.tasks is not None and set(data.tasks) == {"mbpp"}
    assert not data.queries[0].startswith("['"), "the list-literal prompt is unwrapped"
    prices = data.mean_costs()
    assert prices is not None and max(prices, key=prices.__getitem__) == "gpt-4-1106-preview"
