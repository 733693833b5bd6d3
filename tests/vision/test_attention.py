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
