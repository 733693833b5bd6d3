"""Which mixed precision a run can afford on the machine it runs on.

bf16 autocast halves the matmul cost on a GPU and on CPUs with native bf16 instructions
(AVX512-BF16, AMX): the tiny recipe's steps were 1.7x faster with it on the CPU it was trained
on. On a CPU without them (AVX2 only, as on many laptops and AMD EPYC servers) PyTorch runs bf16
matmuls on a slow path: measured on a 2-core AVX2 EPYC, a 1024² matmul took 0.85 GFLOP/s in bf16
against 58 GFLOP/s in fp32 (docs/default_model.md, seventeenth session), so a bf16 recipe runs
tens of times slower there. ``mixed_precision: auto`` picks bf16 only where it is fast; an
explicit ``bf16`` on a slow CPU trains as asked, with a warning that names the cause.

The choice is made from the CPU's instruction flags, not from a timing, so every process of a
distributed run makes the same one.
"""

from __future__ import annotations

import functools
import logging
import time

import torch

logger = logging.getLogger(__name__)

MIXED_PRECISION_VALUES = ("no", "bf16", "fp16", "auto")


def cpu_has_fast_bf16() -> bool:
    """The CPU has native bf16 matmul instructions (AVX512-BF16 or AMX tiles)."""
    cpu = torch.cpu
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        if check is not None and check():
            return True
    return False


def resolve_mixed_precision(value: str, on_cuda: bool | None = None) -> str:
    """``auto`` -> ``bf16`` on a bf16-capable GPU or a CPU with fast bf16, else ``no``; any other
    value is returned as it is (an explicit ``bf16`` on a slow CPU is logged, see
    :func:`warn_if_slow_bf16`)."""
    if on_cuda is None:
        on_cuda = torch.cuda.is_available()
    if value != "auto":
        return value
    if on_cuda:
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if cpu_has_fast_bf16() else "no"


def matmul_gflops(dtype: torch.dtype, n: int = 512, repeats: int = 3) -> float:
    """GFLOP/s of an ``n`` x ``n`` matmul in ``dtype`` on the CPU (best of ``repeats``)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up: the first call picks the kernel
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / max(best, 1e-9) / 1e9


@functools.cache
def _cpu_speeds() -> tuple[float, float]:
    """bf16 and fp32 matmul GFLOP/s, measured once per process (about a second on a slow CPU)."""
    return matmul_gflops(torch.bfloat16), matmul_gflops(torch.float32)


def warn_if_slow_bf16(mixed_precision: str, on_cuda: bool | None = None) -> str | None:
    """Log (and return) a warning when a CPU run asks for bf16 on a CPU without fast bf16."""
    if on_cuda is None:
        on_cuda = torch.cuda.is_available()
    if mixed_precision != "bf16" or on_cuda or cpu_has_fast_bf16():
        return None
    bf16, fp32 = _cpu_speeds()
    if bf16 >= 0.5 * fp32:  # an ISA whose bf16 path is not slow after all
        return None
    message = (
        f"mixed_precision is bf16, but this CPU ({torch.backends.cpu.get_cpu_capability()}) has "
        f"no native bf16 (AVX512-BF16 or AMX): a bf16 matmul runs at {bf16:.1f} GFLOP/s here "
        f"against {fp32:.1f} in fp32, so the run will be much slower than in fp32. Set "
        "mixed_precision: auto (bf16 only where it is fast) or no."
    )
    logger.warning(message)
    return message
