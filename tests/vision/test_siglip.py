"""OryxViT initialised from a (tiny, random) Hugging Face SigLIP vision tower."""

from __future__ import annotations

import pytest
import torch
from transformers import SiglipConfig, SiglipModel, SiglipVisionConfig, SiglipVisionModel

from oryx_mllm.errors import CheckpointError
from oryx_mllm.vision import (
    OryxViT,
    convert_siglip_state_dict,
    load_from_siglip,
    oryx_config_from_siglip,
    resample_position_table,
)

IMAGE, PATCH = 32, 8  # a 4x4 source position grid
GRID = IMAGE // PATCH


def _siglip_config(**overrides) -> SiglipVisionConfig:
    base = dict(
        image_size=IMAGE,
        patch_size=PATCH,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    return SiglipVisionConfig(**{**base, **overrides})


def _siglip(**overrides) -> SiglipVisionModel:
    torch.manual_seed(0)
    model = SiglipVisionModel(_siglip_config(**overrides)).eval()
    # random init leaves LayerNorms at identity and biases at zero: perturb every parameter so a
    # wrong mapping (e.g. q/k swapped, norm1/norm2 swapped) cannot go unnoticed
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _reference(siglip: SiglipVisionModel, pixels: torch.Tensor) -> torch.Tensor:
    """The last hidden state before the post-LayerNorm: [B, N, C]."""
    with torch.no_grad():
        return siglip(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]


def _assert_matches(oryx: OryxViT, siglip: SiglipVisionModel, batch: int = 2) -> None:
    pixels = torch.randn(batch, 3, IMAGE, IMAGE)
    expected = _reference(siglip, pixels)
    with torch.no_grad():
        feats, grids = oryx.encode(list(pixels))
    assert grids == [(GRID, GRID)] * batch
    torch.testing.assert_close(torch.stack(feats), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["sdpa", "sdpa_masked", "math"])
def test_matches_siglip_at_native_size(backend):
    siglip = _siglip()
    oryx = load_from_siglip(siglip, position_grid=GRID, attention_backend=backend)
    assert oryx.config.hidden_act == "gelu_pytorch_tanh"
    assert oryx.config.layer_norm_eps == siglip.config.layer_norm_eps
    _assert_matches(oryx, siglip)


def test_state_dict_paths_agree():
    siglip = _siglip()
    cfg = oryx_config_from_siglip(siglip.config, position_grid=GRID)
    sd = siglip.state_dict()
    converted = convert_siglip_state_dict(sd, cfg)
    assert set(converted) == set(OryxViT(cfg).state_dict())
    # "vision_model." prefixed names (older checkpoints, full SiglipModel) give the same weights
    prefixed = {"vision_model." + k: v for k, v in sd.items()}
    prefixed |= {"text_model.embeddings.token_embedding.weight": torch.zeros(3, 2)}
    prefixed |= {"logit_scale": torch.zeros(1), "logit_bias": torch.zeros(1)}
    again = convert_siglip_state_dict(prefixed, cfg)
    assert all(torch.equal(converted[k], again[k]) for k in converted)
    # a bare state dict with an explicit config
    _assert_matches(load_from_siglip(prefixed, GRID, siglip_config=siglip.config), siglip)


def test_full_siglip_model_instance():
    text = dict(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
        vocab_size=64, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    full = SiglipModel(SiglipConfig(vision_config=_siglip_config().to_dict(), text_config=text))
    full.eval()
    oryx = load_from_siglip(full, position_grid=GRID)
    siglip = SiglipVisionModel(_siglip_config()).eval()
    siglip.load_state_dict(
        {
            k.removeprefix("vision_model."): v
            for k, v in full.state_dict().items()
            if k.startswith("vision_model.")
        }
    )
    _assert_matches(oryx, siglip)


def test_bigger_position_grid_resamples_table():
    siglip = _siglip()
    oryx = load_from_siglip(siglip, position_grid=12)
    source = siglip.state_dict()["embeddings.position_embedding.weight"]  # [16, C]
    assert oryx.pos_embed.shape == (1, 12 * 12, 32)
    back = resample_position_table(oryx.pos_embed.detach(), GRID)[0]  # [16, C]
    # bilinear up then down is smooth, not exact: close relative to the table's spread
    err = (back - source).abs().max() / source.abs().max()
    assert err < 0.35, err
    # and the resampled-to-native table is far closer to the source than a random table
    assert (back - source).norm() < 0.5 * source.norm()
    # integer upsampling factor 3 keeps grid cell centres: resampling to G*3 then picking the
    # centre of each 3x3 block (align_corners=False) recovers the interior exactly
    three = load_from_siglip(siglip, position_grid=GRID * 3).pos_embed.detach()
    centres = three.reshape(GRID * 3, GRID * 3, -1)[1::3, 1::3].reshape(GRID * GRID, -1)
    torch.testing.assert_close(centres, source, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("act", ["gelu_pytorch_tanh", "gelu"])
def test_activation_follows_source(act):
    siglip = _siglip(hidden_act=act)
    oryx = load_from_siglip(siglip, position_grid=GRID)
    assert oryx.config.hidden_act == act
    assert oryx.blocks[0].mlp.act.approximate == ("tanh" if act == "gelu_pytorch_tanh" else "none")
    _assert_matches(oryx, siglip)


def test_override_activation_changes_output():
    siglip = _siglip()
    oryx = load_from_siglip(siglip, position_grid=GRID, hidden_act="gelu")
    pixels = torch.randn(1, 3, IMAGE, IMAGE) * 3
    with torch.no_grad():
        feats, _ = oryx.encode(list(pixels))
    assert not torch.allclose(feats[0], _reference(siglip, pixels)[0], atol=1e-5)


def test_loads_save_pretrained_folder(tmp_path):
    siglip = _siglip(hidden_act="gelu", layer_norm_eps=1e-5)
    siglip.save_pretrained(tmp_path)
    oryx = load_from_siglip(tmp_path, position_grid=GRID)
    assert oryx.config.hidden_act == "gelu" and oryx.config.layer_norm_eps == 1e-5
    _assert_matches(oryx, siglip)


def test_native_size_encode_of_other_sizes_runs():
    oryx = load_from_siglip(_siglip(), position_grid=GRID)
    with torch.no_grad():
        feats, grids = oryx.encode([torch.randn(3, 24, 40), torch.randn(3, 33, 8)])
    assert grids == [(3, 5), (5, 1)]
    assert [f.shape for f in feats] == [(15, 32), (5, 32)]


def test_wrong_depth_or_unknown_keys_fail():
    siglip = _siglip()
    sd = siglip.state_dict()
    cfg = oryx_config_from_siglip(siglip.config, position_grid=GRID, depth=3)
    with pytest.raises(CheckpointError, match="layers"):
        convert_siglip_state_dict(sd, cfg)
    cfg = oryx_config_from_siglip(siglip.config, position_grid=GRID)
    with pytest.raises(CheckpointError, match="unrecognised"):
        convert_siglip_state_dict({**sd, "encoder.layers.0.extra.weight": torch.zeros(1)}, cfg)
    with pytest.raises(CheckpointError, match="k.weight"):
        convert_siglip_state_dict(
            {k: v for k, v in sd.items() if k != "encoder.layers.1.self_attn.k_proj.weight"}, cfg
        )
