"""The attention backends agree with each other and never mix segments."""

from __future__ import annotations

import pytest
import torch

from oryx_mllm.errors import ConfigError
from oryx_mllm.vision.attention import cu_seqlens_from, resolve_backend, varlen_attention

SEQLENS = [5, 1, 17, 9]


def qkv(dtype=torch.float32):
    T = sum(SEQLENS)
    return [torch.randn(T, 4, 16, dtype=dtype) for _ in range(3)]


@pytest.mark.parametrize("backend", ["sdpa", "sdpa_masked"])
def test_backends_equal_math_reference(backend):
    q, k, v = qkv()
    ref = varlen_attention(q, k, v, SEQLENS, "math")
    torch.testing.assert_close(varlen_attention(q, k, v, SEQLENS, backend), ref, atol=1e-5, rtol=0)


def test_bf16_within_dtype_tolerance():
    q, k, v = qkv()
    ref = varlen_attention(q, k, v, SEQLENS, "math")
    out = varlen_attention(*(t.bfloat16() for t in (q, k, v)), SEQLENS, "sdpa")
    assert (out.float() - ref).abs().max() < 3e-2


def test_segments_do_not_attend_to_each_other():
    q, k, v = qkv()
    out = varlen_attention(q, k, v, SEQLENS, "sdpa")
    v2 = v.clone()
    v2[:5] += 100.0  # change only the first segment's values
    out2 = varlen_attention(q, k, v2, SEQLENS, "sdpa")
    torch.testing.assert_close(out[5:], out2[5:])
    assert not torch.allclose(out[:5], out2[:5])


def test_cu_seqlens_format():
    cu = cu_seqlens_from(SEQLENS, torch.device("cpu"))
    assert cu.dtype == torch.int32
    assert cu.tolist() == [0, 5, 6, 23, 32]


def test_resolve_backend():
    assert resolve_backend("auto", "cpu") == "sdpa"
    assert resolve_backend("math") == "math"
    with pytest.raises(ConfigError, match="unknown attention backend"):
        resolve_backend("xformers")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="flash_attn"):
            resolve_backend("flash_attn")
        with pytest.raises(ConfigError, match="torch_varlen"):
            resolve_backend("torch_varlen")


@pytest.mark.parametrize("backend", ["flash_attn", "torch_varlen"])
def test_fp32_inputs_never_reach_the_half_only_kernels(backend):
    q, k, v = qkv()  # fp32 on CPU: the dispatch must route these to sdpa
    ref = varlen_attention(q, k, v, SEQLENS, "math")
    torch.testing.assert_close(varlen_attention(q, k, v, SEQLENS, backend), ref, atol=1e-5, rtol=0)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_auto_on_cuda_picks_a_varlen_kernel():
    assert resolve_backend("auto", "cuda") in ("flash_attn", "torch_varlen")


@needs_cuda
@pytest.mark.parametrize("backend", ["sdpa", "sdpa_masked", "torch_varlen"])
def test_cuda_bf16_backends_match_math_reference(backend):
    backend = resolve_backend(backend, "cuda")
    q, k, v = (t.cuda() for t in qkv())
    ref = varlen_attention(q, k, v, SEQLENS, "math")
    out = varlen_attention(*(t.bfloat16() for t in (q, k, v)), SEQLENS, backend)
    assert (out.float() - ref).abs().max() < 3e-2


@needs_cuda
def test_half_only_kernels_fall_back_to_sdpa_in_fp32():
    q, k, v = (t.cuda() for t in qkv())
    ref = varlen_attention(q, k, v, SEQLENS, "math")
    out = varlen_attention(q, k, v, SEQLENS, resolve_backend("auto", "cuda"))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


@needs_cuda
def test_torch_varlen_backward_matches_math():
    q, k, v = (t.cuda().bfloat16().requires_grad_() for t in qkv())
    varlen_attention(q, k, v, SEQLENS, "torch_varlen").float().square().sum().backward()
    grads = [t.grad.float() for t in (q, k, v)]
    q2, k2, v2 = (t.detach().float().requires_grad_() for t in (q, k, v))
    varlen_attention(q2, k2, v2, SEQLENS, "math").square().sum().backward()
    for g, t in zip(grads, (q2, k2, v2)):
        assert (g - t.grad).abs().max() < 5e-2 * t.grad.abs().max() + 1e-3
