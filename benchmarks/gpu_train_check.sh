#!/usr/bin/env bash
# The trainer on one CUDA GPU: the tiny recipe's model (recipes/tiny.yaml), everything trainable
# (so OryxViT's varlen attention runs forward and backward in bf16), one process, on a small
# curriculum built on the spot. Prints the loss curve and the step time; compare with the CPU
# step time in docs/default_model.md. Run from the repository root:
#
#   OUT=runs/gpu_train benchmarks/gpu_train_check.sh [steps]     (data: $DATA, default $OUT/data)
set -euo pipefail
OUT=${OUT:-runs/gpu_train}
PY=${PY:-python3}
STEPS=${1:-300}
DATA=${DATA:-$OUT/data}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}src PYTHONUNBUFFERED=1
mkdir -p "$DATA"

# four builds in parallel, one per task family (different base seeds)
$PY -m oryx_mllm.data.build "$DATA" --split train --seed 0 --name objects --tokenizer \
  --counts objects/qa_session=1000 &
pids=($!)
$PY -m oryx_mllm.data.build "$DATA" --split train --seed 1 --name short --counts short_videos=1000 &
pids+=($!)
$PY -m oryx_mllm.data.build "$DATA" --split train --seed 2 --name long --long-frames 32 \
  --counts long_videos=1000 &
pids+=($!)
$PY -m oryx_mllm.data.build "$DATA" --split train --seed 3 --name scenes --marks-fraction 0.5 \
  --counts multiview/scene_session=1000 &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid"; done

start=$(date +%s)
$PY -m oryx_mllm.cli train recipes/tiny.yaml \
  --set output_dir="$OUT/train" --set model.tokenizer="$DATA/tokenizer" \
  --set data.data_root="$DATA" --set stages=[] \
  --set "data.train=[$DATA/objects.json,$DATA/short.json,$DATA/long.json,$DATA/scenes.json]" \
  --set "stage.trainable=[vision_tower,vision_resampler,mm_projector,language_model]" \
  --set per_device_batch_size=16 --set max_steps="$STEPS" --set save_steps="$STEPS"
echo "training wall time: $(( $(date +%s) - start )) s for $STEPS steps"
$PY - "$OUT/train/metrics.jsonl" <<'EOF'
import json, statistics, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if '"loss"' in line]
for i in range(0, len(rows), 50):
    chunk = rows[i : i + 50]
    print(f"steps {chunk[0]['step']}-{chunk[-1]['step']}: mean loss "
          f"{statistics.mean(r['loss'] for r in chunk):.3f}, "
          f"tokens/s {statistics.median(r['tokens_per_s'] for r in chunk):.0f}")
EOF
