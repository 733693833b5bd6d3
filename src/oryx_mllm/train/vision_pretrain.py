"""Dense pretraining of an OryxViT from scratch on synthetic pictures (the tiny model's SigLIP).

The released Oryx initialises its vision tower from SigLIP. A model trained from nothing has no
such encoder, and learning vision only through the LLM's answer tokens is slow: with the tiny
recipe the visual features stayed nearly identical across patches for hundreds of steps
(docs/default_model.md). This stage gives every patch its own target instead: a linear head on
the encoder's output predicts the fraction of the patch's pixels that belong to each class of
:data:`~oryx_mllm.data.synthetic.dense.DENSE_CLASSES` (background, colour+shape, digit), trained
with soft cross-entropy. The head is thrown away; the encoder is saved as an OryxViT folder that
a training recipe loads with ``model.vision_tower: <output_dir>``.

    oryx pretrain-vision recipes/vision/tiny.yaml
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from oryx_mllm.checks import check_mapping, check_range
from oryx_mllm.data.synthetic import TEST_SEED_MIN
from oryx_mllm.data.synthetic.dense import (
    DENSE_CLASSES,
    DENSE_KINDS,
    DensePicture,
    dense_picture,
    dense_stream,
)
from oryx_mllm.errors import ConfigError, TrainingError
from oryx_mllm.processing.image import normalize
from oryx_mllm.train.config import load_typed_yaml, mixed_precision_value
from oryx_mllm.train.precision import resolve_mixed_precision, warn_if_slow_bf16
from oryx_mllm.vision import OryxViT, OryxViTConfig


@dataclass
class VisionPretrainConfig:
    output_dir: str
    vision_config: dict = field(default_factory=dict)  # OryxViTConfig fields
    kinds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DENSE_KINDS, 1.0))
    steps: int = 500
    batch_size: int = 32  # pictures per step
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    foreground_weight: float = 0.0  # extra loss weight of a patch per unit of non-background
    mixed_precision: str = "bf16"  # "bf16" (CPU autocast), "no", or "auto" (bf16 where fast)
    seed: int = 0
    num_workers: int = 1
    log_every: int = 25

    def __post_init__(self) -> None:
        check_mapping("kinds", self.kinds)
        unknown = sorted(set(self.kinds) - set(DENSE_KINDS))
        if unknown:
            raise ConfigError(f"unknown dense picture kinds {unknown}; choose from {DENSE_KINDS}")
        if not self.kinds:
            raise ConfigError(f"kinds must give at least one of {DENSE_KINDS} a weight")
        for kind, weight in self.kinds.items():
            check_range(f"kinds.{kind}", weight, above=0)
        check_range("lr", self.lr, above=0)
        check_range("weight_decay", self.weight_decay, at_least=0)
        check_range("warmup_ratio", self.warmup_ratio, at_least=0, at_most=1)
        check_range("foreground_weight", self.foreground_weight, at_least=0)
        self.mixed_precision = mixed_precision_value(self.mixed_precision)
        if self.mixed_precision not in ("bf16", "no", "auto"):
            raise ConfigError(
                f"mixed_precision must be 'bf16', 'no' or 'auto', not {self.mixed_precision!r}"
            )
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("steps and batch_size must be >= 1")
        try:
            OryxViTConfig(**self.vision_config)
        except TypeError as exc:
            raise ConfigError(f"vision_config: {exc}") from exc


def load_vision_recipe(path: str | Path, overrides: list[str] | None = None):
    return load_typed_yaml(VisionPretrainConfig, path, overrides, "vision recipe")


def patch_targets(labels: np.ndarray, patch: int) -> torch.Tensor:
    """Class map ``[H, W]`` -> per-patch class fractions ``[h*w, K]`` (row-major patches, the
    order of :meth:`OryxViT.encode`; a partial last row/column is zero-padded like the image)."""
    H, W = labels.shape
    h, w = -(-H // patch), -(-W // patch)
    onehot = F.one_hot(torch.from_numpy(labels.astype(np.int64)), len(DENSE_CLASSES))
    onehot = onehot.permute(2, 0, 1).float()  # [K, H, W]
    pad = F.pad(onehot, (0, w * patch - W, 0, h * patch - H))
    pad[0, H:, :] = 1.0  # padding counts as background
    pad[0, :, W:] = 1.0
    frac = F.avg_pool2d(pad[None], patch)[0]  # [K, h, w]
    return frac.flatten(1).T.contiguous()


class _Pictures(IterableDataset):
    def __init__(self, kinds: dict[str, float], seed: int, patch: int):
        self.kinds, self.seed, self.patch = kinds, seed, patch

    def __iter__(self):
        info = get_worker_info()
        shard = (info.id, info.num_workers) if info is not None else (0, 1)
        for pic in dense_stream(self.kinds, self.seed, shard):
            yield normalize(pic.image), patch_targets(pic.labels, self.patch)


def _collate(items):
    return [x for x, _ in items], torch.cat([t for _, t in items])


class DenseHead(nn.Module):
    def __init__(self, hidden: int, classes: int = len(DENSE_CLASSES)):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x))


def dense_loss(
    vit: OryxViT, head: DenseHead, images, targets, foreground_weight: float = 0.0
) -> tuple[torch.Tensor, float]:
    """Soft cross-entropy over all patches (a patch weighs ``1 + foreground_weight * its
    non-background fraction``); also the patch accuracy of the dominant class."""
    feats, _ = vit.encode(images)
    logits = head(torch.cat(feats)).float()  # [T, K]
    weight = 1.0 + foreground_weight * (1.0 - targets[:, 0])  # [T]
    per_patch = -(targets * logits.log_softmax(-1)).sum(-1)
    loss = (weight * per_patch).sum() / weight.sum()
    acc = (logits.argmax(-1) == targets.argmax(-1)).float().mean().item()
    return loss, acc


def evaluate_dense(
    vit: OryxViT, head: DenseHead, kind: str, n: int = 64, seed: int = TEST_SEED_MIN
):
    """Accuracy of the dominant class (and of its colour / shape alone) on ``n`` held-out pictures
    of one kind, over the patches whose dominant class is not background (the informative ones)."""
    vit.eval()
    pairs = []
    with torch.no_grad():
        for i in range(n):
            pic: DensePicture = dense_picture(kind, seed, i)
            t = patch_targets(pic.labels, vit.config.patch_size).argmax(-1)
            feats, _ = vit.encode([normalize(pic.image)])
            pred = head(feats[0]).argmax(-1)
            pairs += [(DENSE_CLASSES[a], DENSE_CLASSES[b]) for a, b in zip(pred, t) if b != 0]
    vit.train()
    if not pairs:
        return {"patches": 0}

    def part(name: str, k: int) -> str:
        words = name.split()
        return words[k] if len(words) == 2 else name

    return {
        "patches": len(pairs),
        "class": round(sum(p == t for p, t in pairs) / len(pairs), 4),
        "colour_or_digit": round(sum(part(p, 0) == part(t, 0) for p, t in pairs) / len(pairs), 4),
        "shape": round(sum(part(p, 1) == part(t, 1) for p, t in pairs) / len(pairs), 4),
    }


def pretrain_vision(cfg: VisionPretrainConfig) -> Path:
    """Train, save ``output_dir`` (OryxViT folder + ``metrics.jsonl`` + ``eval.json``)."""
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    vit = OryxViT(OryxViTConfig(**cfg.vision_config))
    head = DenseHead(vit.config.hidden_size)
    params = [*vit.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, int(cfg.warmup_ratio * cfg.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))
        ),
    )
    loader = DataLoader(
        _Pictures(cfg.kinds, cfg.seed, vit.config.patch_size),
        batch_size=cfg.batch_size,
        collate_fn=_collate,
        num_workers=cfg.num_workers,
        prefetch_factor=4 if cfg.num_workers else None,
    )
    batches = iter(loader)
    bf16 = resolve_mixed_precision(cfg.mixed_precision, on_cuda=False) == "bf16"  # a CPU loop
    warn_if_slow_bf16("bf16" if bf16 else "no", on_cuda=False)
    start = time.perf_counter()
    with open(out / "metrics.jsonl", "w") as log:
        for step in range(1, cfg.steps + 1):
            images, targets = next(batches)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, acc = dense_loss(vit, head, images, targets, cfg.foreground_weight)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss is {loss.item()} at step {step}; stopped without saving the "
                    f"encoder (lower lr, now {cfg.lr:g})"
                )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if step % cfg.log_every == 0 or step == cfg.steps:
                rec = {"step": step, "loss": round(loss.item(), 4), "patch_acc": round(acc, 4),
                       "lr": sched.get_last_lr()[0], "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(json.dumps(rec), flush=True)
    scores = {k: evaluate_dense(vit, head, k) for k in cfg.kinds}
    (out / "eval.json").write_text(json.dumps({"foreground_patch_accuracy": scores}, indent=2))
    vit.save_pretrained(out)
    save_file(head.state_dict(), str(out / "dense_head.safetensors"))  # for diagnostics only
    return out
