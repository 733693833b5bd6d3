"""Shared pieces of the synthetic curriculum: the sample type, the closed answer vocabulary,
seeding, and small PIL drawing helpers.

Determinism: every sample is drawn from its own ``numpy.random.Generator`` seeded with
``SeedSequence([seed, crc32(task), index])`` (see :func:`sample_rng`), so a sample depends only on
``(seed, task, index)`` -- not on which other tasks or how many samples were generated before it.
All drawing is done with PIL primitives and the built-in bitmap font (no FreeType, no system
fonts), so the same seed gives byte-identical pixels on every machine with the same Pillow.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from oryx_mllm.checks import check_range

SampleModality = Literal["text", "image", "video", "video_long", "multiview"]

# Closed answer vocabulary. Colours are far apart in RGB so they survive downscaling and pooling.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (240, 210, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
YES_NO: tuple[str, ...] = ("yes", "no")

# Short words used as chart/table labels (lower case, 4-5 letters, all distinct).
LABELS: tuple[str, ...] = (
    "apple",
    "bread",
    "cloud",
    "delta",
    "eagle",
    "fern",
    "grape",
    "honey",
    "iris",
    "jade",
    "kiwi",
    "lemon",
)


class FrameSource(Protocol):
    """A lazily rendered video: ``len(src)`` frames, ``src.frame(i)`` renders frame ``i``."""

    timestamps: list[float]

    def __len__(self) -> int: ...

    def frame(self, index: int) -> Image.Image: ...


@dataclass
class SyntheticSample:
    """One question/answer pair about a synthetic image, video or multi-view scene.

    ``media`` is a PIL image (``image``), a list of PIL frames (``video``, ``multiview``: one per
    view), a lazy :class:`FrameSource` (``video_long``) or ``None`` (``text``: a training-only
    sample whose scene is written in the question). ``question`` starts with the ``<image>``
    or ``<video>`` placeholder followed by a newline (``text``: no placeholder); ``answer`` is a
    short string from a small closed vocabulary (digits, colour/shape names, yes/no, left/right,
    ...). ``meta`` holds the ground truth the answer was derived from, so tests and evaluation
    can check it.
    """

    id: str
    task: str
    modality: SampleModality
    media: Any
    question: str
    answer: str
    meta: dict = field(default_factory=dict)
    # follow-up (question, answer) turns about the same media (training-only multi-turn tasks)
    turns: list[tuple[str, str]] = field(default_factory=list)

    @property
    def placeholder(self) -> str | None:
        if self.modality == "text":
            return None
        return "<image>" if self.modality == "image" else "<video>"


# ----------------------------------------------------------------------------- seeding


def task_key(task: str) -> int:
    """A stable 32-bit integer for a task name (Python's ``hash`` is salted per process)."""
    return zlib.crc32(task.encode("utf-8"))


def sample_rng(seed: int, task: str, index: int) -> np.random.Generator:
    """The random generator of sample ``index`` of ``task`` in the stream with base ``seed``."""
    check_range("seed", seed, integer=True, at_least=0)
    check_range("index", index, integer=True, at_least=0)
    return np.random.default_rng(np.random.SeedSequence([seed, task_key(task), index]))


def sample_id(task: str, seed: int, index: int) -> str:
    return f"{task}:{seed}:{index}"


def choice(rng: np.random.Generator, items: tuple | list) -> Any:
    """Pick one element of a sequence (keeps the element's Python type, unlike ``rng.choice``)."""
    return items[int(rng.integers(len(items)))]


def sample_without_replacement(rng: np.random.Generator, items: tuple | list, k: int) -> list:
    idx = rng.permutation(len(items))[:k]
    return [items[int(i)] for i in idx]


def make_question(
    rng: np.random.Generator, placeholder: str, templates: tuple[str, ...], **kw
) -> str:
    """``"<image>\\n" + one of the paraphrases``, formatted with ``kw``."""
    return f"{placeholder}\n{choice(rng, templates).format(**kw)}"


def plural(shape: str) -> str:
    return shape + "s"


# ----------------------------------------------------------------------------- drawing


@lru_cache(maxsize=1)
def bitmap_font() -> ImageFont.ImageFont:
    """PIL's built-in bitmap font: 6 px wide, 11 px tall glyphs, identical everywhere."""
    return ImageFont.load_default_imagefont()


GLYPH_W, GLYPH_H = 6, 11


def text_size(text: str) -> tuple[int, int]:
    """Width and height in pixels of ``text`` in the bitmap font."""
    return GLYPH_W * len(text), GLYPH_H


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, fill) -> None:
    draw.text(xy, text, font=bitmap_font(), fill=fill)


def big_text(text: str, scale: int, fill, background=None) -> Image.Image:
    """``text`` in the bitmap font magnified ``scale`` times with nearest-neighbour (blocky but
    deterministic and legible at low resolution). Returns RGBA with a transparent background
    unless ``background`` is given."""
    w, h = text_size(text)
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).text((0, 0), text, font=bitmap_font(), fill=255)
    mask = mask.resize((w * scale, h * scale), Image.Resampling.NEAREST)
    out = Image.new("RGBA", mask.size, (0, 0, 0, 0) if background is None else (*background, 255))
    out.paste(Image.new("RGBA", mask.size, (*fill, 255)), (0, 0), mask)
    return out


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Outline of a square or an upward triangle inscribed in the circle of radius ``r``."""
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)]
    raise ValueError(f"no polygon for shape {shape!r}")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    """A filled circle / square / triangle centred at ``(cx, cy)`` with 'radius' ``r``."""
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(shape_polygon(shape, cx, cy, r), fill=fill)


def plain_background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A light, slightly tinted flat background (no shape colour is close to it)."""
    tone = rng.integers(200, 246, size=3)
    return Image.new("RGB", size, tuple(int(t) for t in tone))


def noisy_background(
    rng: np.random.Generator, size: tuple[int, int], amplitude: int = 18
) -> Image.Image:
    """A light background with per-pixel grey noise of +-``amplitude``."""
    w, h = size
    base = rng.integers(195, 236, size=3).astype(np.int16)
    noise = rng.integers(-amplitude, amplitude + 1, size=(h, w, 1), dtype=np.int16)
    arr = np.clip(base[None, None, :] + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def random_background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    return noisy_background(rng, size) if rng.random() < 0.5 else plain_background(rng, size)


def place_circles(
    rng: np.random.Generator,
    n: int,
    size: tuple[int, int],
    r_range: tuple[float, float],
    margin: float = 2.0,
    max_tries: int = 2000,
) -> list[tuple[float, float, float]]:
    """Rejection-sample ``n`` non-overlapping discs ``(cx, cy, r)`` fully inside the image."""
    w, h = size
    placed: list[tuple[float, float, float]] = []
    for _ in range(max_tries):
        if len(placed) == n:
            break
        r = float(rng.uniform(*r_range))
        cx = float(rng.uniform(r + 1, w - r - 1))
        cy = float(rng.uniform(r + 1, h - r - 1))
        if all((cx - x) ** 2 + (cy - y) ** 2 > (r + rr + margin) ** 2 for x, y, rr in placed):
            placed.append((round(cx, 1), round(cy, 1), round(r, 1)))
    if len(placed) < n:
        raise RuntimeError(f"could not place {n} objects in {size}")
    return placed
