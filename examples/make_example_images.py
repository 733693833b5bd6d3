"""Regenerate the example images bundled in src/oryx_mllm/assets/examples (deterministic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "src" / "oryx_mllm" / "assets" / "examples"


def document(path: Path) -> None:
    """A page of small text lines: a document whose detail needs native resolution."""
    img = Image.new("RGB", (720, 960), "white")
    d = ImageDraw.Draw(img)
    d.text((40, 30), "INVOICE 2026-0417", fill="black")
    rng = np.random.default_rng(7)
    for i in range(40):
        words = " ".join(f"{w:04d}" for w in rng.integers(0, 9999, size=8))
        d.text((40, 70 + 21 * i), f"line {i + 1:02d}: {words}", fill=(20, 20, 20))
    img.save(path, optimize=True)


def photo(path: Path) -> None:
    """A photo-like scene: a sky gradient, a ground plane and a few coloured objects."""
    h, w = 480, 640
    y = np.linspace(0, 1, h)[:, None, None]
    sky = (np.array([110, 160, 230]) * (1 - y) + np.array([230, 240, 255]) * y).astype(np.uint8)
    arr = np.broadcast_to(sky, (h, w, 3)).copy()
    arr[300:] = (90, 140, 70)
    img = Image.fromarray(arr)
    d = ImageDraw.Draw(img)
    d.ellipse((80, 220, 200, 340), fill=(220, 40, 40))
    d.rectangle((300, 250, 420, 370), fill=(40, 60, 200))
    d.polygon([(500, 380), (560, 260), (620, 380)], fill=(240, 200, 30))
    img.save(path, quality=90)


def banner(path: Path) -> None:
    """A very wide image: native resolution keeps its aspect ratio."""
    img = Image.new("RGB", (1200, 160), (245, 245, 235))
    d = ImageDraw.Draw(img)
    for i in range(12):
        d.rectangle((20 + 98 * i, 40, 90 + 98 * i, 120), fill=(30 * i % 255, 90, 200 - 15 * i))
    img.save(path, optimize=True)


def icon(path: Path) -> None:
    """A tiny 24x24 icon: preprocessing upscales sides under 32 px."""
    img = Image.new("RGB", (24, 24), (255, 255, 255))
    ImageDraw.Draw(img).ellipse((4, 4, 20, 20), fill=(0, 150, 0))
    img.save(path)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    document(OUT / "document.png")
    photo(OUT / "photo.jpg")
    banner(OUT / "banner.png")
    icon(OUT / "icon.png")
    print(f"wrote examples to {OUT}")
