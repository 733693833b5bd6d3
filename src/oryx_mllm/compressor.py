"""Dynamic Compressor (paper 3.1.2): average-pool the patch grid by ``r x r``, then let every
pooled cell attend to its ``r*r`` high-resolution neighbours and add what it reads.

Exactly the released module: ``q = Wq(pooled)``, ``k = Wk(neighbours)``, ``v = neighbours`` (no
value/output projection), ``out = pooled + softmax(q k^T / sqrt(mid)) v``; NaN logits are zeroed.
For ``r = 1`` the single neighbour is the cell itself, so the output is twice the input - the
released checkpoints were trained with that, keep it.

Everything is vectorised over frames and the attention is local (``[cells, 1, r*r]``), so memory is
linear in the number of frames and cells: no ``[T, T]`` or ``[N, N]`` tensor is ever built.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn as nn

from oryx_mllm.checks import check_range
from oryx_mllm.errors import InvalidInputError


def _positive_int(value, what: str) -> int:
    """``value`` as an int (Python/numpy int or one-element integer tensor), at least 1; floats,
    ``None`` and bools are rejected rather than truncated."""
    check_range(f"compressor {what}", value, integer=True, at_least=1, error=InvalidInputError)
    return operator.index(value)


class DynamicCompressor(nn.Module):
    def __init__(self, hidden_size: int, mid_size: int = 256):
        super().__init__()
        self.hidden_size = hidden_size
        self.mid_size = mid_size
        self.vlm_query_projector = nn.Linear(hidden_size, mid_size)
        self.vlm_key_projector = nn.Linear(hidden_size, mid_size)

    def forward(
        self, features: torch.Tensor, grid: tuple[int, int], ratio: int = 1
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """features ``[T, h*w, C]`` on an ``(h, w)`` grid -> ``([T, h/r * w/r, C], (h/r, w/r))``.

        Floating-point features are cast to the weights' dtype, so the output has that dtype.
        """
        if not isinstance(features, torch.Tensor):
            kind = type(features).__name__
            raise InvalidInputError(
                f"compressor features must be a torch.Tensor [T, h*w, C], got {kind}"
            )
        if features.dim() not in (2, 3):
            raise InvalidInputError(
                "compressor features must be [T, h*w, C] (or [h*w, C] for one frame), "
                f"got shape {tuple(features.shape)}"
            )
        if not features.is_floating_point():
            raise InvalidInputError(
                f"compressor features must be floating point, got dtype {features.dtype}"
            )
        try:
            gh, gw = grid
        except (TypeError, ValueError):
            raise InvalidInputError(f"compressor grid must be (h, w), got {grid!r}") from None
        h, w = _positive_int(gh, "grid height"), _positive_int(gw, "grid width")
        r = _positive_int(ratio, "compression ratio")
        # Cast to the weights' dtype (a no-op when they match), as transformers' vision embeddings
        # do with pixel values and as OryxModel.encode_visual already does: fp64/bf16 features on
        # an fp32 module are valid input, and the weights' precision bounds the result anyway.
        features = features.to(self.vlm_query_projector.weight.dtype)
        if features.dim() == 2:
            features = features[None]
        T, N, C = features.shape
        if N != h * w:
            raise InvalidInputError(f"compressor got {N} tokens per frame for a {h}x{w} grid")
        if C != self.hidden_size:
            raise InvalidInputError(f"compressor expects {self.hidden_size} channels, got {C}")
        if h % r or w % r:
            raise InvalidInputError(
                f"compression ratio {r} does not divide the {h}x{w} patch grid; "
                "resize the input so both sides are multiples of patch_size * ratio"
            )
        hr, wr = h // r, w // r
        # group every r x r block of neighbours: [T, h, w, C] -> [T*hr*wr, r*r, C]
        x = features.reshape(T, hr, r, wr, r, C).permute(0, 1, 3, 2, 4, 5)
        neighbours = x.reshape(T * hr * wr, r * r, C)
        pooled = neighbours.mean(dim=1, keepdim=True)  # [M, 1, C] == avg_pool2d(r, r)
        q = self.vlm_query_projector(pooled)  # [M, 1, mid]
        k = self.vlm_key_projector(neighbours)  # [M, r*r, mid]
        att = (q @ k.transpose(1, 2)) / math.sqrt(self.mid_size)  # [M, 1, r*r]
        att = torch.nan_to_num(att, nan=0.0).softmax(dim=-1)
        out = pooled + att @ neighbours  # [M, 1, C] (mean over the single query is a no-op)
        return out.reshape(T, hr * wr, C), (hr, wr)
