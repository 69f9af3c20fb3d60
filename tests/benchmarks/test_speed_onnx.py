"""The measuring helpers of benchmarks/speed_onnx.py that need no timing and no export."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmarks.speed_onnx import agreement_figures, check_onnx_targets, install_size_mib
from core import BaseRouter, RouterConfig, RoutingData

LLMS = ["a", "b", "c"]


class FixedRouter(BaseRouter):
    """Routes query i to LLM ``picks[i]``."""

    def __init__(self, picks: Sequence[int]) -> None:
        self.config = RouterConfig(llm_names=LLMS)
        self.max_tokens = 64
        self.picks = {f"q{i}": pick for i, pick in enumerate(picks)}

    def logits(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return np.eye(len(LLMS))[[self.picks[q] for q in queries]] * 5.0

    def embed(self, queries: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return self.logits(queries)


def test_agreement_is_the_share_of_queries_where_an_export_picks_the_torch_routers_llm() -> None:
    data = RoutingData([f"q{i}" for i in range(4)], LLMS, np.eye(3)[[0, 1, 2, 0]])
    routers = {
        "torch": FixedRouter([0, 1, 2, 0]),  # right on every query
        "onnx_fp32": FixedRouter([0, 1, 2, 0]),
        "onnx_int8": FixedRouter([0, 1, 2, 1]),  # wrong on the last
    }
    figures = agreement_figures(routers, {"file": data})
    assert figures["agreement"] == {"onnx_fp32": 1.0, "onnx_int8": 0.75}
    assert figures["accuracy"]["torch"]["average"] == 100.0
    assert figures["accuracy_delta"] == {"onnx_fp32": 0.0, "onnx_int8": -25.0}


def test_an_accuracy_drop_beyond_the_bound_misses_its_target_whatever_its_sign() -> None:
    checked = check_onnx_targets({"onnx_int8_accuracy_delta": -0.4, "onnx_fp32_agreement": 0.9995})
    assert not checked["onnx_int8_accuracy_delta"]["met"]
    assert checked["onnx_fp32_agreement"]["met"]
    assert check_onnx_targets({"onnx_int8_accuracy_delta": 0.2})["onnx_int8_accuracy_delta"]["met"]


def test_install_size_counts_a_distribution_with_what_it_needs_and_names_what_is_missing() -> None:
    size = install_size_mib(["tokenizers", "no-such-distribution-here"])
    assert {"tokenizers", "huggingface-hub"} <= set(size["distributions_mib"])
    assert size["not_installed"] == ["no-such-distribution-here"]
    assert size["total_mib"] == sum(size["distributions_mib"].values()) > 1
