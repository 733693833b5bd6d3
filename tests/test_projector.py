import torch

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
