"""The shared "simple_mlp_twoview" projector: one MLP for every modality plus four learned
layout vectors (``image_begin``, ``image_newline``, ``image_sep``, ``image_end``).

Layouts (D = LLM width):

- image: begin, low-res rows each + newline, sep, high-res rows each + newline, end
  -> ``3 + hl*(wl+1) + hh*(wh+1)`` tokens
- video / multi-view: begin, per frame (rows each + newline, then sep), end
  -> ``2 + T*(h*(w+1)+1)`` tokens
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from oryx_mllm.checks import check_range
from oryx_mllm.errors import ConfigError, InvalidInputError

ACTIVATIONS = ("gelu", "gelu_pytorch_tanh")


class OryxProjector(nn.Module):
    def __init__(self, in_size: int, out_size: int, act: str = "gelu"):
        super().__init__()
        check_range("projector in_size", in_size, integer=True, at_least=1)
        check_range("projector out_size", out_size, integer=True, at_least=1)
        if act not in ACTIVATIONS:
            raise ConfigError(f"projector act {act!r} not in {ACTIVATIONS}")
        gelu = nn.GELU(approximate="tanh" if act == "gelu_pytorch_tanh" else "none")
        self.in_size, self.out_size = in_size, out_size
        self.proj = nn.Sequential(nn.Linear(in_size, out_size), gelu, nn.Linear(out_size, out_size))
        std = 1 / math.sqrt(out_size)
        self.image_newline = nn.Parameter(torch.randn(out_size) * std)
        self.image_begin = nn.Parameter(torch.randn(out_size) * std)
        self.image_end = nn.Parameter(torch.randn(out_size) * std)
        self.image_sep = nn.Parameter(torch.randn(out_size) * std)

    def _grid_rows(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``[T, h*w, C]`` -> ``[T, h*(w+1), D]``: project, append a newline to every row.

        Floating-point features are cast to the weights' dtype (a no-op when they match), as
        ``DynamicCompressor`` does, so the output has that dtype.
        """
        h, w = self._check_grid(grid)
        T, N, C = x.shape
        if T == 0:
            raise InvalidInputError("projector got 0 frames; a video needs at least one")
        if N != h * w or C != self.in_size:
            raise InvalidInputError(
                f"projector got features {tuple(x.shape)} for grid {h}x{w} with {self.in_size} "
                "channels"
            )
        if not x.is_floating_point():
            raise InvalidInputError(f"projector features must be floating point, got {x.dtype}")
        x = self.proj(x.reshape(T, h, w, C).to(self.proj[0].weight.dtype))  # [T, h, w, D]
        nl = self.image_newline.to(x.dtype).expand(T, h, 1, self.out_size)
        return torch.cat([x, nl], dim=2).reshape(T, h * (w + 1), self.out_size)

    @staticmethod
    def _check_grid(grid: tuple[int, int]) -> tuple[int, int]:
        if not isinstance(grid, (tuple, list)) or len(grid) != 2:
            raise InvalidInputError(f"projector grid must be (h, w), got {grid!r}")
        for name, n in zip(("height", "width"), grid):
            check_range(
                f"projector grid {name}", n, integer=True, at_least=1, error=InvalidInputError
            )
        return grid

    @staticmethod
    def _features(x: torch.Tensor, name: str, dims: int) -> torch.Tensor:
        """``x`` as a tensor of ``dims`` dimensions (one leading 1 of an image view dropped)."""
        if not isinstance(x, torch.Tensor):
            raise InvalidInputError(f"projector {name} must be a tensor, got {type(x).__name__}")
        if dims == 2 and x.dim() == 3 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != dims:
            want = "[h*w, C] (or [1, h*w, C])" if dims == 2 else "[T, h*w, C]"
            raise InvalidInputError(f"projector {name} must be {want}, got {tuple(x.shape)}")
        return x

    def _vec(self, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.to(like.dtype).reshape(1, -1)

    def image(
        self,
        low: torch.Tensor,
        low_grid: tuple[int, int],
        high: torch.Tensor,
        high_grid: tuple[int, int],
    ) -> torch.Tensor:
        """Two views of one image (``[h*w, C]`` or ``[1, h*w, C]`` each) -> ``[N, D]``."""
        lo = self._grid_rows(self._features(low, "low", 2)[None], low_grid)[0]
        hi = self._grid_rows(self._features(high, "high", 2)[None], high_grid)[0]
        v = lambda p: self._vec(p, lo)  # noqa: E731
        return torch.cat([v(self.image_begin), lo, v(self.image_sep), hi, v(self.image_end)])

    def video(self, frames: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``[T, h*w, C]`` frames (video or multi-view scene) -> ``[N, D]``."""
        x = self._grid_rows(self._features(frames, "frames", 3), grid)  # [T, h*(w+1), D]
        T = x.shape[0]
        sep = self.image_sep.to(x.dtype).expand(T, 1, self.out_size)
        x = torch.cat([x, sep], dim=1).reshape(-1, self.out_size)  # [T*(h*(w+1)+1), D]
        return torch.cat([self._vec(self.image_begin, x), x, self._vec(self.image_end, x)])
