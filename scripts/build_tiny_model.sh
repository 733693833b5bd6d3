#!/usr/bin/env bash
# Rebuild the embedded default model from scratch: curriculum data -> `oryx train recipes/tiny.yaml`
# -> held-out evaluation -> src/oryx_mllm/assets/oryx-tiny/. CPU only; see docs/default_model.md.
# Usage: scripts/build_tiny_model.sh [--no-install]   (run from the repository root)
set -euo pipefail
PY=${PY:-.venv/bin/python}
ORYX=${ORYX:-.venv/bin/oryx}
DATA=runs/tiny/data
OUT=runs/tiny/train
ASSET=src/oryx_mllm/assets/oryx-tiny

rm -rf "$DATA" "$OUT"
# stage A: images (objects + small document pages), base seed 0
$PY -m oryx_mllm.data.build "$DATA" --split train --seed 0 --name stage_a --tokenizer \
  --counts objects=1600 documents/line_code=300 documents/key_lookup=300
# stage B: all modalities, base seed 1 (no sample shared with stage A); half the scenes drawn
# with correspondence marks
$PY -m oryx_mllm.data.build "$DATA" --split train --seed 1 --name stage_b --marks-fraction 0.5 \
  --long-frames 32 \
  --counts objects=600 documents/line_code=100 documents/key_lookup=100 short_videos=1500 \
  long_videos=800 multiview_scenes=1100

start=$(date +%s)
$ORYX train recipes/tiny.yaml
echo "training wall time: $(( $(date +%s) - start )) s" | tee runs/tiny/train_time.txt

$PY -m oryx_mllm.eval.synthetic "$OUT/final" --out runs/tiny/eval --per-task 50
$PY -m oryx_mllm.eval.synthetic "$OUT/final" --out runs/tiny/eval --name marks --per-task 100 \
  --tasks multiview/count --marks
$PY -m oryx_mllm.eval.synthetic "$OUT/final" --out runs/tiny/eval --name no_marks --per-task 100 \
  --tasks multiview/count

if [[ "${1:-}" != "--no-install" ]]; then
  rm -rf "$ASSET"
  mkdir -p "$ASSET"
  cp "$OUT"/final/{config.json,generation_config.json,model.safetensors,processor_config.json} "$ASSET"/
  cp "$OUT"/final/{tokenizer.json,tokenizer_config.json,chat_template.jinja} "$ASSET"/
  echo "installed the model in $ASSET"
fi
