import numpy as np
import pytest
import torch

from oryx_mllm.compression_policy import choose_compression, default_compression, fit_to_budget
from oryx_mllm.compressor import DynamicCompressor
from oryx_mllm.errors import ContextLengthError, InvalidInputError
from oryx_mllm.processing.types import VisualInput


@pytest.fixture
def compressor(fixtures):
    c = DynamicCompressor(64)
    c.load_state_dict(
        {k[len("compressor.") :]: v for k, v in fixtures.items() if k.startswith("compressor.")}
    )
    return c


@pytest.mark.parametrize(
    "inp,grid,ratio,out,size",
    [
        ("comp_in_image", (6, 10), 1, "comp_out_image", "comp_size_image"),
        ("comp_in_video", (8, 12), 2, "comp_out_video", "comp_size_video"),
        ("comp_in_video", (8, 12), 4, "comp_out_video_long", "comp_size_video_long"),
    ],
)
def test_matches_reference(compressor, fixtures, inp, grid, ratio, out, size):
    y, g = compressor(fixtures[inp], grid, ratio)
    assert g == tuple(fixtures[size].tolist())
    torch.testing.assert_close(y, fixtures[out], atol=1e-5, rtol=0)


def test_ratio_one_doubles(compressor):
    x = torch.randn(3, 12, 64)
    y, g = compressor(x, (3, 4), 1)
    assert g == (3, 4)
    torch.testing.assert_close(y, 2 * x)


def test_ratio_eight_and_frames_independent(compressor):
    x = torch.randn(4, 16 * 8, 64)
    y, g = compressor(x, (16, 8), 8)
    assert g == (2, 1) and y.shape == (4, 2, 64)
    y1, _ = compressor(x[2:3], (16, 8), 8)
    torch.testing.assert_close(y[2:3], y1)


def test_bad_inputs(compressor):
    with pytest.raises(InvalidInputError, match="does not divide"):
        compressor(torch.randn(1, 6 * 10, 64), (6, 10), 4)
    with pytest.raises(InvalidInputError, match="grid"):
        compressor(torch.randn(1, 50, 64), (6, 10), 1)


@pytest.mark.parametrize("shape", [(1, 1, 12, 64), (64,)])
def test_features_of_wrong_rank_are_named(compressor, shape):
    with pytest.raises(InvalidInputError, match=r"features must be \[T, h\*w, C\].*got shape"):
        compressor(torch.randn(shape), (3, 4), 1)


def test_non_tensor_features_are_named(compressor):
    with pytest.raises(InvalidInputError, match="features must be a torch.Tensor .* got ndarray"):
        compressor(np.zeros((1, 12, 64), dtype=np.float32), (3, 4), 1)


def test_integer_features_are_named(compressor):
    with pytest.raises(InvalidInputError, match="floating point, got dtype torch.int64"):
        compressor(torch.ones(1, 12, 64, dtype=torch.long), (3, 4), 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_features_are_cast_to_the_module_dtype(compressor, dtype):
    x = torch.randn(2, 12, 64).to(dtype)
    y, _ = compressor(x, (2, 6), 2)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, compressor(x.float(), (2, 6), 2)[0])


@pytest.mark.parametrize(
    "grid,match",
    [((-3, -4), "grid height must be a positive integer, got -3"),
     ((3, 0), "grid width must be a positive integer, got 0"),
     ((12,), r"grid must be \(h, w\), got \(12,\)"),
     (None, r"grid must be \(h, w\), got None")],
)  # fmt: skip
def test_bad_grid_is_named(compressor, grid, match):
    with pytest.raises(InvalidInputError, match=match):
        compressor(torch.randn(1, 12, 64), grid, 1)


@pytest.mark.parametrize("ratio", [None, 1.5, True, 0])
def test_ratio_must_be_a_positive_integer(compressor, ratio):
    with pytest.raises(InvalidInputError, match=f"ratio must be a positive integer, got {ratio}"):
        compressor(torch.randn(1, 12, 64), (3, 4), ratio)


def test_integer_like_grid_and_ratio_are_accepted(compressor):
    x = torch.randn(1, 12, 64)
    y, g = compressor(x, (torch.tensor(3), np.int64(4)), torch.tensor(1))
    assert g == (3, 4) and isinstance(g[0], int)
    torch.testing.assert_close(y, 2 * x)


def test_memory_linear_in_frames():
    """1,600 frames: every intermediate is at most a constant times the input size."""
    c = DynamicCompressor(8, mid_size=4)
    x = torch.randn(1600, 8 * 8, 8)
    biggest = []

    def hook(_m, _i, o):
        biggest.append(o.numel())

    c.vlm_key_projector.register_forward_hook(hook)
    with torch.no_grad():
        y, g = c(x, (8, 8), 2)
    assert y.shape == (1600, 16, 8) and g == (4, 4)
    assert max(biggest) <= x.numel()


def _video(frames, size=256):
    return VisualInput("video", [torch.zeros(3, size, size)] * frames, compression=1)


def test_policy_defaults():
    assert default_compression("image") == 1
    assert default_compression("video", 64) == 2
    assert default_compression("video", 65) == 4
    assert default_compression("multiview", 8) == 2


def test_budget_picks_smallest_ratio():
    v = _video(4)  # 16x16 grid
    assert v.num_tokens() == 2 + 4 * (16 * 17 + 1)
    assert choose_compression(v, 10_000) == 1
    assert choose_compression(v, 2 + 4 * (8 * 9 + 1)) == 2
    assert choose_compression(v, 2 + 4 * (8 * 9 + 1) - 1) == 4
    with pytest.raises(ContextLengthError):
        choose_compression(v, 5)
    items = [_video(2), VisualInput("image", [torch.zeros(3, 64, 64), torch.zeros(3, 128, 128)])]
    ratios = fit_to_budget(items, 200)
    assert sum(it.num_tokens() for it in items) <= 200
    assert ratios == [it.compression for it in items]
