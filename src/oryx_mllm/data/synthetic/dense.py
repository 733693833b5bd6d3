"""Dense (per-pixel) labelled pictures for pretraining a vision encoder from scratch.

The released Oryx starts its vision tower from SigLIP, a ViT pretrained on billions of image-text
pairs. The embedded tiny model has no such encoder to start from, and learning vision only
through the LLM's answer tokens is slow on a CPU budget (docs/default_model.md). This module
draws the same kinds of pictures as the curriculum -- coloured shapes on light backgrounds,
needle cards with a digit or a shape, rendered multi-view scenes, document pages of numbered
lines -- together with a class map
that says, for every pixel, which thing is there. :mod:`oryx_mllm.train.vision_pretrain` trains
OryxViT to predict, for every patch, the fraction of its pixels of each class.

Classes (``DENSE_CLASSES``): ``background``, then one per colour and shape (``"red circle"``,
... ``"orange cube"``, shapes :data:`SHAPES` + :data:`SOLIDS`), then the digits ``"0"``-``"9"``.
Colour and shape are one joint class, so a patch feature has to bind them ("is there a green
square?" needs exactly that).

Deterministic: picture ``index`` of stream ``seed`` comes from the same ``SeedSequence`` scheme
as the curriculum (:func:`sample_rng`), under the task name ``"dense/<kind>"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from oryx_mllm.data.synthetic.common import (
    COLOR_NAMES,
    COLORS,
    GLYPH_H,
    GLYPH_W,
    SHAPES,
    big_text,
    choice,
    draw_shape,
    place_circles,
    random_background,
    sample_rng,
)
from oryx_mllm.data.synthetic.task_documents import ink_colour, numbered_line, paper
from oryx_mllm.data.synthetic.task_multiview import SOLIDS, random_scene, render_view
from oryx_mllm.data.synthetic.task_objects import IMAGE_SIDES

DIGITS: tuple[str, ...] = tuple("0123456789")
DENSE_CLASSES: tuple[str, ...] = (
    "background",
    *(f"{c} {s}" for c in COLOR_NAMES for s in (*SHAPES, *SOLIDS)),
    *DIGITS,
)
CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(DENSE_CLASSES)}

# What each kind of picture stands for in the tiny model's inputs.
DENSE_KINDS: tuple[str, ...] = (
    "objects",  # object images at native resolution (128-256 px)
    "small_objects",  # the same scenes at 64 px: low-res views, short-video frames
    "needles",  # 64 px long-video frames with a card showing a digit or a shape
    "views",  # 64 px multi-view renders (spheres and cubes on a ground plane)
    "pages",  # documents/line_code-like pages (128-256 px, font 1-3x): each digit's pixels
)


@dataclass
class DensePicture:
    image: Image.Image  # RGB
    labels: np.ndarray  # uint8 [H, W], indices into DENSE_CLASSES


def _shapes(rng: np.random.Generator, side: int) -> DensePicture:
    """1-6 non-overlapping shapes, the size range of ``objects`` scenes."""
    img = random_background(rng, (side, side))
    lab = Image.new("L", (side, side), 0)
    draw, ldraw = ImageDraw.Draw(img), ImageDraw.Draw(lab)
    n = int(rng.integers(1, 7))
    for cx, cy, r in place_circles(rng, n, (side, side), (side * 0.065, side * 0.12)):
        shape, color = choice(rng, SHAPES), choice(rng, COLOR_NAMES)
        draw_shape(draw, shape, cx, cy, r, COLORS[color])
        draw_shape(ldraw, shape, cx, cy, r, CLASS_ID[f"{color} {shape}"])
    return DensePicture(img, np.asarray(lab, dtype=np.uint8).copy())


def _needle(rng: np.random.Generator, side: int = 64) -> DensePicture:
    """A white card over a light background with a digit or a coloured shape, as the needle
    frames of ``long_videos`` (same card and glyph geometry)."""
    img = random_background(rng, (side, side))
    lab = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(img)
    m = side // 8
    draw.rectangle([m, m, side - m - 1, side - m - 1], fill=(250, 250, 250), outline=(20, 20, 20))
    if rng.random() < 0.5:
        digit = choice(rng, DIGITS)
        scale = max(1, (side - 2 * m) * 3 // 4 // 11)
        glyph = big_text(digit, scale, fill=(10, 10, 10))
        gw, gh = glyph.size
        xy = ((side - gw) // 2, (side - gh) // 2)
        img.paste(glyph, xy, glyph)
        alpha = glyph.getchannel("A").point(lambda a: CLASS_ID[digit] if a else 0)
        lab.paste(alpha, xy)
    else:
        shape, color = choice(rng, SHAPES), choice(rng, COLOR_NAMES)
        r = (side - 2 * m) * 0.38
        draw_shape(draw, shape, side / 2, side / 2, r, COLORS[color])
        draw_shape(ImageDraw.Draw(lab), shape, side / 2, side / 2, r, CLASS_ID[f"{color} {shape}"])
    return DensePicture(img, np.asarray(lab, dtype=np.uint8).copy())


def _view(rng: np.random.Generator, side: int = 64) -> DensePicture:
    """One rendered view of a ``multiview_scenes`` scene; the instance mask gives the classes."""
    k = int(rng.integers(2, 6))
    objects, cameras = random_scene(rng, k, 1, side, distinct_colors=bool(rng.random() < 0.5))
    img, mask, _ = render_view(objects, cameras[0], side)
    lut = np.zeros(256, dtype=np.uint8)
    for o in objects:
        lut[o["id"]] = CLASS_ID[f"{o['color']} {o['shape']}"]
    return DensePicture(img, lut[mask])


def _text_page(rng: np.random.Generator) -> DensePicture:
    """Numbered lines as on ``documents/line_code`` pages (``' 3  48213  lot 72'``), the font
    magnified 1-3 times; every digit's ink pixels carry that digit's class, letters stay
    background (reading a line's code needs the digits)."""
    side = choice(rng, (128, 192, 256))
    scale = int(rng.integers(1, 4))
    img = paper(rng, (side, side))
    lab = Image.new("L", (side, side), 0)
    ink = ink_colour(rng)
    spacing = int(rng.integers(GLYPH_H + 4, GLYPH_H + 11)) * scale
    x, y = int(rng.integers(4, 40)), int(rng.integers(4, 40))
    k = 1
    while y + GLYPH_H * scale <= side:
        code = "".join(choice(rng, DIGITS) for _ in range(int(rng.integers(4, 7))))
        text = numbered_line(rng, k, code)
        for i, ch in enumerate(text):
            left = x + i * GLYPH_W * scale
            if ch == " " or left + GLYPH_W * scale > side:
                continue
            glyph = big_text(ch, scale, ink)
            img.paste(glyph, (left, y), glyph)
            if ch in DIGITS:
                lab.paste(glyph.getchannel("A").point(lambda a, c=ch: CLASS_ID[c] if a else 0),
                          (left, y), glyph.getchannel("A"))  # fmt: skip
        y += spacing
        k += 1
    return DensePicture(img, np.asarray(lab, dtype=np.uint8).copy())


def dense_picture(kind: str, seed: int, index: int) -> DensePicture:
    """Picture ``index`` of kind ``kind`` (one of :data:`DENSE_KINDS`) in stream ``seed``."""
    if kind not in DENSE_KINDS:
        raise ValueError(f"unknown dense picture kind {kind!r}; choose from {DENSE_KINDS}")
    rng = sample_rng(seed, f"dense/{kind}", index)
    if kind == "objects":
        return _shapes(rng, choice(rng, IMAGE_SIDES))
    if kind == "small_objects":
        return _shapes(rng, 64)
    if kind == "needles":
        return _needle(rng)
    if kind == "pages":
        return _text_page(rng)
    return _view(rng)


def dense_stream(
    kinds: dict[str, float], seed: int, shard: tuple[int, int] = (0, 1)
) -> Iterator[DensePicture]:
    """Endless pictures, kinds drawn with the given weights (deterministic for ``seed``).
    ``shard=(k, n)`` yields only pictures ``k, k + n, k + 2n, ...`` of that stream (one data
    loader worker each), so ``n`` shards together are the stream, without repeats."""
    names = sorted(kinds)
    weights = np.array([kinds[n] for n in names], dtype=np.float64)
    if len(names) == 0 or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"dense kinds need positive weights, got {kinds}")
    k, n = shard
    pick = np.random.default_rng([seed, 0xD5E])
    counters = dict.fromkeys(names, 0)
    position = 0
    while True:
        kind = names[int(pick.choice(len(names), p=weights / weights.sum()))]
        if position % n == k:
            yield dense_picture(kind, seed, counters[kind])
        counters[kind] += 1
        position += 1
