"""Held-out evaluation on the synthetic curriculum: exact-match accuracy per task and per family.

Samples come from test base seeds (>= 1_000_000, see :mod:`oryx_mllm.data.synthetic`), never seen
in training. Every sample is asked through :class:`~oryx_mllm.pipeline.OryxPipeline` (batched
``chat_batch``, greedy), so the model's own ``processor_config.json`` decides preprocessing, as in
the CLI and the server. An answer is correct when it equals the reference after
:func:`normalize_answer`.

Knobs for the paper's experiments (:class:`SyntheticEvalOptions`):

- ``image_size``: force every image to ``S x S`` pixels before the pipeline (native resolution
  vs a fixed-resolution encoder, e.g. 384);
- ``compression``: force the pooling ratio of every input (1, 2, 4, ...);
- ``long_frames``: length ``N`` of the needle videos (default 1,000). The pipeline samples
  ``F = video_options.long_max_frames`` frames uniformly from first to last, so the needle is
  made to last ``needle_span(N, F)`` frames: long enough to be sampled, still ``<= 1/F`` of the
  video; ``long_depth`` fixes the needle's depth (for heatmaps);
- ``marks``: multi-view scenes with (``True``) or without (``False``) coarse-correspondence marks.

Usage::

    from oryx_mllm.eval.synthetic import SyntheticEvalOptions, evaluate, write_report
    report = evaluate(None, SyntheticEvalOptions(per_task=50))     # the embedded default model
    write_report(report, "runs/eval")                              # synthetic_eval.{md,json}

or ``python -m oryx_mllm.eval.synthetic [MODEL_DIR] --out runs/eval --per-task 50``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from oryx_mllm.checks import check_range
from oryx_mllm.compression_policy import check_ratio
from oryx_mllm.data.synthetic import (
    FAMILIES,
    TEST_SEED_MIN,
    SyntheticSample,
    check_seed,
    generate,
    resolve_task_kwargs,
)
from oryx_mllm.errors import ConfigError, OryxError

_PLACEHOLDER = re.compile(r"^\s*<(image|video)>\s*\n?")
_STRIP = " \t\n\r.,;:!?\"'`"


def normalize_answer(text: str) -> str:
    """Lower case, whitespace collapsed, surrounding punctuation and quotes removed."""
    return " ".join(text.strip().lower().split()).strip(_STRIP)


def family_of(task: str) -> str:
    for family, tasks in FAMILIES.items():
        if task in tasks:
            return family
    raise KeyError(task)


def needle_span(num_frames: int, sampled: int) -> int:
    """Frames the needle must last so that ``sampled`` timestamps spread uniformly from the first
    to the last frame always hit it (the gap between picks is at most ``ceil((N-1)/(F-1))``)."""
    if sampled <= 1 or sampled >= num_frames:
        return 1 if sampled >= num_frames else num_frames
    return math.ceil((num_frames - 1) / (sampled - 1)) + 1


@dataclass
class SyntheticEvalOptions:
    """What to evaluate and under which forced conditions (see the module docstring)."""

    tasks: Sequence[str] | None = None  # task or family names; None = all 18 tasks
    per_task: int = 50
    seed: int = TEST_SEED_MIN  # a test base seed
    batch_size: int = 16
    image_size: int | None = None  # force images to S x S pixels
    compression: int | None = None  # force the pooling ratio of every input
    long_frames: int = 1000  # frames of each needle video
    long_depth: float | None = None  # needle depth in [0, 1]; None = uniform
    marks: bool = False  # draw coarse-correspondence marks on multi-view scenes
    max_new_tokens: int = 12
    task_kwargs: dict[str, dict] = field(default_factory=dict)  # extra generator kwargs

    def __post_init__(self) -> None:
        """Raise :class:`ConfigError` (or ``check_ratio``'s error) naming the first bad option."""
        check_seed(self.seed, "test")
        _tasks(self.tasks)
        resolve_task_kwargs(self.task_kwargs)  # unknown task names and generator arguments
        counts = {
            "per_task": self.per_task,
            "batch_size": self.batch_size,
            "long_frames": self.long_frames,
            "max_new_tokens": self.max_new_tokens,
        }
        if self.image_size is not None:
            counts["image_size"] = self.image_size
        for name, value in counts.items():
            check_range(name, value, integer=True, at_least=1)
        if self.compression is not None:
            check_ratio(self.compression)
        if self.long_depth is not None and not 0.0 <= self.long_depth <= 1.0:
            raise ConfigError(f"long_depth must be in [0, 1], got {self.long_depth!r}")


@dataclass
class SampleResult:
    id: str
    task: str
    question: str
    answer: str
    prediction: str
    correct: bool
    visual_tokens: int


def _tasks(names: Sequence[str] | None) -> list[str]:
    """The evaluation tasks that ``names`` (task or family names) stand for, in order."""
    every = [t for family in FAMILIES.values() for t in family]
    if names is None:  # every evaluation task (training-only sessions belong to no family)
        return every
    if isinstance(names, str) or not names:
        raise ConfigError(f"tasks must be a non-empty list of task or family names, got {names!r}")
    out: list[str] = []
    for name in names:
        if name not in (*FAMILIES, *every):
            raise ConfigError(
                f"unknown task or family {name!r}; families: {', '.join(FAMILIES)}; "
                f"tasks: {', '.join(every)}"
            )
        out += [t for t in FAMILIES.get(name, (name,)) if t not in out]
    return out


def _default_kwargs(task: str) -> dict:
    """The page sizes the tiny model reads for the two text tasks (others: generator defaults)."""
    from oryx_mllm.data.build import default_task_kwargs

    return default_task_kwargs(0).get(task, {})


def make_samples(
    task: str, options: SyntheticEvalOptions, long_sampled: int
) -> list[SyntheticSample]:
    """``options.per_task`` held-out samples of ``task``."""
    kw = {**_default_kwargs(task), **options.task_kwargs.get(task, {})}
    family = family_of(task)
    kw.update(options.task_kwargs.get(family, {}))
    if family == "long_videos":
        kw.setdefault("num_frames", options.long_frames)
        kw.setdefault("needle_span", needle_span(int(kw["num_frames"]), long_sampled))
        if options.long_depth is not None:
            kw["depth"] = options.long_depth
    return [generate(task, options.seed, i, **kw) for i in range(options.per_task)]


def _media_kwargs(sample: SyntheticSample, options: SyntheticEvalOptions) -> dict[str, Any]:
    if sample.modality == "image":
        image = sample.media
        if options.image_size is not None:
            s = options.image_size
            image = image.resize((s, s), Image.Resampling.BICUBIC)
        return {"image": image}
    if sample.modality == "video":
        return {"video": list(sample.media)}
    if sample.modality == "video_long":
        return {"video": [sample.media.frame(i) for i in range(len(sample.media))]}
    if sample.modality == "multiview":
        marks = sample.meta["mark_points"] if options.marks else None
        return {"views": list(sample.media), "marks": marks}
    raise ValueError(f"unknown modality {sample.modality!r}")


def evaluate(pipeline=None, options: SyntheticEvalOptions | None = None) -> dict:
    """Accuracy of ``pipeline`` (an :class:`OryxPipeline`, a model folder, or ``None`` for the
    embedded default) on held-out samples. Returns a JSON-able dict::

        {"options": {...}, "overall": acc, "per_family": {family: {"accuracy", "n"}},
         "per_task": {task: {"accuracy", "n", "correct"}}, "samples": [SampleResult dicts],
         "seconds": wall time}
    """
    from oryx_mllm.pipeline import OryxPipeline

    options = options or SyntheticEvalOptions()
    if pipeline is None or isinstance(pipeline, (str, Path)):
        pipeline = OryxPipeline.from_pretrained(pipeline)
    video_options = pipeline.processor.video_options
    long_sampled = video_options.long_max_frames if video_options is not None else 256
    t0 = time.perf_counter()
    results: list[SampleResult] = []
    for task in _tasks(options.tasks):
        samples = make_samples(task, options, long_sampled)
        for start in range(0, len(samples), options.batch_size):
            chunk = samples[start : start + options.batch_size]
            convs = [
                pipeline.messages_for(
                    _PLACEHOLDER.sub("", s.question, count=1),
                    compression=options.compression,
                    **_media_kwargs(s, options),
                )
                for s in chunk
            ]
            answers = pipeline.chat_batch(convs, max_new_tokens=options.max_new_tokens)
            for s, a in zip(chunk, answers, strict=True):
                ok = normalize_answer(a.text) == normalize_answer(s.answer)
                results.append(
                    SampleResult(s.id, task, s.question, s.answer, a.text, ok, a.visual_tokens)
                )
    return summarize(results, options, time.perf_counter() - t0)


def summarize(results: list[SampleResult], options: SyntheticEvalOptions, seconds: float) -> dict:
    per_task: dict[str, dict] = {}
    by_task: dict[str, list[SampleResult]] = defaultdict(list)
    for r in results:
        by_task[r.task].append(r)
    for task, rs in by_task.items():
        correct = sum(r.correct for r in rs)
        per_task[task] = {
            "accuracy": correct / len(rs),
            "n": len(rs),
            "correct": correct,
            "visual_tokens": sum(r.visual_tokens for r in rs) / len(rs),
        }
    per_family: dict[str, dict] = {}
    for family in FAMILIES:
        rs = [r for t, v in by_task.items() if family_of(t) == family for r in v]
        if rs:
            per_family[family] = {"accuracy": sum(r.correct for r in rs) / len(rs), "n": len(rs)}
    overall = sum(r.correct for r in results) / len(results) if results else 0.0
    return {
        "options": dataclasses.asdict(options),
        "overall": overall,
        "per_family": per_family,
        "per_task": per_task,
        "samples": [dataclasses.asdict(r) for r in results],
        "seconds": round(seconds, 1),
    }


def to_markdown(report: dict, title: str = "Synthetic held-out evaluation") -> str:
    """Per-family and per-task accuracy tables."""
    opts = report["options"]
    forced = [
        f"{k}={opts[k]}"
        for k in ("image_size", "compression", "marks", "long_frames", "long_depth")
        if opts.get(k) is not None
    ]
    lines = [
        f"### {title}",
        "",
        f"seed {opts['seed']}, {opts['per_task']} samples per task; {', '.join(forced)}; "
        f"overall {report['overall']:.1%} ({report['seconds']} s)",
        "",
        "| family | accuracy | n |",
        "|---|---:|---:|",
    ]
    for fam, v in report["per_family"].items():
        lines.append(f"| {fam} | {v['accuracy']:.1%} | {v['n']} |")
    lines += ["", "| task | accuracy | n | visual tokens |", "|---|---:|---:|---:|"]
    for task, v in report["per_task"].items():
        lines.append(f"| {task} | {v['accuracy']:.1%} | {v['n']} | {v['visual_tokens']:.0f} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path, name: str = "synthetic_eval") -> Path:
    """Write ``<name>.json`` (everything, per-sample predictions included) and ``<name>.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    path = out / f"{name}.md"
    path.write_text(to_markdown(report))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    from oryx_mllm.data.build import json_object

    p = argparse.ArgumentParser(prog="python -m oryx_mllm.eval.synthetic")
    p.add_argument("model", nargs="?", default=None, help="model folder (default: embedded)")
    p.add_argument("--out", default="runs/eval")
    p.add_argument("--name", default="synthetic_eval")
    p.add_argument("--tasks", nargs="+", default=None, help="task or family names (default: all)")
    p.add_argument("--per-task", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--compression", type=int, default=None)
    p.add_argument("--long-frames", type=int, default=1000)
    p.add_argument("--long-depth", type=float, default=None)
    p.add_argument("--marks", action="store_true")
    p.add_argument(
        "--task-kwargs",
        type=json_object,
        default={},
        help="generator kwargs per task or family as JSON (as python -m oryx_mllm.data.build)",
    )
    p.add_argument("--device", default=None, help="e.g. cuda (default: CPU)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    a = p.parse_args(argv)
    from oryx_mllm.pipeline import OryxPipeline

    try:  # every argument is checked before the model is loaded
        options = SyntheticEvalOptions(
            tasks=a.tasks,
            per_task=a.per_task,
            batch_size=a.batch_size,
            image_size=a.image_size,
            compression=a.compression,
            long_frames=a.long_frames,
            long_depth=a.long_depth,
            marks=a.marks,
            task_kwargs=a.task_kwargs,
        )
        if not a.name or Path(a.name).name != a.name:
            raise ConfigError(f"--name must be a file name without folders, got {a.name!r}")
        out = Path(a.out)
        if any(d.exists() and not d.is_dir() for d in (out, *out.parents)):
            raise ConfigError(f"--out {a.out}: not a folder (a file is in the way)")
        pipeline = OryxPipeline.from_pretrained(a.model, torch_dtype=a.dtype, device_map=a.device)
        report = evaluate(pipeline, options)
    except OryxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report["options"].update(device=a.device or "cpu", dtype=a.dtype or "float32")
    path = write_report(report, a.out, a.name)
    print(to_markdown(report))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
