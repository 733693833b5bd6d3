"""The hand-off between preprocessing and the model: one :class:`VisualInput` per image, video or
multi-view scene, plus the formula for how many LLM tokens it becomes.

Token layout (released "simple_mlp_twoview" projector, see the reference README):

- image: ``begin``, low-res view rows each followed by ``newline``, ``sep``, high-res view rows
  each followed by ``newline``, ``end``::

      tokens = 3 + hl * (wl + 1) + hh * (wh + 1)

- video / multi-view scene with T frames: per frame the rows each followed by ``newline``, then
  ``sep``; ``begin`` first, ``end`` last::

      tokens = 2 + T * (h * (w + 1) + 1)

where ``(h, w)`` are patch grids *after* compression by the pooling ratio ``r``: a view of
``H x W`` pixels has grid ``(ceil(H / p) / r, ceil(W / p) / r)`` with patch size ``p`` = 16.
Preprocessing makes every side a multiple of ``p * r`` so the division is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

Modality = Literal["image", "video", "multiview"]
MODALITIES: tuple[str, ...] = ("image", "video", "multiview")


def compressed_grid(height: int, width: int, patch_size: int, ratio: int) -> tuple[int, int]:
    """Patch grid of an ``height x width`` view after ``ratio x ratio`` pooling."""
    h, w = -(-height // patch_size), -(-width // patch_size)
    return h // ratio, w // ratio


def image_token_count(low_grid: tuple[int, int], high_grid: tuple[int, int]) -> int:
    (hl, wl), (hh, wh) = low_grid, high_grid
    return 3 + hl * (wl + 1) + hh * (wh + 1)


def video_token_count(num_frames: int, grid: tuple[int, int]) -> int:
    h, w = grid
    return 2 + num_frames * (h * (w + 1) + 1)


@dataclass
class VisualInput:
    """One visual item, preprocessed and ready for the encoder.

    ``frames`` are normalised float pixels ``[3, H, W]``: for an image exactly two views
    ``[low_res, high_res]``; for a video or multi-view scene one tensor per frame, all the same
    size. ``compression`` is the pooling ratio r (1 = keep all tokens, 2 = 2x2, 4 = 4x4, ...).
    """

    modality: Modality
    frames: list[torch.Tensor]
    compression: int = 1
    timestamps: list[float] | None = None  # seconds, videos only
    source: str | None = None  # file name or description, for messages
    original_size: tuple[int, int] | None = None  # (width, height) before resizing
    meta: dict = field(default_factory=dict)

    def grids(self, patch_size: int = 16) -> list[tuple[int, int]]:
        """Compressed patch grid of every frame/view."""
        return [
            compressed_grid(f.shape[-2], f.shape[-1], patch_size, self.compression)
            for f in self.frames
        ]

    def num_tokens(self, patch_size: int = 16) -> int:
        """How many LLM tokens this input becomes (the formula in the module docstring)."""
        grids = self.grids(patch_size)
        if self.modality == "image":
            return image_token_count(grids[0], grids[1])
        return video_token_count(len(grids), grids[0])
