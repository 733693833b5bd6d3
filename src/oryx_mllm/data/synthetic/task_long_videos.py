"""Long videos: the video needle-in-a-haystack task (paper Sec. 3.2.1 and Appendix C.1).

What this family tests: **retrieval of one relevant frame from hundreds to thousands of
irrelevant ones**, which is what the Dynamic Compressor's strong (4x4) pooling path has to
preserve. The haystack is a slowly drifting colour gradient with smooth low-frequency noise (no
shapes, no digits, muted colours); exactly one needle (by default a single frame) at a chosen
depth in ``[0, 1]`` shows a white card with a large digit, or a coloured shape.

Frames are rendered lazily by :class:`NeedleVideo` (``len()``, ``frame(i)``, ``timestamps``), so a
2000-frame video costs a few integers of memory until frames are requested. Rendering one 64 px
frame takes ~0.1 ms.

Tasks (all ``modality="video_long"``):

- ``long_videos/digit``: "What digit appears in the video?" -> ``"0"``-``"9"``.
- ``long_videos/shape``: "What shape appears in the video?" -> circle/square/triangle.
- ``long_videos/color``: "What colour is the shape that appears in the video?" -> colour.

Parameters (pass as keyword arguments through :func:`~oryx_mllm.data.synthetic.iter_task`):
``num_frames`` (default: uniform in [100, 1600] like the paper's 0.1k-1.6k grid), ``depth``
(default: uniform in [0, 1]), ``frame_size`` (default: 64, 96 or 128) and ``needle_span``
(frames showing the needle, default 1). The needle starts at frame
``round(depth * (num_frames - needle_span))``. A consumer that subsamples ``F`` of ``N`` frames
uniformly keeps the needle only if ``needle_span >= ceil(N / F)``; pass a larger span for
training data meant to be subsampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from oryx_mllm.data.synthetic.common import (
    COLOR_NAMES,
    COLORS,
    SHAPES,
    SyntheticSample,
    big_text,
    choice,
    draw_shape,
    make_question,
    sample_id,
)

FRAME_SIDES: tuple[int, ...] = (64, 96, 128)
FPS = 1.0  # the paper samples 1 frame per second
NOISE_KEY_EVERY = 16  # frames between independent noise fields (linear blend in between)
NOISE_GRID = 8  # the noise is drawn on an 8x8 grid and upsampled: smooth, cheap

DIGIT_TEMPLATES = (
    "What digit appears in the video?",
    "One frame of the video shows a digit. Which digit is it?",
    "Which number is shown in the video?",
)
SHAPE_TEMPLATES = (
    "What shape appears in the video?",
    "One frame of the video shows a shape. Which shape is it?",
)
COLOR_TEMPLATES = (
    "What colour is the shape that appears in the video?",
    "One frame of the video shows a coloured shape. What colour is it?",
)


@dataclass
class NeedleVideo:
    """A lazily rendered haystack video with one needle. Everything is derived from integers, so
    ``frame(i)`` is deterministic and needs no stored pixels.

    ``needle`` is ``{"kind": "digit", "digit": "7"}`` or ``{"kind": "shape", "shape": ...,
    "color": ...}``.
    """

    num_frames: int
    size: int
    needle_index: int
    needle: dict
    noise_seed: int
    base: tuple[float, float, float]  # mean RGB of the haystack
    drift_period: float  # frames per full cycle of the colour drift
    drift_phase: tuple[float, float, float]
    needle_span: int = 1
    depth: float = 0.0  # the requested depth; needle_index is its rounding
    fps: float = FPS

    def __len__(self) -> int:
        return self.num_frames

    @property
    def timestamps(self) -> list[float]:
        return [i / self.fps for i in range(self.num_frames)]

    @property
    def needle_frames(self) -> list[int]:
        return list(range(self.needle_index, self.needle_index + self.needle_span))

    def __getitem__(self, index: int) -> Image.Image:
        return self.frame(index)

    def __iter__(self):
        return (self.frame(i) for i in range(self.num_frames))

    def _noise(self, key: int) -> np.ndarray:
        rng = np.random.default_rng([self.noise_seed, key])
        return rng.normal(0.0, 1.0, size=(NOISE_GRID, NOISE_GRID, 3)).astype(np.float32)

    def haystack(self, index: int) -> Image.Image:
        """Frame ``index`` without the needle."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} out of range for {self.num_frames} frames")
        k, frac = divmod(index, NOISE_KEY_EVERY)
        frac /= NOISE_KEY_EVERY
        noise = (1 - frac) * self._noise(k) + frac * self._noise(k + 1)
        angle = 2 * np.pi * index / self.drift_period
        color = np.array(self.base) + 35.0 * np.sin(angle + np.array(self.drift_phase))
        small = np.clip(color + 18.0 * noise, 0, 255).astype(np.uint8)
        img = Image.fromarray(small, "RGB").resize(
            (self.size, self.size), Image.Resampling.BILINEAR
        )
        # A vertical brightness gradient, drifting with the same slow clock.
        ramp = np.linspace(-20, 20, self.size, dtype=np.float32) * np.cos(angle)
        arr = np.asarray(img, dtype=np.float32) + ramp[:, None, None]
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")

    def frame(self, index: int) -> Image.Image:
        img = self.haystack(index)
        if self.needle_index <= index < self.needle_index + self.needle_span:
            self._draw_needle(img)
        return img

    def _draw_needle(self, img: Image.Image) -> None:
        s = self.size
        draw = ImageDraw.Draw(img)
        m = s // 8  # a white card covering the central 3/4 of the frame
        draw.rectangle([m, m, s - m - 1, s - m - 1], fill=(250, 250, 250), outline=(20, 20, 20))
        if self.needle["kind"] == "digit":
            scale = max(1, (s - 2 * m) * 3 // 4 // 11)
            glyph = big_text(self.needle["digit"], scale, fill=(10, 10, 10))
            gw, gh = glyph.size
            img.paste(glyph, ((s - gw) // 2, (s - gh) // 2), glyph)
        else:
            r = (s - 2 * m) * 0.38
            draw_shape(draw, self.needle["shape"], s / 2, s / 2, r, COLORS[self.needle["color"]])


def make_needle_video(
    rng: np.random.Generator,
    needle: dict,
    num_frames: int | None = None,
    depth: float | None = None,
    frame_size: int | None = None,
    needle_span: int = 1,
) -> NeedleVideo:
    """Draw the haystack parameters from ``rng`` and place ``needle`` at ``depth``."""
    num_frames = int(rng.integers(100, 1601)) if num_frames is None else int(num_frames)
    depth = float(rng.uniform(0.0, 1.0)) if depth is None else float(depth)
    size = choice(rng, FRAME_SIDES) if frame_size is None else int(frame_size)
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    if not 1 <= needle_span <= num_frames:
        raise ValueError(f"needle_span must be in [1, num_frames], got {needle_span}")
    return NeedleVideo(
        num_frames=num_frames,
        size=size,
        needle_index=int(round(depth * (num_frames - needle_span))),
        needle=needle,
        noise_seed=int(rng.integers(2**62)),
        base=tuple(float(v) for v in rng.uniform(70, 170, size=3)),
        drift_period=float(rng.uniform(200, 1000)),
        drift_phase=tuple(float(v) for v in rng.uniform(0, 2 * np.pi, size=3)),
        needle_span=needle_span,
        depth=depth,
    )


def _sample(task, seed, index, video: NeedleVideo, question: str, answer: str) -> SyntheticSample:
    return SyntheticSample(
        id=sample_id(task, seed, index),
        task=task,
        modality="video_long",
        media=video,
        question=question,
        answer=answer,
        meta={
            "num_frames": video.num_frames,
            "needle_index": video.needle_index,
            "needle_frames": video.needle_frames,
            "depth": video.depth,
            "needle": dict(video.needle),
            "size": (video.size, video.size),
        },
    )


def digit(rng: np.random.Generator, seed: int, index: int, **video_kw) -> SyntheticSample:
    """A single large digit on a white card hidden in the haystack."""
    d = str(int(rng.integers(10)))
    video = make_needle_video(rng, {"kind": "digit", "digit": d}, **video_kw)
    q = make_question(rng, "<video>", DIGIT_TEMPLATES)
    return _sample("long_videos/digit", seed, index, video, q, d)


def shape(rng: np.random.Generator, seed: int, index: int, **video_kw) -> SyntheticSample:
    """A single coloured shape on a white card; ask for the shape."""
    needle = {"kind": "shape", "shape": choice(rng, SHAPES), "color": choice(rng, COLOR_NAMES)}
    video = make_needle_video(rng, needle, **video_kw)
    q = make_question(rng, "<video>", SHAPE_TEMPLATES)
    return _sample("long_videos/shape", seed, index, video, q, needle["shape"])


def color(rng: np.random.Generator, seed: int, index: int, **video_kw) -> SyntheticSample:
    """A single coloured shape on a white card; ask for its colour."""
    needle = {"kind": "shape", "shape": choice(rng, SHAPES), "color": choice(rng, COLOR_NAMES)}
    video = make_needle_video(rng, needle, **video_kw)
    q = make_question(rng, "<video>", COLOR_TEMPLATES)
    return _sample("long_videos/color", seed, index, video, q, needle["color"])


TASKS = {
    "long_videos/digit": digit,
    "long_videos/shape": shape,
    "long_videos/color": color,
}

__all__ = ["FPS", "TASKS", "NeedleVideo", "color", "digit", "make_needle_video", "shape"]
