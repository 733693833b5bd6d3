"""Quick learning probe for the embedded tiny model's recipe (docs/default_model.md).

Trains the tiny architecture of ``recipes/tiny.yaml`` in-process on synthetic samples generated
on the fly (no files), and reports teacher-forced exact-match accuracy of the answer tokens on
held-out samples (test seed 1,000,000) every ``--eval-every`` steps. It is a fast way to compare
learning rates, tasks or curricula for a few hundred steps before committing to a full
``scripts/build_tiny_model.sh`` run; it is not the shipped training path (``oryx train``).

    OMP_NUM_THREADS=1 python scripts/tiny_probe.py --tasks objects/qa_session --eval-tasks objects \
        --steps 600 --lr 1e-3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, IterableDataset
from transformers import AutoConfig, AutoModelForCausalLM

from oryx_mllm.config import OryxConfig
from oryx_mllm.data.build import (
    has_marks,
    long_video_indices,
    long_video_span,
    marked_views,
    page_patch_text,
)
from oryx_mllm.data.synthetic import TEST_SEED_MIN, SyntheticSample, generate, list_tasks
from oryx_mllm.data.synthetic.common import COLOR_NAMES, SHAPES, draw_shape
from oryx_mllm.data.synthetic.task_objects import scene_text
from oryx_mllm.data.tokenizer import build_tokenizer
from oryx_mllm.errors import ConfigError, DataError
from oryx_mllm.model import OryxForConditionalGeneration
from oryx_mllm.pipeline import check_device
from oryx_mllm.processing.chat import ensure_visual_token
from oryx_mllm.processing.options import MarkStyle
from oryx_mllm.train.config import DataSpec
from oryx_mllm.train.patch_labels import patch_text_targets
from oryx_mllm.train.trainer import batch_to_device
from oryx_mllm.train.transform import MicroBatchCollator, TrainTransform
from oryx_mllm.vision import OryxViT, OryxViTConfig

# the scenes --text-scene-steps writes as text: a 4 x 4 grid, one object per cell (the pictures
# that follow may be laid out differently, with --objects-kwargs)
TEXT_GRID = {"cell": 16, "sides": (64,)}
# documents tasks whose generator takes page kwargs (``page_sides``)
PAGE_TASKS = {
    "documents/line_code",
    "documents/key_lookup",
    "documents/line_session",
    "documents/key_session",
}
TINY_IMAGE = {"max_pixels": 102400, "multiple": 32, "lowres_pixels": 4096, "lowres_multiple": 32}
TINY_VIDEO = {
    "fps": 1.0,
    "list_fps": 1.0,
    "max_frames": 16,
    "long_max_frames": 32,
    "min_pixels": 4096,
    "max_pixels": 4096,
    "multiple": 32,
    "long_multiple": 64,
}


def probe_sample(
    task: str, seed: int, index: int, long_frames: int = 32, **kwargs
) -> SyntheticSample:
    """Sample ``index`` of ``task`` (``kwargs`` go to its generator); needle videos get a needle
    long enough to be among the ``long_frames`` frames :func:`record` samples (as
    ``oryx_mllm.data.build`` does)."""
    s = generate(task, seed, index, **kwargs)
    if s.modality == "video_long":
        n = len(s.media)
        s = generate(task, seed, index, num_frames=n, needle_span=long_video_span(n, long_frames))
    return s


def label_image(s: SyntheticSample) -> SyntheticSample:
    """``s`` with its picture replaced by an object-label map (for :class:`OracleTower`): black
    background, every object drawn in grey level ``1 + 6 * shape + colour`` (1..18)."""
    if s.modality != "image" or "objects" not in s.meta:
        return s
    img = Image.new("RGB", s.media.size, (0, 0, 0))
    draw = ImageDraw.Draw(img)
    for o in s.meta["objects"]:
        k = 1 + 6 * SHAPES.index(o["shape"]) + COLOR_NAMES.index(o["color"])
        draw_shape(draw, o["shape"], o["x"], o["y"], o["r"], (k, k, k))
    return dataclasses.replace(s, media=img)


class OracleTower(OryxViT):
    """A stand-in for OryxViT whose patch features are exact: the fraction of each object label
    (shape x colour, from :func:`label_image`) in the patch, times a fixed random embedding.
    It answers "could the LLM side learn the objects tasks if every token said what it shows?"."""

    NUM_LABELS = 1 + len(SHAPES) * len(COLOR_NAMES)

    def __init__(self, config: OryxViTConfig):
        super().__init__(config)
        g = torch.Generator().manual_seed(1234)
        self.register_buffer(
            "label_embed", torch.randn(self.NUM_LABELS, config.hidden_size, generator=g)
        )

    def encode(self, images):
        feats, grids = [], []
        for img in self._check(images):
            # undo the tiny processor's normalisation ((x / 255 - 0.5) / 0.5) to get the grey level
            labels = (
                ((img[0].float() * 0.5 + 0.5) * 255).round().long().clamp(0, self.NUM_LABELS - 1)
            )
            onehot = F.one_hot(labels, self.NUM_LABELS).permute(2, 0, 1).float()[None]
            hist = F.avg_pool2d(onehot, self.config.patch_size, ceil_mode=True)[0]  # [L, h, w]
            grids.append(tuple(hist.shape[1:]))
            feats.append((hist.flatten(1).T @ self.label_embed).to(self.dtype))  # [h*w, C]
        return feats, grids


def with_marks(s: SyntheticSample, style: MarkStyle) -> SyntheticSample:
    """A multi-view sample with its coarse-correspondence marks drawn (other samples as they are)."""
    if s.modality != "multiview":
        return s
    return dataclasses.replace(s, media=marked_views(s, style))


def record(s: SyntheticSample, long_frames: int = 32) -> dict:
    """A synthetic sample as the raw item :class:`TrainTransform` takes (all turns)."""
    if s.modality == "image":
        media = [s.media]
    elif s.modality == "video_long":
        media = [[s.media.frame(i) for i in long_video_indices(len(s.media), long_frames)]]
    else:
        media = [list(s.media)]
    turns = [(s.question, s.answer), *s.turns]
    conv = [
        m for q, a in turns for m in ({"from": "human", "value": q}, {"from": "gpt", "value": a})
    ]
    return {"id": s.id, "modality": s.modality, "media": media, "conversations": conv}


def parse_lines_schedule(text: str, page_kwargs: dict) -> list[tuple[int, int]]:
    """``'STEP:MAX_LINES,...'`` -> ``[(step, max_lines), ...]`` by step, starting at step 1; each
    stage's pages (``page_kwargs`` with its ``max_lines``) are drawn once to check them. Raises
    ValueError or ConfigError naming the problem."""
    schedule = sorted((int(s), int(n)) for s, n in (item.split(":") for item in text.split(",")))
    if schedule[0][0] != 1:
        raise ValueError("the schedule must start at step 1")
    for _, n in schedule:
        generate("documents/line_code", 0, 0, **{**page_kwargs, "max_lines": n})
    return schedule


def question_first(item: dict) -> dict:
    """The first question before its picture ("question\n<image>") instead of after it."""
    first = item["conversations"][0]
    for tag in ("<image>\n", "<video>\n"):
        if first["value"].startswith(tag):
            first["value"] = first["value"].removeprefix(tag) + "\n" + tag.strip()
    return item


ALIGN_POINTS = (np.arange(4) + 0.5) / 4  # 4 x 4 sample points per cell, as fractions


def cell_targets(objects: list[dict], grid: tuple[int, int], min_share: float = 0.2) -> list[int]:
    """Which object fills each cell of an ``h x w`` token grid over the picture (row-major): the
    index into ``objects`` of the one covering most of the cell's 16 sample points (at least
    ``min_share`` of them), else -1. Objects are discs ``x, y, r`` in fractions of the side."""
    h, w = grid
    out = []
    for i in range(h):
        for j in range(w):
            ys, xs = np.meshgrid((i + ALIGN_POINTS) / h, (j + ALIGN_POINTS) / w, indexing="ij")
            best, best_n = -1, min_share * ys.size - 1e-9
            for k, o in enumerate(objects):
                n = int((((xs - o["x"]) ** 2 + (ys - o["y"]) ** 2) < (0.9 * o["r"]) ** 2).sum())
                if n > best_n:
                    best, best_n = k, n
            out.append(best)
    return out


def image_align_targets(item, objects: list[dict], words: dict[str, list[int]]) -> torch.Tensor:
    """``[N, K]`` word ids each visual token of the image ``item`` should predict (-100 where it
    shows no object or is a begin/row/separator token): the colour's and the shape's word ids
    (:func:`align_words`). Token layout as ``OryxProjector.image``."""
    grids = item.grids()
    k = len(next(iter(words.values()))) * 2
    rows = [torch.full((1, k), -100)]  # image_begin
    for g in grids:  # the low-res view, then the native one
        cells = cell_targets(objects, g)
        for i in range(g[0]):
            for j in range(g[1]):
                o = cells[i * g[1] + j]
                ids = words[objects[o]["color"]] + words[objects[o]["shape"]] if o >= 0 else None
                rows.append(torch.tensor([ids]) if ids else torch.full((1, k), -100))
            rows.append(torch.full((1, k), -100))  # end-of-row token
        rows.append(torch.full((1, k), -100))  # separator after lo / end after hi
    t = torch.cat(rows)
    assert len(t) == item.num_tokens(), (len(t), item.num_tokens())
    return t


def page_align_targets(item, sample: SyntheticSample, tok, k: int = 4) -> torch.Tensor:
    """``[N, k]`` for a documents page set on a grid (``line_code(pitch=16)``) at 1x: each
    native-view token under a character should predict that character's token (repeated ``k``
    times, the shape :func:`align_loss` takes); -100 elsewhere (the low-res view included).
    The library's patch labels (``page_patch_text`` + ``patch_text_targets``)."""
    try:
        t = patch_text_targets(item, page_patch_text(sample), tok)
    except DataError as e:
        raise SystemExit(f"--align-weight on documents: {e}") from None
    return t[:, None].repeat(1, k)


