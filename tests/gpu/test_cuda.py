"""The GPU path: full fine-tuning on CUDA with mixed precision, saved there and loaded on a CPU.

Marked ``gpu``; without a CUDA device every test here skips and says why. They run on the
accelerator machine through ``benchmarks/gpu/run.sh``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import core

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU: run on the accelerator machine (benchmarks/gpu/run.sh)",
    ),
]


def _fit_on_cuda(
    data: core.RoutingData, encoder: str | None, dtypes: list[torch.dtype]
) -> core.Router:
    """Fit on CUDA with the device's default recipe; ``dtypes`` collects the output dtype of the
    encoder's first linear layer at each training forward pass (a layer norm would show fp32:
    autocast keeps normalisations in fp32)."""
    from transformers import AutoModel

    load = AutoModel.from_pretrained

    def record(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        if torch.is_grad_enabled():
            dtypes.append((output[0] if isinstance(output, tuple) else output).dtype)

    def load_and_watch(*args: object, **kwargs: object) -> torch.nn.Module:
        model = load(*args, **kwargs)
        first_linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        first_linear.register_forward_hook(record)
        return model

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AutoModel, "from_pretrained", load_and_watch)
        return core.fit(
            data, encoder=encoder, device="cuda", steps=30, batch_size=16, seed=0, progress=False
        )


def test_fit_on_cuda_fine_tunes_the_encoder_in_bf16_autocast(
    tiny_encoder: str, toy_data: core.RoutingData
) -> None:
    dtypes: list[torch.dtype] = []
    router = _fit_on_cuda(toy_data, tiny_encoder, dtypes)

    assert router.device.type == "cuda"
    # train_encoder=None resolves to full fine-tuning on a GPU: the encoder ran with gradients,
    # under autocast, so its activations were bf16.
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in router.model.parameters())  # fp32 master weights


def test_router_trained_on_cuda_loads_on_cpu_and_routes_the_same(
    tiny_encoder: str, toy_data: core.RoutingData, tmp_path: Path
) -> None:
    router = _fit_on_cuda(toy_data, tiny_encoder, [])
    queries = toy_data.queries[:60]
    on_gpu = router.route_batch(queries)

    router.save(tmp_path / "router")
    on_cpu = core.load(tmp_path / "router", device="cpu")

    assert on_cpu.device.type == "cpu"
    assert [d.llm for d in on_cpu.route_batch(queries)] == [d.llm for d in on_gpu]
    np.testing.assert_allclose(
        on_cpu.probabilities(queries), router.probabilities(queries), atol=1e-4
    )


def test_the_default_encoder_fine_tunes_on_cuda_and_routes_the_toy_topics(
    toy_data: core.RoutingData, tmp_path: Path
) -> None:
    router = _fit_on_cuda(toy_data, None, [])
    router.save(tmp_path / "router")
    on_cpu = core.load(tmp_path / "router", device="cpu")
    queries, best = toy_data.queries, toy_data.scores.argmax(axis=1)
    chosen = [on_cpu.llm_names.index(d.llm) for d in on_cpu.route_batch(queries)]
    assert np.mean(np.array(chosen) == best) > 0.9
