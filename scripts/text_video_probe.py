"""Can the tiny LLM learn the short-video questions when every frame is given as exact text?

The short-video counterpart of ``scripts/text_scene_probe.py``: vision is taken out altogether.
Each frame of a ``short_videos`` sample is written as the objects it shows, rebuilt from the
generator's ``meta`` (`` frame 3: red circle r1 c2 , grey square |``); positions are a cell of a
4 x 4 grid and are given where the task's ``meta`` records them (the moving object and the
distractors of ``direction``, the only task whose answer needs a position). The recipe's 4-layer
Qwen2-shaped LLM is trained from scratch on the four tasks' single questions (round-robin) and
scored by teacher-forced exact match of the answer tokens on held-out videos (test seed
1,000,000). If it learns here, the short videos' chance level with vision is a matter of what the
visual tokens carry; if not, the LLM itself is the limit in this budget.

    OMP_NUM_THREADS=1 python scripts/text_video_probe.py --steps 1500 --lr 5e-4 --bf16
"""

from __future__ import annotations

import argparse

import torch
from text_scene_probe import add_llm_args, check_llm_args, run  # scripts/ is on sys.path

from oryx_mllm.data.synthetic import TEST_SEED_MIN, generate, list_tasks
from oryx_mllm.data.tokenizer import build_tokenizer

GRID = 4


def _cell(x: float, y: float, side: int) -> str:
    col, row = min(GRID - 1, int(x / side * GRID)), min(GRID - 1, int(y / side * GRID))
    return f" r{row} c{col}"


def frames_text(sample) -> str:
    """Every frame of a short-video sample as the objects it shows (see the module docstring)."""
    m, task = sample.meta, sample.task
    side, n = m["size"][0], m["num_frames"]
    frames: list[list[str]] = [[] for _ in range(n)]
    if task == "short_videos/direction":
        for t, (x, y) in enumerate(m["path"]):
            frames[t] = [f" {d['color']} {d['shape']}{_cell(d['x'], d['y'], side)}"
                         for d in m["distractors"]]  # fmt: skip
            frames[t].append(f" {m['mover']['color']} {m['mover']['shape']}{_cell(x, y, side)}")
    elif task == "short_videos/appear_order":
        for t in range(n):
            frames[t] = [
                f" {c} {s}"
                for c, s, on in zip(m["colors"], m["shapes"], m["onsets"], strict=True)
                if on <= t
            ]
    elif task == "short_videos/count_appear":
        target, d = m["target"], m["distractor"]
        for t in range(n):
            frames[t] = [f" {d['color']} {d['shape']}"]
            if m["present"][t]:
                frames[t].append(f" {target['color']} {target['shape']}")
    elif task == "short_videos/what_when":
        for t in range(n):
            frames[t] = [f" {m['colors'][t]} {m['main']}"]
            if t in m["cue_frames"]:
                frames[t].append(f" grey {m['cue']}")
    else:
        raise ValueError(f"no text form for {task}")
    return "video:" + "".join(f" frame {t}:" + " ,".join(f) + " |" for t, f in enumerate(frames))


def encode(tok, sample) -> tuple[list[int], list[int], list[int]]:
    """Token ids, labels (-100 except on the answer and its newline), no merged ids (all -1)."""
    ids = tok.encode(frames_text(sample) + "\n")
    q_ids = tok.encode(f"Q: {sample.question.removeprefix('<video>').strip()}\nA:")
    a_ids = tok.encode(f" {sample.answer}\n")
    ids += q_ids + a_ids
    labels = [-100] * (len(ids) - len(a_ids)) + a_ids
    return ids, labels, [-1] * len(ids)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_llm_args(p, steps=1500, lr=5e-4)
    a = p.parse_args()
    check_llm_args(p, a)
    torch.manual_seed(a.seed)
    tok = build_tokenizer()
    tasks = list_tasks("short_videos")
    held = [
        (t, encode(tok, generate(t, TEST_SEED_MIN, i)))
        for i in range(a.eval_per_task)
        for t in tasks
    ]
    run(
        a,
        tok.pad_token_id,
        held,
        lambda index, step: encode(tok, generate(tasks[index % len(tasks)], a.seed, index)),
    )


if __name__ == "__main__":
    main()
