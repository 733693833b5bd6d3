"""Variable-length self-attention over a packed sequence.

Images of different sizes are concatenated along the sequence axis; ``seqlens`` gives the length
of each segment and a token only attends to tokens of its own segment. One function,
:func:`varlen_attention`, dispatches on a backend name chosen once (by
:func:`resolve_backend`) when the encoder is built:

- ``"flash_attn"``: ``flash_attn_varlen_func`` with ``cu_seqlens`` (CUDA, fp16/bf16), as the
  released encoder was trained with.
- ``"torch_varlen"``: PyTorch's own FlashAttention varlen kernel
  (``torch.nn.attention.varlen.varlen_attn``, CUDA, fp16/bf16): the same ``cu_seqlens`` call
  without the flash-attn package. ``"auto"`` picks it on CUDA when flash-attn is not installed.
- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` once per run of equal-length
  segments (batched). Default on
  CPU; on 2 CPU cores it is several times faster than one call with a block-diagonal mask.
- ``"sdpa_masked"``: one SDPA call over the whole pack with a block-diagonal boolean mask
  (kept for comparison and benchmarks; quadratic in the total length).
- ``"math"``: explicit softmax(q k^T / sqrt(d)) v per segment, in fp32. The reference the
  others are tested against.

Both FlashAttention kernels take fp16/bf16 only: an fp32 call (a model loaded in fp32 on a GPU)
goes through ``"sdpa"`` instead, so ``"auto"`` works in every dtype.

All take ``q, k, v`` of shape ``[T, heads, head_dim]`` and return ``[T, heads, head_dim]``.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from oryx_mllm.errors import ConfigError

BACKENDS = ("auto", "flash_attn", "torch_varlen", "sdpa", "sdpa_masked", "math")
_HALF_ONLY = ("flash_attn", "torch_varlen")  # FlashAttention kernels: fp16/bf16 inputs only


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def torch_varlen_available() -> bool:
    """PyTorch ships ``varlen_attn`` (2.9+) and there is a GPU to run it on."""
    return (
        importlib.util.find_spec("torch.nn.attention.varlen") is not None
        and torch.cuda.is_available()
    )


def resolve_backend(name: str, device: torch.device | str | None = None) -> str:
    """Turn ``"auto"`` into a concrete backend for ``device``; validate explicit names.

    ``"auto"`` on CUDA: flash-attn if installed, else PyTorch's varlen kernel, else SDPA;
    anywhere else SDPA."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown attention backend {name!r}; choose one of {BACKENDS}")
    if name == "auto":
        if device is None or torch.device(device).type != "cuda":
            return "sdpa"
        if flash_attn_available():
            return "flash_attn"
        return "torch_varlen" if torch_varlen_available() else "sdpa"
    if name == "flash_attn" and not flash_attn_available():
        raise ConfigError(
            "attention backend 'flash_attn' needs CUDA and the flash-attn package "
            "(pip install 'oryx-mllm[flash]'); use 'sdpa' on CPU"
        )
    if name == "torch_varlen" and not torch_varlen_available():
        raise ConfigError(
            "attention backend 'torch_varlen' needs CUDA and PyTorch >= 2.9 "
            "(torch.nn.attention.varlen); use 'sdpa' on CPU"
        )
    return name


def cu_seqlens_from(seqlens: Sequence[int], device: torch.device) -> torch.Tensor:
    """Cumulative segment boundaries ``[0, n0, n0+n1, ...]`` as int32 (flash-attn's format)."""
    lengths = torch.tensor(list(seqlens), dtype=torch.int32, device=device)
    return F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))


def _per_segment(q, k, v, seqlens, fn):
    outs = [fn(qs, ks, vs) for qs, ks, vs in zip(*(t.split(seqlens) for t in (q, k, v)))]
    return torch.cat(outs, dim=0)


def _sdpa_runs(q, k, v, seqlens):
    """SDPA once per run of consecutive equal-length segments (the frames of a video or the views
    of a scene all have one size): each run is one batched call ``[m, H, n, D]`` instead of ``m``
    calls, which removes the per-frame overhead that dominates for many small frames on CPU.
    Inputs are always 4-D: with 3-D ``[H, n, D]`` inputs PyTorch's CPU SDPA takes a slow path
    that materialises the ``n x n`` scores (measured: 2.9x slower, +4 GiB at 9,216 tokens)."""
    outs, start, i = [], 0, 0
    while i < len(seqlens):
        n, j = seqlens[i], i
        while j < len(seqlens) and seqlens[j] == n:
            j += 1
        m = j - i
        qs, ks, vs = (
            t[start : start + m * n].unflatten(0, (m, n)).transpose(1, 2) for t in (q, k, v)
        )
        out = F.scaled_dot_product_attention(qs, ks, vs)  # [m, H, n, D]
        outs.append(out.transpose(1, 2).flatten(0, 1))
        start += m * n
        i = j
    return torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]


def _math_segment(q, k, v):
    dtype = q.dtype
    q, k, v = (t.float().transpose(0, 1) for t in (q, k, v))  # [H, n, D]
    attn = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return (attn.softmax(dim=-1) @ v).transpose(0, 1).to(dtype)


def _sdpa_masked(q, k, v, seqlens):
    ids = torch.repeat_interleave(
        torch.arange(len(seqlens), device=q.device),
        torch.tensor(list(seqlens), device=q.device),
    )
    mask = ids[:, None] == ids[None, :]  # [T, T] block diagonal
    q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))  # [1, H, T, D]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out[0].transpose(0, 1)


def _varlen_kernel(q, k, v, seqlens, backend):
    """flash-attn's or PyTorch's FlashAttention varlen kernel: one call with ``cu_seqlens``."""
    if backend == "flash_attn":
        from flash_attn import flash_attn_varlen_func as kernel
    else:
        from torch.nn.attention.varlen import varlen_attn as kernel

    cu = cu_seqlens_from(seqlens, q.device)
    max_len = max(seqlens)
    return kernel(q, k, v, cu, cu, max_len, max_len)


def varlen_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seqlens: Sequence[int], backend: str
) -> torch.Tensor:
    """Block-diagonal self-attention over a packed ``[T, heads, head_dim]`` sequence."""
    seqlens = [int(n) for n in seqlens]
    if backend in _HALF_ONLY and q.dtype not in (torch.float16, torch.bfloat16):
        backend = "sdpa"
    if backend == "sdpa":
        return _sdpa_runs(q, k, v, seqlens)
    if backend in _HALF_ONLY:
        return _varlen_kernel(q, k, v, seqlens, backend)
    if backend == "math":
        return _per_segment(q, k, v, seqlens, _math_segment)
    if backend == "sdpa_masked":
        return _sdpa_masked(q, k, v, seqlens)
    raise ConfigError(f"attention backend {backend!r} is not resolved; call resolve_backend first")
