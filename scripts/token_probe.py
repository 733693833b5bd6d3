"""Linear probes of what a model's visual tokens carry (docs/default_model.md, "What limits it").

For the embedded tiny model (or any Oryx folder whose preprocessing fits the synthetic tasks), on
held-out synthetic samples, with a logistic / linear regression fitted on 80% of the items and
scored on the other 20%:

- ``objects``: for every object of ``objects/color`` scenes, its shape, its colour and its centre
  (x, y) from the OryxViT token under its centre, its shape also from the mean of the 2x2 and
  4x4 token blocks around it (what average pooling would keep); and every token's own
  (column, row) (R²);
- ``short_videos``: for ``short_videos/appear_order`` frames, the colour of the object covering
  each LLM visual token (after compressor and projector), or "none";
- ``documents``: for every digit of ``documents/line_code`` pages (256², the font magnified
  ``--documents-scale`` times, on a grid of ``--documents-pitch`` px if given), which digit it is from the OryxViT token under its centre and
  from the mean of the 2x2 and 4x4 token blocks around it (chance 10%).

``--encoder random`` puts a freshly initialised OryxViT of the same shape in place of the
model's (what the tokens carry before any training); ``--encoder PATH`` an OryxViT folder (``oryx
pretrain-vision``).

    OMP_NUM_THREADS=1 python scripts/token_probe.py [--model PATH] [--position-init sincos]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from oryx_mllm.data.synthetic import generate
from oryx_mllm.data.synthetic.common import COLOR_NAMES, COLORS, GLYPH_H, GLYPH_W, SHAPES
from oryx_mllm.errors import OryxError
from oryx_mllm.pipeline import OryxPipeline
from oryx_mllm.processing.image import ImageOptions, preprocess_image
from oryx_mllm.processing.video import VideoOptions, preprocess_video
from oryx_mllm.vision.encoder import SINCOS_SCALE, OryxViT, sincos_position_table

DEFAULT_MODEL = "src/oryx_mllm/assets/oryx-tiny"
TEST_SEED = 2_000_000


def fit(
    x: torch.Tensor, y: torch.Tensor, regression: bool = False, train: float = 0.8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit a logistic (classes ``y``) or linear (targets ``y`` of shape ``[n, k]``) regression on
    the first ``train`` fraction; return its predictions for the rest (class ids or values) and
    their targets. Features are standardised on the training part; L2 1e-3."""
    k = int(train * len(x))
    mu, sd = x[:k].mean(0), x[:k].std(0) + 1e-5
    x = (x - mu) / sd
    outputs = y.shape[1] if regression else int(y.max()) + 1
    w = torch.zeros(x.shape[1], outputs, requires_grad=True)
    b = torch.zeros(outputs, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        out = x[:k] @ w + b
        loss = F.mse_loss(out, y[:k]) if regression else F.cross_entropy(out, y[:k])
        loss = loss + 1e-3 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        out = x[k:] @ w + b
    return (out if regression else out.argmax(1)), y[k:]


def accuracy(pred: torch.Tensor, target: torch.Tensor, skip: int | None = None) -> float:
    """Share of correct class ids, leaving out the items whose target is ``skip``."""
    keep = target != skip if skip is not None else torch.ones_like(target, dtype=torch.bool)
    return float((pred == target)[keep].float().mean())


def r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(1 - ((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum())


@torch.no_grad()
def probe_objects(model, image_opt: ImageOptions, n: int) -> dict[str, float]:
    tower = model.vision_tower
    feats, shape, colour, centre, tok, tok_xy = [], [], [], [], [], []
    pooled: dict[int, list[torch.Tensor]] = {2: [], 4: []}  # k x k block means (k x k pooling)
    for i in range(n):
        s = generate("objects/color", TEST_SEED, i)
        v = preprocess_image(s.media, image_opt, compression=1)
        f, ((h, w),) = tower.encode([v.frames[1]])  # the native-resolution view
        width, height = s.media.size
        grid = f[0].float().reshape(h, w, -1)
        for o in s.meta["objects"]:
            c = min(int(o["x"] / width * w), w - 1)
            r = min(int(o["y"] / height * h), h - 1)
            feats.append(f[0][r * w + c].float())
            for k, out in pooled.items():  # the block the compressor would pool this token into
                block = grid[r // k * k : r // k * k + k, c // k * k : c // k * k + k]
                out.append(block.reshape(-1, grid.shape[-1]).mean(0))
            shape.append(SHAPES.index(o["shape"]))
            colour.append(COLOR_NAMES.index(o["color"]))
            centre.append([o["x"] / width, o["y"] / height])
        tok.append(f[0].float())
        tok_xy += [[(k % w + 0.5) / w, (k // w + 0.5) / h] for k in range(h * w)]
    x = torch.stack(feats)
    every = torch.cat(tok)
    pick = torch.randperm(len(every), generator=torch.Generator().manual_seed(0))[:6000]
    return {
        "objects": len(x),
        "shape": accuracy(*fit(x, torch.tensor(shape))),
        **{
            f"shape_mean_{k}x{k}": accuracy(*fit(torch.stack(v), torch.tensor(shape)))
            for k, v in pooled.items()
        },
        "colour": accuracy(*fit(x, torch.tensor(colour))),
        "centre_xy_r2": r2(*fit(x, torch.tensor(centre), regression=True)),
        "token_xy_r2": r2(*fit(every[pick], torch.tensor(tok_xy)[pick], regression=True)),
    }


@torch.no_grad()
def probe_short_videos(model, video_opt: VideoOptions, n: int, compression: int = 2) -> dict:
    """Per LLM token of ``appear_order`` frames: the colour covering >= 15% of its cell, or none
    (cells covered by less are left out as ambiguous). Frame 0 is empty, so object pixels are
    the pixels that differ from it."""
    xs, ys = [], []
    for i in range(n):
        s = generate("short_videos/appear_order", TEST_SEED, i)
        frames = list(s.media)
        opt = dataclasses.replace(video_opt, max_frames=len(frames), long_max_frames=len(frames))
        v = preprocess_video(frames, opt, compression=compression)
        h, w = v.grids()[0]  # the compressed grid of every frame
        x = model.encode_visual([v])[0]  # [2 + T * (h * (w + 1) + 1), D]
        per_frame = x[1:-1].reshape(len(frames), h * (w + 1) + 1, -1)[:, : h * (w + 1)]
        tokens = per_frame.reshape(len(frames), h, w + 1, -1)[:, :, :w]  # drop row separators
        side = s.meta["size"][0]
        px = [np.asarray(fr, dtype=np.int16) for fr in frames]
        for t in range(len(frames)):
            mask = np.abs(px[t] - px[0]).sum(-1) > 30
            for r in range(h):
                for c in range(w):
                    rows = slice(r * side // h, (r + 1) * side // h)
                    cols = slice(c * side // w, (c + 1) * side // w)
                    cover = mask[rows, cols].mean()
                    if 0 < cover < 0.15:
                        continue
                    label = 0
                    if cover:
                        rgb = px[t][rows, cols][mask[rows, cols]].mean(0)
                        dist = [np.abs(np.array(COLORS[k]) - rgb).sum() for k in COLOR_NAMES]
                        label = 1 + int(np.argmin(dist))
                    xs.append(tokens[t, r, c].float())
                    ys.append(label)
    y = torch.tensor(ys)
    pred, target = fit(torch.stack(xs), y)  # one fit, scored on all tokens and on object tokens
    return {
        "tokens": len(ys),
        "colour_or_none": accuracy(pred, target),
        "colour_on_object_tokens": accuracy(pred, target, skip=0),
        "none_rate": float((y == 0).float().mean()),
    }


@torch.no_grad()
def probe_documents(
    model, image_opt: ImageOptions, n: int, scale: int = 1, pitch: int | None = None
) -> dict[str, float]:
    tower = model.vision_tower
    feats, digit = [], []
    pooled: dict[int, list[torch.Tensor]] = {2: [], 4: []}
    step_x = pitch or GLYPH_W * scale  # a character's advance; on a grid, a line is a cell tall
    half_y = (pitch or GLYPH_H * scale) / 2
    for i in range(n):
        s = generate(
            "documents/line_code", TEST_SEED, i, page_sides=[256], scale=scale, pitch=pitch
        )
        v = preprocess_image(s.media, image_opt, compression=1)
        f, ((h, w),) = tower.encode([v.frames[1]])  # the native-resolution view
        width, height = s.media.size
        grid = f[0].float().reshape(h, w, -1)
        for text, (x, y) in zip(s.meta["lines"], s.meta["line_xy"], strict=True):
            r = min(int((y + half_y) / height * h), h - 1)
            for k, ch in enumerate(text):
                if not ch.isdigit():
                    continue
                c = min(int((x + (k + 0.5) * step_x) / width * w), w - 1)
                feats.append(grid[r, c])
                for b, out in pooled.items():
                    block = grid[r // b * b : r // b * b + b, c // b * b : c // b * b + b]
                    out.append(block.reshape(-1, grid.shape[-1]).mean(0))
                digit.append(int(ch))
    y = torch.tensor(digit)
    return {
        "digits": len(y),
        "digit": accuracy(*fit(torch.stack(feats), y)),
        **{f"digit_mean_{b}x{b}": accuracy(*fit(torch.stack(v), y)) for b, v in pooled.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help="an Oryx model folder")
    p.add_argument(
        "--position-init",
        choices=("model", "sincos"),
        default="model",
        help="sincos: replace the encoder's position table by the sine-cosine initialisation",
    )
    p.add_argument("--objects", type=int, default=400, help="objects/color scenes")
    p.add_argument("--videos", type=int, default=300, help="short_videos/appear_order videos")
    p.add_argument("--documents", type=int, default=100, help="documents/line_code pages")
    p.add_argument("--documents-scale", type=int, default=1, help="the pages' font scale, 1-4")
    p.add_argument(
        "--documents-pitch",
        type=int,
        default=None,
        help="set the pages' text on a grid of this many px per character (line_code pitch=)",
    )
    p.add_argument(
        "--encoder",
        default="model",
        help="model; random (a freshly initialised OryxViT of the model's shape); or an OryxViT"
        " folder (oryx pretrain-vision)",
    )
    p.add_argument(
        "--only",
        choices=("objects", "short_videos", "documents"),
        action="append",
        help="run only these probes (repeatable); default: all",
    )
    a = p.parse_args()
    if min(a.objects, a.videos, a.documents) < 10:
        p.error(
            "--objects, --videos and --documents must be at least 10 (20% are held out for scoring)"
        )
    if not 1 <= a.documents_scale <= 4:
        p.error("--documents-scale must be 1..4")
    torch.manual_seed(0)
    try:
        pipe = OryxPipeline.from_pretrained(a.model)
    except OryxError as e:
        p.error(f"--model {a.model}: {e}")
    model = pipe.model.eval()
    # the model's own preprocessing (processor_config.json), as the pipeline applies it
    image_opt = pipe.processor.image_options or ImageOptions()
    video_opt = dataclasses.replace(
        pipe.processor.video_options or VideoOptions(), long_video=False
    )
    if a.encoder == "random":
        model.vision_tower = OryxViT(model.vision_tower.config).eval()
    elif a.encoder != "model":
        try:
            model.vision_tower = OryxViT.from_pretrained(a.encoder).eval()
        except OryxError as e:
            p.error(f"--encoder {a.encoder}: {e}")
    if a.position_init == "sincos":
        cfg = model.vision_tower.config
        table = sincos_position_table(cfg.position_grid, cfg.hidden_size, SINCOS_SCALE)
        model.vision_tower.load_weights(
            {**model.vision_tower.state_dict(), "pos_embed": table[None]}
        )
    only = set(a.only or ("objects", "short_videos", "documents"))
    if "objects" in only:
        print(
            "objects (OryxViT token at each object's centre):",
            probe_objects(model, image_opt, a.objects),
        )
    if "short_videos" in only:
        print("short videos (LLM tokens):", probe_short_videos(model, video_opt, a.videos))
    if "documents" in only:
        grid = f", pitch {a.documents_pitch} px" if a.documents_pitch else ""
        print(
            f"documents, font x{a.documents_scale}{grid} (OryxViT token at each digit's centre):",
            probe_documents(model, image_opt, a.documents, a.documents_scale, a.documents_pitch),
        )


if __name__ == "__main__":
    main()
