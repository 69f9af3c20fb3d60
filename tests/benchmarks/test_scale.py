"""The scale benchmark's generated log and its measurement of one fit."""

from __future__ import annotations

from pathlib import Path

import core
from benchmarks.scale import LLMS, run_child, write_log


def test_the_generated_log_has_the_asked_rows_llms_and_tasks(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 300)
    data = core.RoutingData.from_files([str(path)])
    assert len(data) == 300
    assert sorted(data.llm_names) == sorted(LLMS)
    assert data.tasks is not None and set(data.tasks) == {"math", "code", "chat"}
    assert len(set(data.queries)) == 300


def test_one_measured_fit_reports_rows_time_memory_and_throughput(
    tmp_path: Path, tiny_encoder: str
) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 90)
    result = run_child(path, tiny_encoder, steps=2, batch_size=16)
    assert result["rows"] == 90
    assert result["peak_rss_gib"] > 0
    assert result["wall_s"] > 0 and result["queries_per_s"] > 0
