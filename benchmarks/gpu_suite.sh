#!/usr/bin/env bash
# The GPU checks and figures of docs/benchmarks.md, in one command (sized for a 10-minute call on
# one H100/H200). Run from the repository root on a machine with CUDA and PyTorch >= 2.9:
#
#   OUT=runs/gpu benchmarks/gpu_suite.sh
#
# 1. the CUDA attention tests (torch_varlen / sdpa / sdpa_masked against the fp32 math reference,
#    forward and backward);
# 2. released-size OryxViT (width 1152, 27 blocks), bf16: packed native vs padded batch vs AnyRes
#    partition on 8 mixed-size images, every attention backend, and peak memory against resolution
#    (512² .. 4096², one fresh process per point);
# 3. the embedded default model's held-out evaluation on CUDA (fp32 and bf16), to compare with the
#    CPU figures of docs/default_model.md.
# Each step has its own time limit; a failed step does not stop the others.
set -uo pipefail
OUT=${OUT:-runs/gpu}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}src PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

echo "== 1. CUDA attention tests"
timeout 60 $PY -m pytest -q -p no:cacheprovider tests/vision/test_attention.py 2>&1 \
  | tail -15 | tee "$OUT/pytest_cuda.txt"

echo "== 2. OryxViT released config, bf16"
timeout 240 $PY benchmarks/vit_throughput.py --config released --device cuda --dtype bfloat16 \
  --iters 10 --backend torch_varlen --backends torch_varlen sdpa sdpa_masked math \
  --resolutions 512 1024 1536 2048 3072 4096 \
  --json-out "$OUT/vit_released_gpu.json" --plot "$OUT/vit_memory_gpu.png" > "$OUT/vit.log" 2>&1
echo "rc=$?"; tail -c 3000 "$OUT/vit.log"

echo "== 3. default model held-out evaluation on CUDA"
for dtype in float32 bfloat16; do
  timeout 100 $PY -m oryx_mllm.eval.synthetic --device cuda --dtype $dtype \
    --per-task "${EVAL_PER_TASK:-20}" \
    --out "$OUT" --name "eval_cuda_$dtype" 2>&1 | tail -25
done
