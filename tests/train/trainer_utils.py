"""A tiny mixed image/video dataset on disk and a matching tiny model, for trainer tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for oryx_tiny

from oryx_tiny import byte_tokenizer, tiny_model  # noqa: E402

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 220),
    "white": (240, 240, 240),
}

# small views so each step is cheap: 64x64 images (+32x32 low-res view), 64x64 video frames
DATA_OPTIONS = {
    "image": {"lowres_pixels": 32 * 32},
    "video": {"min_pixels": 64 * 64, "max_pixels": 64 * 64, "multiple": 64, "long_multiple": 64},
    "max_length": 512,
}


def make_dataset(root: Path, n: int = 20, seed: int = 0) -> Path:
    """``n`` samples alternating image / video; the answer is the dominant colour."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    records = []
    for i in range(n):
        colour = names[i % len(names)]
        rgb = np.array(COLOURS[colour], dtype=np.int16)
        if i % 2 == 0:
            arr = np.clip(rgb + rng.integers(-20, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / f"img{i}.png")
            records.append(
                {
                    "id": f"img{i}",
                    "image": f"img{i}.png",
                    "conversations": [
                        {"from": "human", "value": "<image>\nWhat colour is it?"},
                        {"from": "gpt", "value": colour},
                    ],
                }
            )
        else:
            frames = root / f"vid{i}"
            frames.mkdir()
            for t in range(3):
                arr = np.clip(rgb + rng.integers(-20, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(frames / f"{t:03d}.png")
            records.append(
                {
                    "id": f"vid{i}",
                    "video": f"vid{i}",
                    "conversations": [
                        {"from": "human", "value": "<video>\nWhich colour is shown?"},
                        {"from": "gpt", "value": colour},
                    ],
                }
            )
    path = root / "train.json"
    path.write_text(json.dumps(records))
    return path


def make_text_dataset(root: Path, n: int = 8) -> Path:
    """``n`` text-only samples (no media): a colour name answered with its RGB triple."""
    records = [
        {
            "id": f"text{i}",
            "conversations": [
                {"from": "human", "value": f"RGB of {name}?"},
                {"from": "gpt", "value": str(COLOURS[name])},
            ],
        }
        for i, name in enumerate(list(COLOURS) * (n // len(COLOURS) + 1))
    ][:n]
    path = root / "text.json"
    path.write_text(json.dumps(records))
    return path


def save_tiny_model(folder: Path, kind: str = "qwen2") -> Path:
    tok = byte_tokenizer()
    model = tiny_model(kind, tok)
    model.save_pretrained(folder, tokenizer=tok)
    return folder


def recipe_dict(model_dir: Path, train_json: Path, out: Path, **over) -> dict:
    base = {
        "output_dir": str(out),
        "model": {"path": str(model_dir)},
        "data": {"train": [str(train_json)], "data_root": str(train_json.parent), **DATA_OPTIONS},
        "stage": {
            "name": "sft",
            "trainable": ["vision_resampler", "mm_projector", "language_model"],
        },
        "optim": {"lr": 3e-3, "warmup_ratio": 0.0, "schedule": "constant"},
        "per_device_batch_size": 4,
        "max_steps": 6,
        "save_steps": 2,
        "report_to": ["jsonl"],
        "progress": False,
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return base
