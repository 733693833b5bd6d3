"""Materialise a synthetic curriculum split on disk as Oryx JSON records plus media.

The training engine reads the LLaVA / Oryx JSON format (:mod:`oryx_mllm.train.records`); this
module turns :func:`oryx_mllm.data.synthetic.iter_tasks` streams into that format so that
``oryx train`` can train the embedded tiny model from files, like any other model.

Layout of ``out_dir`` (a few thousand samples take tens of MB)::

    <name>.json            the records, one per sample (``id``, media key, ``conversations``,
                           plus ``task``, ``family``, ``answer`` and, for scenes, ``marks``)
    <name>_images.bin      PNG images (documents, objects), as patch references
    <name>_frames.bin      PNG frames of short and long videos (one reference per video)
    <name>_views.bin       PNG views of multi-view scenes (one reference per scene)
    tokenizer/             the curriculum tokenizer
                           (:func:`oryx_mllm.data.tokenizer.build_tokenizer`)

Policy:

- **Long videos** are stored as ``long_frames`` frames picked uniformly from the ``N``-frame
  needle video (``index = floor(k * N / F)``), with ``needle_span = ceil(N / F)`` so the needle is
  always among the stored frames (the needle task is about finding one frame among many, not
  about the sampler missing it). Records use the ``video_long`` key (4x4 compression) and carry
  ``frame_text``: per stored frame, the needle's colour (a shape card) or digit on the frames
  that show it, ``""`` elsewhere (the patch-label loss's targets,
  :mod:`oryx_mllm.train.patch_labels`).
- **Multi-view scenes**: a deterministic fraction ``marks_fraction`` of the scenes get
  coarse-correspondence marks drawn (:func:`~oryx_mllm.processing.multiview.
  draw_correspondence_marks` on ``meta["mark_points"]``); ``"marks": true`` is recorded. Training on
  both lets evaluation compare "with vs without marks" on one model.
- **Determinism**: samples come from ``(seed, task, index)`` only; PNG encoding is lossless and
  fixed, so the same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from oryx_mllm.checks import check_range
from oryx_mllm.data.synthetic import (
    SyntheticSample,
    check_seed,
    generate,
    iter_tasks,
    list_tasks,
    resolve_task_kwargs,
    split_seed,
)
from oryx_mllm.errors import ConfigError, OryxError
from oryx_mllm.files import atomic_write_all
from oryx_mllm.processing.options import PATCH_SIZE, MarkStyle
from oryx_mllm.train.patchfile import PatchFileWriter

# Small document pages for the tiny model: native-resolution reading with ~11 px glyphs at a
# visual-token cost a 2-core CPU can train on (a 256 px page is 16 x 16 patches).
TINY_PAGE_SIDES: tuple[int, ...] = (256, 288, 320)


@dataclass
class BuildOptions:
    """How samples become files (see the module docstring for the policy)."""

    long_frames: int = 32  # frames stored per long video (= what the model sees)
    marks_fraction: float = 0.5  # share of multi-view scenes drawn with correspondence marks
    # how the marks are drawn: must be the trained model's ``data.multiview.marks`` (the style
    # its processor then draws at inference)
    mark_style: MarkStyle = field(default_factory=MarkStyle)
    task_kwargs: dict[str, dict] = field(default_factory=dict)  # per task/family generator kwargs


def family_of(task: str) -> str:
    """``"objects/count"`` -> ``"objects"``; multi-view tasks belong to ``multiview_scenes``."""
    head = task.split("/", 1)[0]
    return "multiview_scenes" if head == "multiview" else head


def png_bytes(image: Image.Image) -> bytes:
    """Lossless, at zlib level 1: on the curriculum's long-video frames 4x faster to encode than
    level 6 (0.48 against 2.0 ms a frame; level 6 was about 85% of the data build), as fast to
    decode, for files 17% larger (the tiny model's data: 4.9 GB against 4.2 GB)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def long_video_indices(num_frames: int, sampled: int) -> list[int]:
    """``sampled`` frame indices spread uniformly over ``num_frames`` (``floor(k * N / F)``);
    consecutive picks are at most ``ceil(N / F)`` apart."""
    sampled = min(sampled, num_frames)
    return [int(k * num_frames // sampled) for k in range(sampled)]


def long_video_span(num_frames: int, sampled: int) -> int:
    """The smallest needle span that :func:`long_video_indices` can never miss."""
    return max(1, math.ceil(num_frames / sampled))


def has_marks(sample_id: str, fraction: float) -> bool:
    """Deterministic per-sample coin flip (by the sample's index) for drawing marks."""
    if fraction <= 0:
        return False
    if fraction >= 1:
        return True
    index = int(sample_id.rsplit(":", 1)[1])
    rng = np.random.default_rng(np.random.SeedSequence([index, 0x3A12C]))
    return bool(rng.random() < fraction)


def marked_views(sample: SyntheticSample, style: MarkStyle | None = None) -> list[Image.Image]:
    """The scene's views with coarse-correspondence marks drawn on them."""
    from oryx_mllm.processing.multiview import draw_correspondence_marks

    return draw_correspondence_marks(sample.media, points=sample.meta["mark_points"], style=style)


def _conversation(sample: SyntheticSample) -> list[dict]:
    """The sample's question and answer, then its follow-up turns (multi-turn training tasks)."""
    turns = [(sample.question, sample.answer), *sample.turns]
    return [
        m for q, a in turns for m in ({"from": "human", "value": q}, {"from": "gpt", "value": a})
    ]


def page_patch_text(sample: SyntheticSample) -> list[str]:
    """The character in each ``pitch`` cell of a ``line_code(pitch=...)`` page, one string per
    row of cells (``" "``: blank): the record's ``patch_text`` when a cell is one OryxViT patch
    (:mod:`oryx_mllm.train.patch_labels`)."""
    pitch, (width, height) = sample.meta["pitch"], sample.meta["size"]
    grid = [[" "] * (width // pitch) for _ in range(height // pitch)]
    for text, (x, y) in zip(sample.meta["lines"], sample.meta["line_xy"], strict=True):
        for j, ch in enumerate(text):
            if ch != " ":
                grid[y // pitch][x // pitch + j] = ch
    return ["".join(row) for row in grid]


# The pages of recipes/tiny.yaml's documents stage (scripts/build_tiny_model.sh passes the same
# as --task-kwargs for documents/line_code): 4 lines of digit codes, one character per 16 px patch,
# 256 px wide and 64 or 96 px high, each record with its patch_text.
GRID_PAGE_KWARGS = {"pitch": PATCH_SIZE, "fit": 32, "max_lines": 4, "page_sides": [256]}


def needle_frame_text(video, indices: Sequence[int]) -> list[str]:
    """What each stored frame ``video.frame(i)`` (``i`` in ``indices``) of a needle video shows:
    the card's colour (a shape) or digit on the needle frames, ``""`` on the haystack."""
    word = video.needle["color"] if video.needle["kind"] == "shape" else video.needle["digit"]
    needle = set(video.needle_frames)
    return [word if i in needle else "" for i in indices]


def default_task_kwargs(long_frames: int) -> dict[str, dict]:
    """Generator kwargs of the tiny curriculum: small pages for the two text-reading tasks."""
    del long_frames  # long videos get their span per sample (it depends on N)
    return {
        "documents/line_code": {"page_sides": TINY_PAGE_SIDES},
        "documents/key_lookup": {"page_sides": TINY_PAGE_SIDES},
        "documents/line_session": {"page_sides": TINY_PAGE_SIDES},
        "documents/key_session": {"page_sides": TINY_PAGE_SIDES},
    }


def build_split(
    out_dir: str | Path,
    counts: dict[str, int],
    *,
    split: str = "train",
    seed: int | None = None,
    name: str | None = None,
    options: BuildOptions | None = None,
) -> Path:
    """Write ``counts`` samples (task or family name -> count) of ``split`` to ``out_dir``.

    ``seed`` defaults to the split's first base seed (0 for train, 1_000_000 for test) and is
    checked against the split convention. Returns the path of the JSON file (``<name>.json``,
    ``name`` defaulting to ``split``).

    Every argument is checked (:class:`ConfigError`) before any file is touched; the files are
    written under temporary names in ``out_dir`` and moved over the old ones only at the end,
    so a failed build leaves a previous split in ``out_dir`` intact.
    """
    opt = options or BuildOptions()
    seed = split_seed(split) if seed is None else seed
    check_seed(seed, split)
    name = name or split
    check_name(name)
    check_counts(counts)
    check_range("long_frames", opt.long_frames, integer=True, at_least=1)
    check_range("marks_fraction", opt.marks_fraction, at_least=0, at_most=1)
    task_kwargs = resolve_task_kwargs({**default_task_kwargs(opt.long_frames), **opt.task_kwargs})
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir {str(out)!r} exists and is not a directory")

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _build_into(out, name, counts, seed, task_kwargs, opt)
    except BaseException:
        if created and not any(out.iterdir()):  # a failed first build leaves no empty folder
            out.rmdir()
        raise


def _build_into(out: Path, name: str, counts, seed, task_kwargs, opt: BuildOptions) -> Path:
    """Generate into a staging folder in ``out``, then move the files in (the JSON last)."""
    files = [f"{name}_{s}.bin" for s in ("images", "frames", "views")] + [f"{name}.json"]
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=out) as staging:
        staged = {f: Path(staging) / f for f in files}
        writers = {
            s: PatchFileWriter(staged[f"{name}_{s}.bin"], ref_path=f"{name}_{s}.bin")
            for s in ("images", "frames", "views")
        }
        records = []
        try:
            for sample in _samples(counts, seed, task_kwargs, opt.long_frames):
                records.append(_record(sample, writers, opt))
        finally:
            for w in writers.values():
                w.close()
        staged[f"{name}.json"].write_text(json.dumps(records) + "\n")
        # the JSON goes last: it never points into patch files older than itself
        atomic_write_all({out / f: functools.partial(os.replace, staged[f]) for f in files})
    return out / f"{name}.json"


def check_name(name: str) -> None:
    """``name`` is a plain file stem (no folder part)."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or os.sep in name:
        raise ConfigError(f"name must be a file stem without a folder part, got {name!r}")


def check_counts(counts: Mapping[str, int]) -> None:
    """``counts`` maps known task or family names to integers >= 0."""
    if not isinstance(counts, Mapping):
        raise ConfigError(f"counts must map task or family names to counts, got {counts!r}")
    for key, count in counts.items():
        list_tasks(key)
        check_range(f"count of {key!r}", count, integer=True, at_least=0)


def _samples(counts, seed, task_kwargs, long_frames):
    """The split's samples; long videos get ``num_frames`` drawn here and a matching span.

    ``task_kwargs`` is per task (:func:`~oryx_mllm.data.synthetic.resolve_task_kwargs`), so a
    regenerated sample gets the same kwargs as the first draw, family-level ones included.
    """
    for sample in iter_tasks(counts, seed, task_kwargs=task_kwargs):
        if sample.modality == "video_long":
            n = len(sample.media)
            span = long_video_span(n, long_frames)
            if sample.media.needle_span < span:  # regenerate with a span that survives
                _, _, index = sample.id.rsplit(":", 2)
                kw = {**task_kwargs.get(sample.task, {}), "num_frames": n, "needle_span": span}
                sample = generate(sample.task, seed, int(index), **kw)
        yield sample


def _record(sample: SyntheticSample, writers: dict[str, PatchFileWriter], opt: BuildOptions):
    rec: dict = {"id": sample.id}
    extra: dict = {"task": sample.task, "family": family_of(sample.task), "answer": sample.answer}
    if sample.modality == "text":
        pass  # the scene is in the question; the record has no media key
    elif sample.modality == "image":
        rec["image"] = writers["images"].append(png_bytes(sample.media))
        if sample.meta.get("pitch") == PATCH_SIZE:  # a page on the patch grid: name each cell
            rec["patch_text"] = page_patch_text(sample)
    elif sample.modality == "video":
        rec["video"] = writers["frames"].append([png_bytes(f) for f in sample.media])
    elif sample.modality == "video_long":
        idx = long_video_indices(len(sample.media), opt.long_frames)
        rec["video_long"] = writers["frames"].append(
            [png_bytes(sample.media.frame(i)) for i in idx]
        )
        rec["frame_text"] = needle_frame_text(sample.media, idx)
        extra["num_frames"] = len(sample.media)
    elif sample.modality == "multiview":
        marks = has_marks(sample.id, opt.marks_fraction)
        views = marked_views(sample, opt.mark_style) if marks else sample.media
        rec["views"] = [writers["views"].append([png_bytes(v) for v in views])]
        extra["marks"] = marks
    else:
        raise ValueError(f"unknown modality {sample.modality!r}")
    rec["conversations"] = _conversation(sample)
    rec.update(extra)
    return rec


def save_tokenizer(out_dir: str | Path) -> Path:
    """The curriculum tokenizer (deterministic) in ``out_dir/tokenizer``."""
    from oryx_mllm.data.tokenizer import build_tokenizer

    path = Path(out_dir) / "tokenizer"
    build_tokenizer().save_pretrained(path)
    return path


def json_object(text: str) -> dict[str, dict]:
    """An argparse type: a JSON object mapping names to objects (per-task generator kwargs)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e})") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError('expected {"task or family": {kwarg: value, ...}, ...}')
    return value


def parse_counts(items: Sequence[str]) -> dict[str, int]:
    """``["objects=800", "documents/line_code=200"]`` -> ``{"objects": 800, ...}``."""
    out: dict[str, int] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key or not value:
            raise ConfigError(f"--counts {item!r} is not of the form task_or_family=N")
        try:
            out[key] = int(value)
        except ValueError:
            raise ConfigError(f"--counts {item!r}: N must be an integer, got {value!r}") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m oryx_mllm.data.build", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("out_dir")
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--name", default=None, help="file stem (default: the split)")
    parser.add_argument("--counts", nargs="+", required=True, help="task_or_family=N ...")
    parser.add_argument("--long-frames", type=int, default=32)
    parser.add_argument("--marks-fraction", type=float, default=0.5)
    parser.add_argument(
        "--mark-radius-frac",
        type=float,
        default=MarkStyle.radius_frac,
        help="mark disc radius as a share of a view's short side (the recipe's "
        "data.multiview.marks.radius_frac)",
    )
    parser.add_argument("--tokenizer", action="store_true", help="also write out_dir/tokenizer")
    parser.add_argument(
        "--task-kwargs",
        type=json_object,
        default={},
        help='generator kwargs per task or family as JSON, e.g. \'{"documents/line_code": '
        '{"pitch": 16, "fit": 32, "max_lines": 4, "page_sides": [256]}}\'',
    )
    args = parser.parse_args(argv)
    try:
        style = MarkStyle(radius_frac=args.mark_radius_frac)
    except ConfigError as e:
        parser.error(f"--mark-radius-frac: {e}")
    opt = BuildOptions(
        long_frames=args.long_frames,
        marks_fraction=args.marks_fraction,
        mark_style=style,
        task_kwargs=args.task_kwargs,
    )
    try:
        path = build_split(
            args.out_dir,
            parse_counts(args.counts),
            split=args.split,
            seed=args.seed,
            name=args.name,
            options=opt,
        )
    except OryxError as e:
        parser.error(str(e))
    n = len(json.loads(path.read_text()))
    print(f"wrote {n} records to {path}")
    if args.tokenizer:
        print(f"wrote tokenizer to {save_tokenizer(args.out_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
