"""CPU training-step time of the tiny recipe's model with the LLM's ``sdpa`` vs ``eager`` attention.

One process, one torch thread, bf16 autocast; the model of ``recipes/tiny.yaml`` (random init) and
one micro-batch of 8 samples of a synthetic task, forward + backward + AdamW, median of 6 steps
after 2 warm-up steps. Both implementations start from the same weights (the first losses agree).

    OMP_NUM_THREADS=1 python benchmarks/train_step_attention.py --tasks objects/qa_session,documents/line_session
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from oryx_mllm.data.synthetic import generate
from oryx_mllm.data.tokenizer import build_tokenizer
from oryx_mllm.processing.chat import ensure_visual_token
from oryx_mllm.train.config import DataSpec
from oryx_mllm.train.transform import MicroBatchCollator, TrainTransform

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import tiny_probe  # noqa: E402  (the tiny recipe's model and preprocessing)


def time_steps(impl: str, batch: dict, visual_id: int, steps: int = 6) -> tuple[float, float]:
    original = AutoModelForCausalLM.from_config
    AutoModelForCausalLM.from_config = lambda c, **k: original(c, attn_implementation=impl, **k)
    try:
        torch.manual_seed(0)
        model = tiny_probe.build_model(4, 4, visual_id)
    finally:
        AutoModelForCausalLM.from_config = original
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> float:
        loss = tiny_probe.batch_loss(model, batch, bf16=True)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    first = step()
    step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return first, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tasks", default="objects/qa_session,short_videos/what_when,documents/line_session"
    )
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = build_tokenizer()
    visual_id = ensure_visual_token(tok)
    data = DataSpec(max_length=4096, image=tiny_probe.TINY_IMAGE, video=tiny_probe.TINY_VIDEO)
    transform, collate = (
        TrainTransform(tok, visual_id, data),
        MicroBatchCollator(tok.pad_token_id, 1),
    )
    for task in args.tasks.split(","):
        batch = collate([transform(tiny_probe.record(generate(task, 0, i))) for i in range(8)])[0]
        for _ in range(args.repeats):
            for impl in ("sdpa", "eager"):
                first, median = time_steps(impl, batch, visual_id)
                print(json.dumps({"task": task, "batch_shape": list(batch["input_ids"].shape),
                                  "attn_implementation": impl, "first_loss": round(first, 4),
                                  "median_step_s": round(median, 3)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
