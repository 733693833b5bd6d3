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
import json
import math
import time

import torch
from text_scene_probe import collate  # scripts/ is on sys.path when this file is run
from tiny_probe import train_step
from transformers import AutoConfig, AutoModelForCausalLM

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
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=192, help="LLM width (MLP: 8/3 of it)")
    p.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-per-task", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.steps < 1 or a.eval_every < 1 or a.eval_per_task < 1 or a.batch_size < 1:
        p.error("--steps, --eval-every, --eval-per-task and --batch-size must be >= 1")
    torch.manual_seed(a.seed)
    tok = build_tokenizer()
    lc = AutoConfig.for_model(
        "qwen2",
        vocab_size=768,
        hidden_size=a.hidden,
        intermediate_size=a.hidden * 8 // 3,
        num_hidden_layers=a.layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=0,
        initializer_range=0.02,
    )
    model = AutoModelForCausalLM.from_config(lc)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    warm = max(1, a.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / a.steps))
    )
    tasks = list_tasks("short_videos")
    held = [
        (t, encode(tok, generate(t, TEST_SEED_MIN, i)))
        for i in range(a.eval_per_task)
        for t in tasks
    ]

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        model.eval()
        hits: dict[str, list[bool]] = {}
        for k in range(0, len(held), 64):
            chunk = held[k : k + 64]
            ids, labels, mask, _ = collate([r for _, r in chunk], tok.pad_token_id)
            pred = model(input_ids=ids, attention_mask=mask).logits[:, :-1].argmax(-1)
            ok = ((pred == labels[:, 1:]) | (labels[:, 1:] == -100)).all(-1)
            for (t, _), o in zip(chunk, ok.tolist(), strict=True):
                hits.setdefault(t, []).append(o)
        model.train()
        return {t: round(sum(v) / len(v), 3) for t, v in hits.items()}

    start, index, ema = time.time(), 0, None
    for step in range(1, a.steps + 1):
        rows = []
        for _ in range(a.batch_size):
            rows.append(encode(tok, generate(tasks[index % len(tasks)], a.seed, index)))
            index += 1
        ids, labels, mask, _ = collate(rows, tok.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss = train_step(model, opt, sched, loss)
        ema = loss if ema is None else 0.95 * ema + 0.05 * loss
        if step % 50 == 0:
            print(f"step {step} loss {ema:.3f} {time.time() - start:.0f}s", flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            acc = evaluate()
            mean = sum(acc.values()) / len(acc)
            print("EVAL", step, json.dumps(acc), f"mean {mean:.3f}", flush=True)


if __name__ == "__main__":
    main()
