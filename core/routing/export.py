"""Export a router to ONNX, for routing on ONNX Runtime without torch: ``routerdc export``.

The whole scoring path is one graph: encoder, pooling (``config.pooling``), projection, and
the LLM embeddings, normalised and divided by the temperature, from token ids and attention
mask ``(N, L)`` to logits ``(N, T)`` and query vectors ``(N, D)``, with the batch and token
axes dynamic. It is exported with ``torch.onnx.export`` (the TorchScript exporter) at opset
:data:`OPSET`; ``int8=True`` then quantises the weights of its MatMul and Gather nodes
(the encoder's) to int8, one scale per channel, with ONNX Runtime's dynamic quantiser
(activations are quantised at run time), leaving the router's head in fp32.
:class:`~core.routing.onnx_router.OnnxRouter` loads the folder.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .._version import __version__
from ..errors import ConfigError, RouterFileError
from .onnx_router import (
    CONFIG_FILE,
    EXPORT_FILE,
    EXPORT_FORMAT,
    INPUT_NAMES,
    ONNX_FILE,
    OUTPUT_NAMES,
    TOKENIZER_FILE,
    OnnxRouter,
)
from .ood import OOD_FILE

if TYPE_CHECKING:
    from .router import Router

logger = logging.getLogger(__name__)

# Opset 17 has LayerNormalization as one op; ONNX Runtime has run it since 1.14.
OPSET = 17
# Largest |logit| difference between an fp32 export and the torch router that export accepts.
FP32_TOLERANCE = 1e-3
# Texts the export checks itself on: short, long, and of several scripts.
CHECK_QUERIES = (
    "What is 12 times 48?",
    "def add(a, b):\n    return a + b",
    "以下是关于中国历史的单项选择题。秦始皇统一六国是在哪一年？",
    "Which of the following is a function of the liver? A. insulin B. bile C. urea D. none " * 6,
)


def export(router: Router, path: str | Path, *, int8: bool = False) -> Path:
    """Write ``router`` as an ONNX model, its tokenizer and config, to the folder ``path``.

    Args:
        router: a torch router (trained by :func:`core.fit` or loaded).
        path: the folder to write; :func:`core.load` recognises it by its ``model.onnx``.
        int8: quantise the encoder's weights to int8 (dynamic quantisation): a smaller, faster
            model whose choices may differ from the torch router's on a few queries.

    Returns:
        The folder.

    Raises:
        ConfigError: the router's tokenizer is not a fast one (there is no tokenizer.json).
        RouterFileError: the fp32 export disagrees with the torch router on the check queries.
    """
    _require("onnxruntime", "tokenizers", *(("onnx",) if int8 else ()))
    folder = Path(path)
    tokenizer = router.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"export needs a fast tokenizer (one with a tokenizer.json); "
            f"{type(tokenizer).__name__} is not"
        )
    if tokenizer.pad_token_id is None or tokenizer.pad_token is None:
        raise ConfigError(f"export needs a tokenizer with a padding token; {tokenizer!r} has none")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / ONNX_FILE
        _export_fp32(router, fp32_path)
        if int8:
            _quantise(fp32_path, folder / ONNX_FILE)
        else:
            (folder / ONNX_FILE).write_bytes(fp32_path.read_bytes())
    tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_FILE))
    router.config.to_json(folder / CONFIG_FILE)
    if router.ood is not None:  # so the exported router scores how typical each query is
        router.ood.save(folder / OOD_FILE, backoff=router.ood_backoff)
    info = {
        "format": EXPORT_FORMAT,
        "opset": OPSET,
        "int8": int8,
        "max_tokens": router.max_tokens,
        "pad_id": int(tokenizer.pad_token_id),
        "pad_token": str(tokenizer.pad_token),
        "torch": torch.__version__,
        "routerdc": __version__,
    }
    (folder / EXPORT_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    _check(router, OnnxRouter.load(folder, device="cpu"), int8=int8)
    logger.info("exported router to %s (opset %d, %s)", folder, OPSET, "int8" if int8 else "fp32")
    return folder


def _require(*modules: str) -> None:
    """Raise a ConfigError naming the install extra when a module export needs is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f'export needs {", ".join(missing)}: pip install "routerdc[export]"')


def _export_fp32(router: Router, path: Path) -> None:
    """The scoring path as an fp32 ONNX graph at ``path``, on the CPU."""
    model = router.model
    device = next(model.parameters()).device
    model.to("cpu").eval()
    try:
        sample = router.tokenize(list(CHECK_QUERIES[:2]))
        inputs = tuple(sample[name].to("cpu") for name in INPUT_NAMES)  # each (B, L)
        axes = {0: "batch", 1: "tokens"}
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # The tracer warns of Python branches on shapes in the encoder's mask code (fixed
            # for an encoder: no causal mask, mask as long as the tokens) and of indexing with
            # aranges (never negative); _check compares the graph with the torch router.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", "Exporting aten::index", UserWarning)
            torch.onnx.export(
                model,
                inputs,
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={
                    INPUT_NAMES[0]: axes,
                    INPUT_NAMES[1]: axes,
                    OUTPUT_NAMES[0]: {0: "batch"},
                    OUTPUT_NAMES[1]: {0: "batch"},
                },
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        model.to(device)


def _quantise(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of ``source``'s encoder weights into ``target``.

    The head (projection, cosine against the LLM embeddings) stays fp32: it is a sliver of the
    compute, and the logits are what the choice hangs on.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The TorchScript exporter names nodes by module path (/head/..., /encoder/...); the
    # quantiser first splits a Gemm (the projection) into <name>_MatMul and <name>_Add.
    graph = onnx.load(str(source)).graph
    head = [node.name for node in graph.node if node.name.startswith("/head/")]
    head += [f"{name}_MatMul" for name in head]
    quantize_dynamic(
        source,
        target,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gather"],
        # One scale per output channel: on 369 of the paper's test queries, the default
        # router's choices moved on 0.5% of them, against 1.9% with one scale per tensor.
        per_channel=True,
        nodes_to_exclude=head,
    )


def _check(router: Router, exported: OnnxRouter, *, int8: bool) -> None:
    """Compare the exported router with the torch one on :data:`CHECK_QUERIES`."""
    expected = router.logits(list(CHECK_QUERIES))
    got = exported.logits(list(CHECK_QUERIES))
    difference = float(np.abs(expected - got).max())
    same = int((expected.argmax(axis=1) == got.argmax(axis=1)).sum())
    logger.info(
        "export check: largest logit difference %.2g, same choice on %d of %d queries",
        difference,
        same,
        len(CHECK_QUERIES),
    )
    if not int8 and difference > FP32_TOLERANCE:
        raise RouterFileError(
            f"the fp32 export differs from the torch router by {difference:.3g} in a logit "
            f"(tolerance {FP32_TOLERANCE}); the encoder may not trace to ONNX faithfully"
        )
