import pytest
import torch

from oryx_mllm.errors import ConfigError, InvalidInputError
from oryx_mllm.processing.types import image_token_count, video_token_count
from oryx_mllm.projector import OryxProjector


def _projector(fixtures):
    p = OryxProjector(64, 32)
    p.load_state_dict(
        {k[len("projector.") :]: v for k, v in fixtures.items() if k.startswith("projector.")}
    )
    return p


def test_image_matches_reference(fixtures):
    out = _projector(fixtures).image(
        fixtures["proj_in_low"], (4, 4), fixtures["proj_in_high"], (6, 10)
    )
    assert out.shape[0] == image_token_count((4, 4), (6, 10)) == 89
    torch.testing.assert_close(out, fixtures["proj_out_image"][0], atol=1e-5, rtol=0)


def test_video_matches_reference(fixtures):
    out = _projector(fixtures).video(fixtures["proj_in_video"], (4, 6))
    assert out.shape[0] == video_token_count(5, (4, 6)) == 147
    torch.testing.assert_close(out, fixtures["proj_out_video"][0], atol=1e-5, rtol=0)


def test_layout_vectors(fixtures):
    p = _projector(fixtures)
    out = p.video(fixtures["proj_in_video"][:2], (4, 6))
    torch.testing.assert_close(out[0], p.image_begin.detach())
    torch.testing.assert_close(out[-1], p.image_end.detach())
    torch.testing.assert_close(out[1 + 6], p.image_newline.detach())  # end of first row
    torch.testing.assert_close(out[1 + 4 * 7], p.image_sep.detach())  # end of first frame


def test_image_view_of_two_frames_is_rejected():
    p = OryxProjector(64, 32)
    with pytest.raises(InvalidInputError, match=r"low must be \[h\*w, C\].*got \(2, 8, 64\)"):
        p.image(torch.randn(2, 8, 64), (4, 4), torch.randn(16, 64), (4, 4))


def test_video_of_a_2d_tensor_is_rejected():
    p = OryxProjector(64, 32)
    with pytest.raises(InvalidInputError, match=r"frames must be \[T, h\*w, C\], got \(16, 64\)"):
        p.video(torch.randn(16, 64), (4, 4))


@pytest.mark.parametrize(
    "grid, match",
    [
        ((-4, -4), "grid height must be a positive integer, got -4"),
        ((0, 0), "grid height must be a positive integer, got 0"),
        ((4, 0), "grid width must be a positive integer, got 0"),
        ((4,), r"grid must be \(h, w\), got \(4,\)"),
    ],
)
def test_bad_grid_is_rejected(grid, match):
    p = OryxProjector(64, 32)
    with pytest.raises(InvalidInputError, match=match):
        p.video(torch.randn(1, 16, 64), grid)


def test_zero_frame_video_is_rejected():
    p = OryxProjector(64, 32)
    with pytest.raises(InvalidInputError, match="0 frames"):
        p.video(torch.randn(0, 16, 64), (4, 4))


def test_half_precision_features_are_cast_to_the_weights_dtype(fixtures):
    p = _projector(fixtures)
    frames = fixtures["proj_in_video"]
    out = p.video(frames.to(torch.bfloat16), (4, 6))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, p.video(frames.to(torch.bfloat16).float(), (4, 6)))


def test_integer_features_are_rejected():
    p = OryxProjector(64, 32)
    with pytest.raises(InvalidInputError, match="floating point, got torch.int64"):
        p.video(torch.zeros(1, 16, 64, dtype=torch.long), (4, 4))


def test_unknown_activation_is_a_config_error():
    with pytest.raises(ConfigError, match=r"projector act 'relu' not in \('gelu', "):
        OryxProjector(64, 32, act="relu")


@pytest.mark.parametrize("sizes", [(64, 0), (0, 32)])
def test_zero_sizes_are_config_errors(sizes):
    with pytest.raises(ConfigError, match="_size must be a positive integer, got 0"):
        OryxProjector(*sizes)
