#!/usr/bin/env bash
# Rebuild the embedded default model from scratch: curriculum data -> `oryx train recipes/tiny.yaml`
# -> held-out evaluation -> src/oryx_mllm/assets/oryx-tiny/. CPU only; see docs/default_model.md.
# Usage: scripts/build_tiny_model.sh [--no-install]   (run from the repository root)
set -euo pipefail
PY=${PY:-.venv/bin/python}
TORCHRUN=${TORCHRUN:-.venv/bin/torchrun}
DATA=runs/tiny/data
OUT=runs/tiny/train
ASSET=src/oryx_mllm/assets/oryx-tiny

rm -rf "$DATA" "$OUT"
# Five datasets, built in parallel (one process each, different base seeds, no sample shared):
# - ignite: long videos whose needle question asks only for the colour. A model trained from
#   scratch on the full mix learns the text prior and never starts reading its visual tokens;
#   one easy visual question first makes it read them (docs/default_model.md, "Curriculum").
# - video: all long-video needle questions (colour, shape, digit).
# - joint: everything else plus long videos. Half the scenes are drawn with correspondence marks,
#   discs of 12% of a view's short side: the recipe's data.multiview.marks (the tiny model sees
#   64² views; the default 4% marks are 3-5 px there).
# - docs, docs_replay: 4-line pages set one character per 16 px patch (256 x 96 px), with each
#   patch's character (patch_text) for the documents stage's warm-up loss; the replay pages go
#   into the later stages so that the pages are not forgotten (docs/default_model.md,
#   "Documents and the needle together"). Long videos carry their needle frame's word (frame_text).
GRID='{"documents/line_code": {"pitch": 16, "fit": 32, "max_lines": 4, "page_sides": [256]}}'
$PY -m oryx_mllm.data.build "$DATA" --split train --seed 0 --name ignite --tokenizer \
  --long-frames 32 --counts long_videos/color=5000 &
pids=($!)
$PY -m oryx_mllm.data.build "$DATA" --split train --seed 1 --name video \
  --long-frames 32 --counts long_videos=6500 &
pids+=($!)
$PY -m oryx_mllm.data.build "$DATA" --split train --seed 2 --name joint --marks-fraction 0.5 \
  --mark-radius-frac 0.12 --long-frames 32 \
  --counts objects/qa_session=4000 objects=1000 short_videos=8000 long_videos=4000 \
  multiview/scene_session=3000 multiview_scenes=1000 &
pids+=($!)
$PY -m oryx_mllm.data.build "$DATA" --split train --seed 3 --name docs \
  --counts documents/line_code=24000 --task-kwargs "$GRID" &
pids+=($!)
$PY -m oryx_mllm.data.build "$DATA" --split train --seed 4 --name docs_replay \
  --counts documents/line_code=3000 --task-kwargs "$GRID" &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid"; done

# Two data-parallel CPU processes (torchrun + Accelerate, gloo), one thread each, 8 samples each
# per step: the same 16-sample steps as one process, and about the same speed as one process with
# two threads on this 2-core machine.
start=$(date +%s)
OMP_NUM_THREADS=1 $TORCHRUN --standalone --nproc_per_node 2 \
  -m oryx_mllm.cli train recipes/tiny.yaml
echo "training wall time: $(( $(date +%s) - start )) s" | tee runs/tiny/train_time.txt

$PY -m oryx_mllm.eval.synthetic "$OUT/final" --out runs/tiny/eval --per-task 50
# the pages the model was trained on (held out), at native resolution and forced to 384 x 384
$PY -m oryx_mllm.eval.synthetic "$OUT/final" --out runs/tiny/eval --name documents_grid \
  --per-task 100 --tasks documents/line_code --task-kwargs "$GRID"
$PY -m oryx_mllm.eval.synthetic "$OUT/final" --out runs/tiny/eval --name documents_grid_384 \
  --per-task 100 --tasks documents/line_code --task-kwargs "$GRID" --image-size 384
$PY -m oryx_mllm.eval.synthetic "$OUT/final" --out runs/tiny/eval --name marks --per-task 1000 \
  --tasks multiview/count --marks
$PY -m oryx_mllm.eval.synthetic "$OUT/final" --out runs/tiny/eval --name no_marks --per-task 1000 \
  --tasks multiview/count
# the same 1,000 scenes with and without marks: paired counts and an exact McNemar test (100
# scenes, used up to the twenty-third session, left gains of 4-9 points at p = 0.06-0.4)
$PY -m oryx_mllm.eval.paired runs/tiny/eval/marks.json runs/tiny/eval/no_marks.json \
  | tee runs/tiny/eval/marks_vs_no_marks.txt

if [[ "${1:-}" != "--no-install" ]]; then
  rm -rf "$ASSET"
  mkdir -p "$ASSET"
  cp "$OUT"/final/{config.json,generation_config.json,model.safetensors,processor_config.json} "$ASSET"/
  cp "$OUT"/final/{tokenizer.json,tokenizer_config.json,chat_template.jinja} "$ASSET"/
  echo "installed the model in $ASSET"
fi
