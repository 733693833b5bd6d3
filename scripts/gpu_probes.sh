#!/usr/bin/env bash
# Issue 6 on a GPU: how far do the tiny model's weak tasks get with many more steps than the
# 30-minute CPU recipe allows? The `scripts/tiny_probe.py` runs below share one GPU, each for
# the same wall-clock budget (its schedule is sized after 50 steps); every held-out evaluation
# is appended to $OUT/<name>.jsonl, the log to $OUT/<name>.log. Run from the repository root:
#
#   OUT=runs/gpu_probes BUDGET=420 scripts/gpu_probes.sh            (DEVICE=cpu for a smoke test)
#
# PROBES="obj_frozen short_frozen" runs only those (fewer probes: more steps each); WORKERS=2 gives
# each probe two sample-generating processes.
set -uo pipefail
set -f  # the probes' flags are split unquoted below; JSON like [64] must not glob
OUT=${OUT:-runs/gpu_probes}
PY=${PY:-python3}
BUDGET=${BUDGET:-420}
DEVICE=${DEVICE:-cuda}
PER_TASK=${PER_TASK:-48}
WORKERS=${WORKERS:-1}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
[[ "$BUDGET" =~ ^[0-9]+$ ]] || { echo "BUDGET must be whole seconds, got '$BUDGET'" >&2; exit 2; }
mkdir -p "$OUT"
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

common=(--bf16 --device "$DEVICE" --steps 2000 --time-budget "$BUDGET" --num-workers "$WORKERS"
  --eval-per-task "$PER_TASK")
objects=(--tasks objects/qa_session --eval-tasks objects)
grid='{"cell":16,"sides":[64]}'  # one object per 16 px patch on a 4 x 4 grid (no spaces: one word)
short=(--tasks short_videos --eval-tasks short_videos)
multiview=(--tasks multiview/scene_session --eval-tasks multiview/count,multiview/left_right,multiview/closer --marks 0.5 --mark-radius-frac 0.12)
# documents line probes with the page kwargs $1 (JSON, no spaces): the tiny model's scale is
# 256 px pages (256 tokens); easier pages have one line ("one"), the font magnified 2-3x ("s2", "s3")
page() { echo "--tasks documents/line_session --eval-tasks documents/line_code --documents-kwargs $1"; }
keys=(--tasks documents/key_session --eval-tasks documents/key_lookup --documents-kwargs '{"page_sides":[256]}')
declare -A probes=(
  [obj_frozen]="${objects[*]} --freeze-vit"
  [obj_frozen_lr3e-3]="${objects[*]} --freeze-vit --lr 3e-3"
  [obj_vit_trained]="${objects[*]}"
  [obj_frozen_w256]="${objects[*]} --freeze-vit --llm-hidden 256 --llm-heads 8"
  [obj_oracle]="${objects[*]} --freeze-vit --oracle-objects"
  [obj_oracle_w256]="${objects[*]} --freeze-vit --oracle-objects --llm-hidden 256 --llm-heads 8"
  [obj_frozen_lr5e-4]="${objects[*]} --freeze-vit --lr 5e-4"
  [obj_oracle_lr5e-4]="${objects[*]} --freeze-vit --oracle-objects --lr 5e-4"
  [obj_grid_frozen_lr5e-4]="${objects[*]} --freeze-vit --lr 5e-4 --objects-kwargs $grid"
  [obj_grid_frozen_lr5e-4_seed1]="${objects[*]} --freeze-vit --lr 5e-4 --objects-kwargs $grid --seed 1"
  [obj_grid_vit_trained_lr5e-4]="${objects[*]} --lr 5e-4 --objects-kwargs $grid"
  [obj_grid_oracle_lr5e-4]="${objects[*]} --freeze-vit --oracle-objects --lr 5e-4 --objects-kwargs $grid"
  [obj_grid_frozen]="${objects[*]} --freeze-vit --objects-kwargs $grid"
  [obj_rms_lr5e-4]="${objects[*]} --freeze-vit --lr 5e-4 --visual-rms-match"
  [obj_rms_vit_trained_lr5e-4]="${objects[*]} --lr 5e-4 --visual-rms-match"
  [obj_oracle_rms_lr5e-4]="${objects[*]} --freeze-vit --oracle-objects --lr 5e-4 --visual-rms-match"
  [obj_grid_rms_lr5e-4]="${objects[*]} --freeze-vit --lr 5e-4 --visual-rms-match --objects-kwargs $grid"
  [short_frozen_lr5e-4]="${short[*]} --freeze-vit --lr 5e-4"
  [short_rms_lr5e-4]="${short[*]} --freeze-vit --lr 5e-4 --visual-rms-match"
  [mv_frozen_lr5e-4]="${multiview[*]} --freeze-vit --lr 5e-4"
  [mv_rms_lr5e-4]="${multiview[*]} --freeze-vit --lr 5e-4 --visual-rms-match"
  [doc_frozen_lr5e-4]="$(page '{"page_sides":[256]}') --freeze-vit --lr 5e-4"
  [doc_vit_trained_lr5e-4]="$(page '{"page_sides":[256]}') --lr 5e-4"
  [doc_vit_trained]="$(page '{"page_sides":[256]}')"
  [doc_vit_trained_rms_lr5e-4]="$(page '{"page_sides":[256]}') --lr 5e-4 --visual-rms-match"
  [key_vit_trained_lr5e-4]="${keys[*]} --lr 5e-4"
  [doc512_vit_trained_lr5e-4]="$(page '{"page_sides":[512]}') --lr 5e-4 --image-max-pixels 262144"
  [doc_one_s1_vit_trained_lr5e-4]="$(page '{"page_sides":[256],"max_lines":1}') --lr 5e-4"
  [doc_one_s2_vit_trained_lr5e-4]="$(page '{"page_sides":[256],"max_lines":1,"scale":2}') --lr 5e-4"
  [doc_one_s3_vit_trained_lr5e-4]="$(page '{"page_sides":[256],"max_lines":1,"scale":3}') --lr 5e-4"
  [doc_one_s3_frozen_lr5e-4]="$(page '{"page_sides":[256],"max_lines":1,"scale":3}') --freeze-vit --lr 5e-4"
  [doc_s2_vit_trained_lr5e-4]="$(page '{"page_sides":[384],"scale":2}') --lr 5e-4 --image-max-pixels 147456"
  [doc_s3_vit_trained_lr5e-4]="$(page '{"page_sides":[384],"scale":3}') --lr 5e-4 --image-max-pixels 147456"
  [short_frozen]="${short[*]} --freeze-vit"
  [short_vit_trained]="${short[*]}"
)
names=${PROBES:-${!probes[*]}}
for name in $names; do
  [ -n "${probes[$name]+set}" ] || { echo "unknown probe '$name'; known: ${!probes[*]}" >&2; exit 2; }
done
for name in $names; do
  # shellcheck disable=SC2086  # the probe's flags are meant to split
  timeout $((BUDGET + 90)) $PY scripts/tiny_probe.py "${common[@]}" ${probes[$name]} \
    --json-out "$OUT/$name.jsonl" > "$OUT/$name.log" 2>&1 &
done
wait
for name in $(printf '%s\n' $names | sort); do
  echo "== $name: ${probes[$name]}"
  grep -E "time budget|^EVAL|Error|error" "$OUT/$name.log" | tail -6
done
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=memory.used --format=csv,noheader
