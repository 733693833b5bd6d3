"""Training throughput with and without ``data.packing`` on a mixed-length text dataset (CPU).

Trains the embedded model (``src/oryx_mllm/assets/oryx-tiny``) for a few optimiser steps on
synthetic conversations whose lengths spread from a few dozen to a few hundred tokens, once
padded and once packed, alternating the two ``--repeats`` times. Both runs see the same samples
step for step; reported: real (non-pad) tokens/s from the trainer's ``metrics.jsonl`` (training
loop only), and steps/s.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_packing.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path

from oryx_mllm.pipeline import default_model_path
from oryx_mllm.train.config import TrainConfig
from oryx_mllm.train.trainer import train

WORDS = "red green blue cat dog tree house river stone cloud light small large fast slow".split()


def make_texts(root: Path, n: int, max_chars: int, seed: int) -> Path:
    """``n`` text samples; answer lengths log-uniform in [8, max_chars] characters."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        chars = int(8 * (max_chars / 8) ** rng.random())
        answer = ""
        while len(answer) < chars:
            answer += rng.choice(WORDS) + " "
        records.append(
            {
                "id": f"t{i}",
                "conversations": [
                    {"from": "human", "value": f"Describe item {i}."},
                    {"from": "gpt", "value": answer.strip()},
                ],
            }
        )
    path = root / "train.json"
    path.write_text(json.dumps(records))
    return path


def run_once(data: Path, out: Path, packing: bool, args) -> dict:
    cfg = TrainConfig(
        output_dir=str(out),
        model={"path": str(default_model_path())},
        data={
            "train": [str(data)],
            "data_root": str(data.parent),
            "max_length": args.max_length,
            "packing": packing,
            "group_by_length": args.group_by_length,
        },
        stage={"name": "sft", "trainable": ["mm_projector", "language_model"]},
        optim={"lr": 1e-4, "warmup_ratio": 0.0, "schedule": "constant"},
        per_device_batch_size=args.batch,
        max_steps=args.steps,
        save_steps=10**6,
        report_to=["jsonl"],
        progress=False,
        resume=None,
    )
    result = train(cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    return {
        "tokens_per_s": last["tokens_per_s"],
        "losses": result.losses,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--max-chars", type=int, default=900)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--group-by-length", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_texts(tmp, args.samples, args.max_chars, args.seed)
        results: dict[str, list[dict]] = {"padded": [], "packed": []}
        for r in range(args.repeats):
            for name in ("padded", "packed"):
                res = run_once(data, tmp / f"{name}{r}", name == "packed", args)
                results[name].append(res)
                print(f"repeat {r} {name}: {res['tokens_per_s']:.0f} tokens/s")
    summary = {}
    for name, runs in results.items():
        tps = statistics.median(x["tokens_per_s"] for x in runs)
        summary[name] = tps
        print(f"{name}: median {tps:.0f} real tokens/s over {len(runs)} runs")
    same = all(
        abs(a - b) < 1e-3
        for p, q in zip(results["padded"], results["packed"])
        for a, b in zip(p["losses"], q["losses"])
    )
    print(f"packed / padded: {summary['packed'] / summary['padded']:.2f}x; losses equal: {same}")


if __name__ == "__main__":
    main()