def align_words(tok) -> dict[str, list[int]]:
    """Every colour and shape name -> its token ids as a question word (" red") and as an
    answer ("red"); each is one token of the curriculum tokenizer."""
    out = {}
    for w in (*COLOR_NAMES, *SHAPES):
        ids = [tok.encode(" " + w), tok.encode(w)]
        if any(len(i) != 1 for i in ids):
            raise SystemExit(f"--align-weight needs {w!r} to be one token; it is {ids}")
        out[w] = [i[0] for i in ids]
    return out


def align_loss(model, b: dict, embeds: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of the tied LM head on the visual tokens that show an object, against the
    object's colour and shape words (soft target, equal shares): on the projected visual
    embeddings (``hidden`` None) or on the LLM's last hidden states at those positions."""
    is_visual = model.visual_mask(b["input_ids"])
    targets = torch.cat([v.meta["align"] for v in b["visual_inputs"]]).to(embeds.device)
    x = (embeds if hidden is None else hidden)[is_visual]  # [N_visual, D]
    keep = targets[:, 0] >= 0
    if not keep.any():
        return embeds.sum() * 0
    logits = model.language_model.get_output_embeddings()(x[keep]).float()
    logp = logits.log_softmax(-1).gather(1, targets[keep])  # [n, K]
    return -logp.mean()


class Stream(IterableDataset):
    """Endless round-robin over ``tasks``; ``make(task, index)`` builds sample ``index``."""

    def __init__(self, tasks: list[str], make, start: int = 0):
        self.tasks, self.make, self.start = tasks, make, start

    def __iter__(self):
        i = self.start
        while True:
            yield self.make(self.tasks[i % len(self.tasks)], i // len(self.tasks))
            i += 1


def build_model(
    llm_layers: int,
    vit_depth: int,
    visual_token_id: int,
    vit_init: str | None = None,
    oracle: bool = False,
    llm_heads: int = 4,
    llm_hidden: int = 192,
    position_init: str = "normal",
):
    vc = OryxViTConfig(
        hidden_size=128,
        depth=vit_depth,
        num_heads=4,
        mlp_hidden_size=384,
        position_grid=24,
        position_init=position_init,
    )
    lc = AutoConfig.for_model(
        "qwen2",
        vocab_size=768,
        hidden_size=llm_hidden,
        intermediate_size=llm_hidden * 8 // 3,
        num_hidden_layers=llm_layers,
        num_attention_heads=llm_heads,
        num_key_value_heads=llm_heads // 2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=None,
        initializer_range=0.02,
    )
    if oracle:
        tower = OracleTower(vc)
    else:
        tower = OryxViT.from_pretrained(vit_init, config=vc) if vit_init else OryxViT(vc)
    cfg = OryxConfig.from_llm_config(
        lc, vision_config=tower.config, compressor_mid_size=128, visual_token_id=visual_token_id
    )
    llm = AutoModelForCausalLM.from_config(lc)
    return OryxForConditionalGeneration(cfg, language_model=llm, vision_tower=tower)


PARTS: dict[str, float] = {}  # the last batch's loss terms, for the log


def batch_loss(
    model, b: dict, bf16: bool, align_weight: float = 0.0, align_at: str = "input"
) -> torch.Tensor:
    """The training loss of one collated micro-batch (bf16 autocast on the model's device type
    when ``bf16``), plus ``align_weight`` x :func:`align_loss` when it is non-zero."""
    b = batch_to_device(b, model.device)
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
        if not align_weight:
            return model(
                input_ids=b["input_ids"],
                attention_mask=b["attention_mask"],
                visual_inputs=b["visual_inputs"],
                labels=b["labels"],
            ).loss
        embeds = model.embed(b["input_ids"], b["visual_inputs"])
        labels = b["labels"].masked_fill(model.visual_mask(b["input_ids"]), -100)
        out = model.language_model(
            inputs_embeds=embeds,
            attention_mask=b["attention_mask"],
            labels=labels,
            output_hidden_states=align_at == "output",
        )
        hidden = out.hidden_states[-1] if align_at == "output" else None
        aligned = align_loss(model, b, embeds, hidden)
        PARTS["answer"], PARTS["align"] = out.loss.item(), aligned.item()
        is_visual = model.visual_mask(b["input_ids"])  # RMS of visual vs text input vectors
        PARTS["rms_visual"] = embeds[is_visual].float().pow(2).mean().sqrt().item()
        PARTS["rms_text"] = embeds[~is_visual].float().pow(2).mean().sqrt().item()
        return out.loss + align_weight * aligned


def train_step(model, opt, sched, loss: torch.Tensor) -> float:
    """Back-propagate ``loss``, clip the gradient norm to 1, step the optimizer and the schedule;
    returns the loss as a float."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


@torch.no_grad()
def evaluate(model, collate, examples, tokens: dict | None = None) -> dict[str, float]:
    """Teacher-forced exact match: every answer token (and the end token) argmax-correct.
    ``tokens``, if given, is filled with each task's share of answer tokens argmax-correct (a
    partial-credit view for long answers such as document codes)."""
    model.eval()
    hits: dict[str, list[bool]] = {}
    tok_hits: dict[str, list[int]] = {}
    for k in range(0, len(examples), 16):
        chunk = examples[k : k + 16]
        b = batch_to_device(collate([e for _, e in chunk])[0], model.device)
        logits = model(
            input_ids=b["input_ids"],
            attention_mask=b["attention_mask"],
            visual_inputs=b["visual_inputs"],
        ).logits
        pred, labels = logits[:, :-1].argmax(-1), b["labels"][:, 1:]
        ok = ((pred == labels) | (labels == -100)).all(-1).cpu()
        right = ((pred == labels) & (labels != -100)).sum(-1).cpu()
        scored = (labels != -100).sum(-1).cpu()
        for (task, _), o, r, n in zip(
            chunk, ok.tolist(), right.tolist(), scored.tolist(), strict=True
        ):
            hits.setdefault(task, []).append(o)
            tok_hits.setdefault(task, [0, 0])
            tok_hits[task][0] += r
            tok_hits[task][1] += n
    model.train()
    if tokens is not None:
        tokens.update({t: round(r / max(n, 1), 3) for t, (r, n) in tok_hits.items()})
    return {t: round(sum(v) / len(v), 3) for t, v in hits.items()}


def generator_kwargs(p: argparse.ArgumentParser, option: str, text: str, task: str) -> dict:
    """``option``'s JSON object of generator kwargs, tried once on ``task``: a bad value is named
    here, not in a traceback from the first batch."""
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        p.error(f"{option} is not valid JSON: {e}")
    if not isinstance(kwargs, dict):
        p.error(f"{option} must be a JSON object, e.g. {{}}")
    try:
        generate(task, 0, 0, **kwargs)
    except (ConfigError, TypeError, ValueError) as e:
        p.error(f"{option}: {e}")
    return kwargs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="objects/qa_session", help="comma-separated tasks/families")
    p.add_argument("--eval-tasks", default="objects")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--vision-lr", type=float, default=None, help="OryxViT's lr; default: --lr")
    p.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--num-workers", type=int, default=1, help="sample-generating processes")
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds: after 50 steps, size the schedule to what fits at the speed of steps 26-50 "
        "(warmup stays 5%% of --steps; held-out evaluation at 1/4, 1/2, 3/4 and the end)",
    )
    p.add_argument("--json-out", default=None, help="append every evaluation here (JSON lines)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-per-task", type=int, default=24)
    p.add_argument("--image-max-pixels", type=int, default=TINY_IMAGE["max_pixels"])
    p.add_argument(
        "--video-pixels",
        type=int,
        default=TINY_VIDEO["max_pixels"],
        help="frame area of every video and multi-view view (long-video frames too)",
    )
    p.add_argument(
        "--view-pixels",
        type=int,
        default=None,
        help="multi-view view area; default: --video-pixels",
    )
    p.add_argument(
        "--marks",
        type=float,
        default=0.0,
        help="share of training scenes drawn with coarse-correspondence marks (held-out "
        "multi-view tasks are scored both without and with marks: task and task+marks)",
    )
    p.add_argument("--mark-radius-frac", type=float, default=MarkStyle.radius_frac)
    p.add_argument("--video-compression", type=int, default=2, help="short videos: 1, 2 or 4")
    p.add_argument(
        "--image-compression", type=int, default=1, help="images (objects, documents): 1, 2 or 4"
    )
    p.add_argument("--llm-layers", type=int, default=4)
    p.add_argument("--llm-heads", type=int, default=4, help="query heads (KV heads: half)")
    p.add_argument("--llm-hidden", type=int, default=192)
    p.add_argument(
        "--task-kwargs",
        default="{}",
        help='training generators\' kwargs per task, JSON: {"objects/qa_session": {"describe": false}}',
    )
    p.add_argument(
        "--objects-kwargs",
        default="{}",
        help="scene kwargs for every objects task, training and held out, JSON: "
        '{"cell": 16, "sides": [64]} (oryx_mllm.data.synthetic.task_objects.scene)',
    )
    p.add_argument(
        "--documents-kwargs",
        default="{}",
        help="page kwargs for the documents line and key tasks, training and held out, JSON: "
        '{"page_sides": [256]} (oryx_mllm.data.synthetic.task_documents.line_code)',
    )
    p.add_argument("--vit-depth", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vit-init", default=None, help="OryxViT folder (oryx pretrain-vision)")
    p.add_argument(
        "--position-init",
        choices=("normal", "sincos"),
        default="normal",
        help="OryxViT's position table at initialisation (ignored with --vit-init)",
    )
    p.add_argument("--freeze-vit", action="store_true", help="keep the vision tower fixed")
    p.add_argument(
        "--unfreeze-vit-at", type=int, default=None, help="with --freeze-vit: train it from here"
    )
    p.add_argument(
        "--oracle-objects",
        action="store_true",
        help="replace OryxViT by exact per-patch object labels (objects tasks only)",
    )
    p.add_argument(
        "--question-first", action="store_true", help="put the first question before the picture"
    )
    p.add_argument(
        "--align-weight",
        type=float,
        default=0.0,
        help="objects tasks: add this x a loss tying each visual token that shows an object to "
        "the object's colour and shape words through the tied LM head (align_loss); documents "
        "pages on a grid (--documents-kwargs pitch 16): each token to its character",
    )
    p.add_argument(
        "--visual-rms-match",
        action="store_true",
        help="OryxConfig(visual_token_norm='embedding_rms'): every visual token at the RMS of "
        "the word embedding table (the projector's output grows far larger: 7x in the shipped "
        "model, 80x with --align-weight)",
    )
    p.add_argument(
        "--align-at",
        choices=("input", "output"),
        default="input",
        help="align the projected visual embeddings (input) or the LLM's last hidden states there",
    )
    p.add_argument(
        "--align-until",
        type=int,
        default=None,
        help="with --align-weight: the align loss only up to this step (a warm-up), then off",
    )
    p.add_argument(
        "--lines-schedule",
        default=None,
        help="growing documents pages, 'STEP:MAX_LINES,...' (e.g. '1:1,300:4,900:8'): from each "
        "STEP on, training pages have that max_lines; held-out pages keep --documents-kwargs",
    )
    p.add_argument("--warmup-tasks", default=None, help="train only these first (curriculum)")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument(
        "--text-scene-steps",
        type=int,
        default=0,
        help="first train N steps on the objects tasks with a 4 x 4 grid scene written as text "
        "(scripts/text_scene_probe.py's scene in place of <image>), as an LLM pretrained on "
        "text would come to the pictures; held-out scenes are scored as text too (text:...)",
    )
    p.add_argument(
        "--picture-lr",
        type=float,
        default=None,
        help="with --text-scene-steps: the peak lr from the first picture step on "
        "(the schedule's shape is unchanged); default: --lr",
    )
    a = p.parse_args()
    torch.manual_seed(a.seed)

    tasks = [t for n in a.tasks.split(",") for t in list_tasks(n)]
    eval_tasks = [t for n in a.eval_tasks.split(",") for t in list_tasks(n)]
    warm_tasks = [t for n in (a.warmup_tasks or "").split(",") if n for t in list_tasks(n)]
    if a.text_scene_steps and (a.warmup_steps or not all(t.startswith("objects/") for t in tasks)):
        p.error("--text-scene-steps needs objects --tasks and no --warmup-steps")
    if a.oracle_objects and any(
        not t.startswith("objects/") for t in tasks + eval_tasks + warm_tasks
    ):
        p.error("--oracle-objects only has labels for objects tasks")
    if a.llm_heads < 2 or a.llm_heads % 2:
        p.error("--llm-heads must be even (KV heads are half of them)")
    if a.time_budget is not None and a.time_budget <= 0:
        p.error("--time-budget must be a positive number of seconds")
    if a.num_workers < 0:
        p.error("--num-workers must be >= 0")
    if not 0.0 <= a.marks <= 1.0:
        p.error("--marks must be a share between 0 and 1")
    if a.video_compression not in (1, 2, 4):
        p.error("--video-compression must be 1, 2 or 4")
    if a.image_compression not in (1, 2, 4):
        p.error("--image-compression must be 1, 2 or 4")
    try:
        check_device(a.device)
    except ConfigError as e:
        p.error(str(e))
    try:
        task_kwargs = json.loads(a.task_kwargs)
    except json.JSONDecodeError as e:
        p.error(f"--task-kwargs is not valid JSON: {e}")
    if not isinstance(task_kwargs, dict) or not all(
        isinstance(v, dict) for v in task_kwargs.values()
    ):
        p.error('--task-kwargs must map task names to objects, e.g. {"objects/qa_session": {}}')
    objects_kwargs = generator_kwargs(p, "--objects-kwargs", a.objects_kwargs, "objects/color")
    documents_kwargs = generator_kwargs(
        p, "--documents-kwargs", a.documents_kwargs, "documents/line_code"
    )
    for t in sorted(PAGE_TASKS & set(tasks + eval_tasks)):  # the key tasks take fewer kwargs
        try:
            generate(t, 0, 0, **documents_kwargs)
        except (ConfigError, TypeError, ValueError) as e:
            p.error(f"--documents-kwargs for {t}: {e}")
    if a.align_until is not None and (not a.align_weight or a.align_until < 1):
        p.error("--align-until needs --align-weight and a step >= 1")
    schedule: list[tuple[int, int]] = []
    if a.lines_schedule:
        try:
            schedule = parse_lines_schedule(a.lines_schedule, documents_kwargs)
        except (ValueError, ConfigError) as e:
            p.error(f"--lines-schedule: {e}")
        if a.text_scene_steps or a.warmup_steps:
            p.error("--lines-schedule goes without warm-up stages")
    train_pages = dict(documents_kwargs)  # training pages' kwargs (the schedule changes them)
    tok = build_tokenizer()
    visual_id = ensure_visual_token(tok)
    image = {**TINY_IMAGE, "max_pixels": a.image_max_pixels}
    video = {**TINY_VIDEO, "min_pixels": a.video_pixels, "max_pixels": a.video_pixels}
    compression = {
        **DataSpec().compression,
        "video": a.video_compression,
        "image": a.image_compression,
    }
    view = {"min_pixels": a.view_pixels, "max_pixels": a.view_pixels} if a.view_pixels else {}
    try:
        multiview = {"frame": view, "marks": {"radius_frac": a.mark_radius_frac}}
        data = DataSpec(
            max_length=4096, image=image, video=video, compression=compression, multiview=multiview
        )
        transform = TrainTransform(tok, visual_id, data)
    except ConfigError as e:
        p.error(f"--image-max-pixels / --video-pixels / --view-pixels / --mark-radius-frac: {e}")
    mark_style = transform.view_options.marks
    collate = MicroBatchCollator(tok.pad_token_id, 1)
    words = align_words(tok) if a.align_weight else {}

    def example(task: str, seed: int, index: int, marks: bool | None = None, pages=None, **kwargs):
        """One sample as a :class:`TrainTransform` example, with the probe's input variants
        (``marks``: draw them on a scene; ``None``: on the ``--marks`` share of scenes;
        ``pages``: documents kwargs in place of ``--documents-kwargs``)."""
        if task.startswith("objects/"):
            kwargs = {**objects_kwargs, **kwargs}
        if task in PAGE_TASKS:
            kwargs = {**(documents_kwargs if pages is None else pages), **kwargs}
        s = probe_sample(task, seed, index, **kwargs)
        if marks if marks is not None else has_marks(s.id, a.marks):
            s = with_marks(s, mark_style)
        item = record(label_image(s) if a.oracle_objects else s)
        ex = transform(question_first(item) if a.question_first else item)
        if a.align_weight and "pitch" in s.meta:  # a page on a grid: each cell's character
            for v in ex.visual:
                v.meta["align"] = page_align_targets(v, s, tok)
        elif a.align_weight:
            for v in ex.visual:
                objs = s.meta.get("objects", []) if v.modality == "image" else []
                width, height = s.media.size if objs else (1, 1)
                objs = [
                    {**o, "x": o["x"] / width, "y": o["y"] / height, "r": o["r"] / width}
                    for o in objs
                ]
                v.meta["align"] = (
                    image_align_targets(v, objs, words)
                    if objs
                    else torch.full((v.num_tokens(), 4), -100)
                )
        return ex

    def train_example(task: str, index: int):
        return example(task, a.seed, index, pages=train_pages, **task_kwargs.get(task, {}))

    def text_example(task: str, index: int, seed: int | None = None):
        """The objects sample as a text-only conversation: its grid scene written out."""
        kwargs = {**(task_kwargs.get(task, {}) if seed is None else {}), **TEXT_GRID}
        s = probe_sample(task, a.seed if seed is None else seed, index, **kwargs)
        item = record(s)
        scene = scene_text(s.meta["objects"], s.meta["size"][0], TEXT_GRID["cell"])
        first = item["conversations"][0]
        first["value"] = first["value"].replace("<image>\n", scene, 1)
        return transform({**item, "modality": "text", "media": []})

    def make_loader(names: list[str], make=train_example, start: int = 0):
        return DataLoader(
            Stream(names, make, start),
            batch_size=a.batch_size,
            num_workers=a.num_workers,
            collate_fn=lambda b: collate(b)[0],
            prefetch_factor=4 if a.num_workers else None,
        )

    held_out = [
        (t, example(t, TEST_SEED_MIN, i, marks=False))
        for i in range(a.eval_per_task)
        for t in eval_tasks
    ]
    if a.text_scene_steps:  # the same held-out scenes as text: did the text stage learn?
        held_out += [
            (f"text:{t}", text_example(t, i, seed=TEST_SEED_MIN))
            for i in range(a.eval_per_task)
            for t in eval_tasks
        ]
    held_out += [
        (f"{t}+marks", example(t, TEST_SEED_MIN, i, marks=True))
        for i in range(a.eval_per_task)
        for t in eval_tasks
        if t.startswith("multiview/")
    ]

    model = build_model(
        a.llm_layers,
        a.vit_depth,
        visual_id,
        a.vit_init,
        a.oracle_objects,
        llm_heads=a.llm_heads,
        llm_hidden=a.llm_hidden,
        position_init=a.position_init,
    ).to(a.device)
    if a.freeze_vit:
        model.vision_tower.requires_grad_(False)
    if a.visual_rms_match:  # every visual token rescaled to the word embedding table's RMS
        model.config.visual_token_norm = "embedding_rms"
    # OryxViT in its own group (its own lr; a frozen tower's group is empty until unfrozen)
    vit = list(model.vision_tower.parameters())
    rest = [p for n, p in model.named_parameters() if not n.startswith("vision_tower")]
    opt = torch.optim.AdamW(
        [{"params": vit, "lr": a.vision_lr or a.lr}, {"params": rest, "lr": a.lr}],
        weight_decay=0.01,
    )
    warm, total, eval_every = max(1, int(0.05 * a.steps)), a.steps, a.eval_every
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)),
    )

    start, ema, step = time.time(), None, 0
    if a.text_scene_steps:
        batches = iter(make_loader(tasks, text_example))
    else:
        batches = iter(make_loader(warm_tasks if a.warmup_steps else tasks))
    while step < total:
        step += 1
        if step == 26:
            t25 = time.time()  # steps 1-25 include start-up (workers, CUDA kernels): not timed
        if a.time_budget and step == 51:
            per_step = (time.time() - t25) / 25
            # evaluation and start-up take a few percent; keep 10% of the budget for them
            total = max(51, int(50 + (0.9 * a.time_budget - (time.time() - start)) / per_step))
            eval_every = max(1, total // 4)
            print(f"time budget: {per_step:.3f} s/step -> {total} steps", flush=True)
        if a.text_scene_steps and step == a.text_scene_steps + 1:
            batches = iter(make_loader(tasks))
            if a.picture_lr:  # LambdaLR scales base_lrs: the schedule goes on at the new peak
                sched.base_lrs = [a.picture_lr] * len(sched.base_lrs)
            print(f"step {step}: from text scenes to pictures", flush=True)
        if a.warmup_steps and step == a.warmup_steps + 1:
            batches = iter(make_loader(tasks))
        grow = [n for s, n in schedule if s == step]
        if grow:  # new loader, new pages; sample indices go on where the last loader stopped
            train_pages["max_lines"] = grow[0]
            batches = iter(make_loader(tasks, start=(step - 1) * a.batch_size))
            print(f"step {step}: training pages up to {grow[0]} lines", flush=True)
        if a.freeze_vit and step == a.unfreeze_vit_at:
            model.vision_tower.requires_grad_(True)
            print(f"step {step}: OryxViT unfrozen", flush=True)
        b = next(batches)
        align = a.align_weight if a.align_until is None or step <= a.align_until else 0.0
        if a.align_until is not None and step == a.align_until + 1:
            PARTS.clear()  # the loss parts are the align loss's
            print(f"step {step}: align loss off", flush=True)
        loss = train_step(model, opt, sched, batch_loss(model, b, a.bf16, align, a.align_at))
        ema = loss if ema is None else 0.95 * ema + 0.05 * loss
        if step % 25 == 0:
            parts = "".join(f" {k} {v:.3f}" for k, v in PARTS.items())
            print(f"step {step} loss {ema:.3f}{parts} {time.time() - start:.0f}s", flush=True)
        if step % eval_every == 0 or step == total:
            tokens: dict[str, float] = {}
            acc = evaluate(model, collate, held_out, tokens)
            mean = sum(acc.values()) / len(acc)
            print("EVAL", step, json.dumps(acc), f"mean {mean:.3f}", flush=True)
            print("TOKENS", step, json.dumps(tokens), flush=True)
            if a.json_out:
                with open(a.json_out, "a") as f:
                    row = {"step": step, "steps": total, "seconds": round(time.time() - start)}
                    row = {**row, "mean": round(mean, 3), "acc": acc, "tokens": tokens}
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
