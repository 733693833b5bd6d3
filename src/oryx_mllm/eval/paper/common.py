"""Shared pieces of the paper experiments: the run configuration, result tables (markdown +
JSON), batched answering of synthetic samples and scoring."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from oryx_mllm.data.synthetic import SyntheticSample, split_seed
from oryx_mllm.eval.paper.samples import is_correct


@dataclass(frozen=True)
class PaperConfig:
    """Sample counts and grids of one ``oryx eval paper`` run (see :meth:`quick` / :meth:`full`).

    All samples come from held-out synthetic test seeds (``>= 1_000_000``); ``seed_offset`` picks
    which test stream (``split_seed("test", seed_offset)``).
    """

    quick: bool = False
    seed_offset: int = 700
    batch_size: int = 8
    # needle in a haystack (App. C.1, Fig. 10)
    needle_frame_counts: tuple[int, ...] = (100, 200, 400, 800, 1600)
    needle_depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    needle_samples: int = 3  # per (depth, frame count) cell
    needle_oryx_frames: int = 256  # the released models' long-video maximum
    needle_baseline_frames: int = 32
    needle_frame_size: int = 64
    # resolution (Fig. 3, Table 5a); counts are per task
    resolution_samples: int = 12
    resolution_fixed_sides: tuple[int, ...] = (160, 384, 768)
    resolution_max_side: int = 1024  # image cap (sqrt of max_pixels) while comparing policies
    # compression (Table 5b / 9)
    compression_short_samples: int = 8  # per task (4 tasks)
    compression_long_samples: int = 8  # per task (3 tasks)
    compression_long_frames: int | None = None  # None: the model's long-video max
    latency_samples: int = 3
    # coarse correspondences (Table 7b)
    multiview_samples: int = 300  # per task (3 tasks): a gain of a few points needs hundreds
    # efficiency (Table 6, Fig. 11)
    efficiency_images: int = 8
    efficiency_iters: int = 3
    efficiency_resolutions: tuple[int, ...] = (256, 512, 768, 1024, 1280, 1536)

    @property
    def seed(self) -> int:
        return split_seed("test", self.seed_offset)

    @classmethod
    def full(cls) -> PaperConfig:
        return cls()

    @classmethod
    def quick_config(cls) -> PaperConfig:
        """Small counts and grids: the whole suite in a few minutes on a 2-core CPU."""
        return cls(
            quick=True,
            needle_frame_counts=(100, 400, 1600),
            needle_depths=(0.0, 0.5, 1.0),
            needle_samples=1,
            needle_oryx_frames=128,
            resolution_max_side=768,
            resolution_samples=2,
            compression_short_samples=2,
            compression_long_samples=1,
            latency_samples=1,
            multiview_samples=3,
            efficiency_images=4,
            efficiency_iters=1,
            efficiency_resolutions=(256, 512),
        )


@dataclass
class Table:
    """One experiment's result: a table (rows of dicts) plus free-form data for the JSON."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    figure: str | None = None
    seconds: float = 0.0

    def to_markdown(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
            return str(v)

        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in self.columns) + " |")
        lines.append("")
        if self.figure:
            lines += [f"![{self.title}]({Path(self.figure).name})", ""]
        lines += [f"- {n}" for n in self.notes]
        lines.append(f"- wall time: {self.seconds:.1f} s")
        return "\n".join(lines) + "\n"

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{self.name}.md").write_text(self.to_markdown())
        (out / f"{self.name}.json").write_text(json.dumps(asdict(self), indent=2, default=str))


def batched(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass
class Scored:
    """One answered sample: correctness and the cost the pipeline reported."""

    correct: bool
    text: str
    answer: str
    prompt_tokens: int
    visual_tokens: int
    latency_s: float  # the whole batch's latency divided by its size


def answer_samples(
    pipe,
    samples: Sequence[SyntheticSample],
    to_message: Callable[[SyntheticSample], list[dict]],
    batch_size: int,
    max_new_tokens: int = 12,
) -> list[Scored]:
    """Answer ``samples`` in padded batches (greedy) and score them by exact match."""
    out: list[Scored] = []
    for chunk in batched(list(samples), batch_size):
        answers = pipe.chat_batch([to_message(s) for s in chunk], max_new_tokens=max_new_tokens)
        for s, a in zip(chunk, answers):
            out.append(
                Scored(
                    correct=is_correct(a.text, s.answer),
                    text=a.text,
                    answer=s.answer,
                    prompt_tokens=a.prompt_tokens,
                    visual_tokens=a.visual_tokens,
                    latency_s=a.latency_s / len(chunk),
                )
            )
    return out


def accuracy(scored: Sequence[Scored]) -> float:
    return sum(s.correct for s in scored) / len(scored) if scored else float("nan")


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def question_text(sample: SyntheticSample) -> str:
    """The question without its ``<image>``/``<video>`` placeholder line (media go in parts)."""
    q = sample.question
    for tag in ("<image>\n", "<video>\n", "<image>", "<video>"):
        q = q.replace(tag, "")
    return q.strip()


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


@contextmanager
def processor_options(pipe, image: dict | None = None, video: dict | None = None):
    """Temporarily change the pipeline's preprocessing limits (restored on exit), e.g.
    ``processor_options(pipe, video={"long_max_frames": 256})``. Multi-view frames follow the
    video options."""
    from oryx_mllm.processing.options import ImageOptions, MultiViewOptions, VideoOptions

    proc = pipe.processor
    saved = (proc.image_options, proc.video_options, proc.multiview_options)
    try:
        if image:
            proc.image_options = replace(proc.image_options or ImageOptions(), **image)
        if video:
            proc.video_options = replace(proc.video_options or VideoOptions(), **video)
            mv = proc.multiview_options or MultiViewOptions()
            proc.multiview_options = replace(mv, frame=replace(mv.frame, **video))
        yield proc
    finally:
        proc.image_options, proc.video_options, proc.multiview_options = saved


def video_options(pipe):
    from oryx_mllm.processing.options import VideoOptions

    return pipe.processor.video_options or VideoOptions()


def image_options(pipe):
    from oryx_mllm.processing.options import ImageOptions

    return pipe.processor.image_options or ImageOptions()
