"""Does a from-scratch Oryx learn to *read* its visual tokens? The needle experiment of
docs/default_model.md ("Curriculum").

OryxViT-tiny is kept at its random initialisation and its patch features for the 32 sampled
frames of every needle video are computed once; only the dynamic compressor (4x4), the projector
and the 4-layer LLM train, on exactly the token layout and chat template of the real model, about
5x faster than a full training step. Two schedules are compared:

- ``--tasks long_videos`` (the three needle questions mixed from step 1), and
- ``--first long_videos/color --switch 400`` (colour questions only, then all three).

    OMP_NUM_THREADS=1 python scripts/needle_ignition.py --steps 1400
    OMP_NUM_THREADS=1 python scripts/needle_ignition.py --steps 1000 --first long_videos/color \
        --switch 400

Held-out accuracy (teacher-forced exact match, 64 test videos per task) every 100 steps.
"""

from __future__ import annotations

import argparse
import time

import torch
from tiny_probe import TINY_IMAGE, TINY_VIDEO, build_model, probe_sample, record

from oryx_mllm.data.synthetic import TEST_SEED_MIN, list_tasks
from oryx_mllm.data.tokenizer import build_tokenizer
from oryx_mllm.processing.chat import ensure_visual_token
from oryx_mllm.train.config import DataSpec
from oryx_mllm.train.transform import MicroBatchCollator, TrainTransform


def encode_all(vit, transform, tasks, seed, n):
    """``[(TrainExample, patch features [32, 16, C], grid)]`` per task."""
    out = {}
    for task in tasks:
        items = []
        for i in range(n):
            ex = transform(record(probe_sample(task, seed, i)))
            with torch.no_grad():
                feats, grids = vit.encode(list(ex.visual[0].frames))
            items.append((ex, torch.stack(feats).bfloat16(), grids[0]))
        out[task] = items
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--tasks", default="long_videos", help="tasks after --switch (or throughout)")
    p.add_argument("--first", default=None, help="tasks of the first --switch steps")
    p.add_argument("--switch", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-per-task", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)

    tok = build_tokenizer()
    visual_id = ensure_visual_token(tok)
    transform = TrainTransform(
        tok, visual_id, DataSpec(max_length=4096, image=TINY_IMAGE, video=TINY_VIDEO)
    )
    collate = MicroBatchCollator(tok.pad_token_id, 1)
    model = build_model(4, 4, visual_id)
    model.vision_tower.requires_grad_(False).eval()

    tasks = list(list_tasks("long_videos"))
    t0 = time.time()
    train = encode_all(model.vision_tower, transform, tasks, a.seed, a.train_per_task)
    test = encode_all(model.vision_tower, transform, tasks, TEST_SEED_MIN, 64)
    print(f"encoded {len(tasks) * (a.train_per_task + 64)} videos in {time.time() - t0:.0f}s")

    def loss_and_logits(examples, with_loss=True):
        b = collate([ex for ex, _, _ in examples])[0]
        is_vis = b["input_ids"] == visual_id
        table = model.language_model.get_input_embeddings()
        emb = table(b["input_ids"].masked_fill(is_vis, 0))
        visual = []
        for _, feats, grid in examples:  # the real path after the encoder: compressor, projector
            x, g = model.vision_resampler(feats.float(), grid, 4)
            visual.append(model.mm_projector.video(x, g))
        emb = emb.masked_scatter(is_vis[..., None], torch.cat(visual).to(emb.dtype))
        out = model.language_model(
            inputs_embeds=emb,
            attention_mask=b["attention_mask"],
            labels=b["labels"] if with_loss else None,
        )
        return out, b["labels"]

    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01)
    first = [t for n in (a.first or "").split(",") if n for t in list_tasks(n)]
    later = [t for n in a.tasks.split(",") for t in list_tasks(n)]
    first_pool = [x for t in first for x in train[t]]
    later_pool = [x for t in later for x in train[t]]
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.time()
    for step in range(1, a.steps + 1):
        pool = first_pool if first and step <= a.switch else later_pool
        batch = [pool[int(i)] for i in torch.randint(0, len(pool), (16,), generator=g)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = loss_and_logits(batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % a.eval_every == 0:
            acc = {}
            with torch.no_grad():
                for t in tasks:
                    o, labels = loss_and_logits(test[t], with_loss=False)
                    pred, lab = o.logits[:, :-1].argmax(-1), labels[:, 1:]
                    ok = ((pred == lab) | (lab == -100)).all(-1).float().mean().item()
                    acc[t.split("/")[1]] = round(ok, 2)
            print(
                f"step {step} loss {out.loss.item():.3f} {acc} {time.time() - t0:.0f}s", flush=True
            )


if __name__ == "__main__":
    main()
