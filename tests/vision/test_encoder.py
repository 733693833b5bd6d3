"""OryxViT against the original implementation's numbers, and its packing/limits behaviour."""

from __future__ import annotations

import pytest
import torch

from oryx_mllm import InvalidInputError, OryxViT, OryxViTConfig
from oryx_mllm.errors import CheckpointError

ATOL = 1e-5


def reference_vit(fixtures, backend: str = "sdpa") -> OryxViT:
    model = OryxViT(OryxViTConfig.tiny(attention_backend=backend)).eval()
    model.load_weights(
        {k.removeprefix("vit."): v for k, v in fixtures.items() if k.startswith("vit.")}
    )
    return model


def reference_inputs(fixtures) -> list[torch.Tensor]:
    return [fixtures[f"vit_in.{i}"][0] for i in range(4)]


@pytest.mark.parametrize("backend", ["sdpa", "math", "sdpa_masked"])
@torch.no_grad()
def test_packed_encode_matches_reference(fixtures, backend):
    model = reference_vit(fixtures, backend)
    feats, grids = model.encode(reference_inputs(fixtures))
    for i, (feat, grid) in enumerate(zip(feats, grids)):
        assert grid == tuple(fixtures[f"vit_grid.{i}"].tolist())
        torch.testing.assert_close(feat, fixtures[f"vit_out.{i}"][0], atol=ATOL, rtol=0)


@torch.no_grad()
def test_single_image_matches_reference(fixtures):
    model = reference_vit(fixtures)
    feats, _ = model.encode([fixtures["vit_in.1"][0]])
    torch.testing.assert_close(feats[0], fixtures["vit_single_out"][0], atol=ATOL, rtol=0)


@torch.no_grad()
def test_position_table_resampled_like_reference(fixtures):
    model = reference_vit(fixtures)
    torch.testing.assert_close(
        model.position_embedding(5, 9), fixtures["pe_5x9"][0], atol=ATOL, rtol=0
    )


@torch.no_grad()
def test_position_table_cached_per_grid(fixtures):
    model = reference_vit(fixtures)
    first = model.position_embedding(7, 3)
    assert model.position_embedding(7, 3) is first
    model.load_weights(
        {k.removeprefix("vit."): v for k, v in fixtures.items() if k.startswith("vit.")}
    )
    assert model.position_embedding(7, 3) is not first  # reload invalidates the cache


@torch.no_grad()
def test_packed_equals_one_by_one():
    model = OryxViT(OryxViTConfig.tiny()).eval()
    images = [torch.randn(3, h, w) for h, w in [(32, 48), (80, 16), (17, 33), (64, 64)]]
    packed, grids = model.encode(images)
    for img, feat, grid in zip(images, packed, grids):
        alone, (g,) = model.encode([img])
        assert g == grid
        torch.testing.assert_close(feat, alone[0], atol=1e-5, rtol=0)


@torch.no_grad()
def test_padding_is_to_multiple_of_patch_size():
    model = OryxViT(OryxViTConfig.tiny()).eval()
    img = torch.randn(3, 37, 53)
    padded = torch.zeros(3, 48, 64)
    padded[:, :37, :53] = img
    a, ga = model.encode([img])
    b, gb = model.encode([padded])
    assert ga == gb == [(3, 4)]
    torch.testing.assert_close(a[0], b[0])


def test_gradients_reach_position_table_and_blocks():
    model = OryxViT(OryxViTConfig.tiny(gradient_checkpointing=True)).train()
    feats, _ = model.encode([torch.randn(3, 32, 48), torch.randn(3, 16, 16)])
    torch.cat(feats).pow(2).mean().backward()
    assert model.pos_embed.grad is not None and model.pos_embed.grad.abs().sum() > 0
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_half_precision_close_to_fp32(fixtures, dtype):
    model = reference_vit(fixtures)
    ref, _ = model.encode(reference_inputs(fixtures))
    half, _ = model.to(dtype).encode([x.to(dtype) for x in reference_inputs(fixtures)])
    for r, h in zip(ref, half):
        assert h.dtype == dtype
        assert (h.float() - r).abs().max() / r.abs().max() < 0.05


@pytest.mark.parametrize(
    "images, match",
    [
        ([], "empty list"),
        ([torch.randn(4, 32, 32)], r"expected \[3, H, W\]"),
        ([torch.randn(32, 32)], r"expected \[3, H, W\]"),
        ([torch.zeros(3, 32, 32, dtype=torch.uint8)], "dtype torch.uint8"),
        ([torch.zeros(3, 0, 32)], "empty"),
        (["not a tensor"], "not a tensor"),
    ],
)
def test_bad_inputs_raise_typed_errors(images, match):
    model = OryxViT(OryxViTConfig.tiny())
    with pytest.raises(InvalidInputError, match=match):
        model.encode(images)


def test_image_over_configured_maximum_is_rejected():
    model = OryxViT(OryxViTConfig.tiny(max_patches_per_image=64))
    model.encode([torch.randn(3, 128, 128)])  # exactly 64 patches is fine
    with pytest.raises(InvalidInputError, match="max_patches_per_image=64"):
        model.encode([torch.randn(3, 128, 144)])


def test_missing_weights_are_fatal_extra_weights_reported(fixtures):
    model = OryxViT(OryxViTConfig.tiny())
    weights = {k.removeprefix("vit."): v for k, v in fixtures.items() if k.startswith("vit.")}
    extra = model.load_weights({**weights, "head.weight": torch.zeros(1)})
    assert extra == ["head.weight"]
    del weights["blocks.1.mlp.fc2.weight"]
    with pytest.raises(CheckpointError, match="blocks.1.mlp.fc2.weight"):
        model.load_weights(weights)


def test_from_pretrained_reads_pth_safetensors_and_folder(fixtures, tmp_path):
    from safetensors.torch import save_file

    weights = {k.removeprefix("vit."): v for k, v in fixtures.items() if k.startswith("vit.")}
    torch.save({**weights, "extra.bias": torch.zeros(2)}, tmp_path / "oryx_vit.pth")
    save_file(weights, str(tmp_path / "oryx_vit.safetensors"))
    cfg = OryxViTConfig.tiny()
    x = [fixtures["vit_in.1"][0]]
    expected = fixtures["vit_single_out"][0]
    for path in (tmp_path / "oryx_vit.pth", tmp_path / "oryx_vit.safetensors"):
        model = OryxViT.from_pretrained(path, config=cfg).eval()
        with torch.no_grad():
            torch.testing.assert_close(model.encode(x)[0][0], expected, atol=ATOL, rtol=0)
    model.save_pretrained(tmp_path / "saved")
    again = OryxViT.from_pretrained(tmp_path / "saved").eval()
    assert again.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(again.encode(x)[0][0], expected, atol=ATOL, rtol=0)


def test_corrupt_weights_file_raises_checkpoint_error(tmp_path):
    bad = tmp_path / "oryx_vit.pth"
    bad.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="oryx_vit.pth"):
        OryxViT.from_pretrained(bad, config=OryxViTConfig.tiny())
    with pytest.raises(CheckpointError, match="not found"):
        OryxViT.from_pretrained(tmp_path / "missing.pth")


def test_torch_compile_matches_eager():
    model = OryxViT(OryxViTConfig.tiny()).eval()
    x = torch.randn(1, 12, 64)
    with torch.no_grad():
        eager = model(x[0], [12])
        compiled = torch.compile(model)(x[0], [12])  # inductor on CPU
    torch.testing.assert_close(compiled, eager)


def test_sincos_position_table_encodes_column_and_row():
    from oryx_mllm.vision.encoder import sincos_position_table

    grid, dim = 6, 16
    table = sincos_position_table(grid, dim, scale=0.5).reshape(grid, grid, dim)  # [row, col, C]
    cols, rows = table[..., : dim // 2], table[..., dim // 2 :]
    assert torch.equal(cols, cols[:1].expand_as(cols))  # column channels: same in every row
    assert torch.equal(rows, rows[:, :1].expand_as(rows))  # row channels: same in every column
    # the lowest frequency spans half a period across the grid: its cosine falls monotonically
    lowest_cos = cols[0, :, dim // 4]
    assert torch.all(lowest_cos[1:] < lowest_cos[:-1])
    assert table.abs().max() <= 0.5
    # every position is distinct
    assert len({tuple(v.tolist()) for v in table.reshape(-1, dim)}) == grid * grid


def test_sincos_position_init_fills_the_table():
    from oryx_mllm.vision.encoder import SINCOS_SCALE, sincos_position_table

    cfg = OryxViTConfig.tiny(position_init="sincos")
    model = OryxViT(cfg)
    expected = sincos_position_table(cfg.position_grid, cfg.hidden_size, SINCOS_SCALE)
    assert torch.equal(model.pos_embed.data[0], expected)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"position_init": "learned"}, "position_init"),
        ({"position_init": "sincos", "hidden_size": 6, "num_heads": 2}, "divisible by 4"),
    ],
)
def test_bad_position_init_is_a_config_error(overrides, match):
    from oryx_mllm.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        OryxViTConfig.tiny(**overrides)


@pytest.mark.parametrize("grid, dim", [(0, 8), (4, 6), (4, 0)])
def test_sincos_position_table_rejects_bad_sizes(grid, dim):
    from oryx_mllm.errors import ConfigError
    from oryx_mllm.vision.encoder import sincos_position_table

    with pytest.raises(ConfigError, match="sincos position table"):
        sincos_position_table(grid, dim)


def test_a_failed_save_of_another_shape_keeps_the_folder_consistent(tmp_path, monkeypatch):
    import safetensors.torch

    OryxViT(OryxViTConfig.tiny()).save_pretrained(tmp_path / "vit")

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OSError, match="disk full"):
        OryxViT(OryxViTConfig.tiny(depth=3)).save_pretrained(tmp_path / "vit")
    monkeypatch.undo()
    assert OryxViT.from_pretrained(tmp_path / "vit").config == OryxViTConfig.tiny()


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"num_heads": 0}, "num_heads must be a positive integer, got 0"),
        ({"num_heads": -4}, "num_heads must be a positive integer, got -4"),
        ({"mlp_hidden_size": 0}, "mlp_hidden_size must be a positive integer, got 0"),
        ({"hidden_size": "64"}, "hidden_size must be a positive integer, got '64'"),
    ],
)
def test_bad_sizes_are_config_errors_naming_the_field(overrides, match):
    from oryx_mllm.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        OryxViTConfig.tiny(**overrides)


def test_from_dict_of_none_is_a_config_error():
    from oryx_mllm.errors import ConfigError

    with pytest.raises(ConfigError, match="vision_config must be a mapping"):
        OryxViTConfig.from_dict(None)


def test_a_wrong_typed_field_in_a_folder_config_names_the_file_and_field(tmp_path):
    import json

    from oryx_mllm.errors import ConfigError

    OryxViT(OryxViTConfig.tiny()).save_pretrained(tmp_path / "vit")
    config = json.loads((tmp_path / "vit" / "config.json").read_text())
    (tmp_path / "vit" / "config.json").write_text(json.dumps({**config, "hidden_size": "64"}))
    with pytest.raises(ConfigError, match=r"config\.json: hidden_size must be a positive integer"):
        OryxViT.from_pretrained(tmp_path / "vit")


def test_from_pretrained_takes_a_dtype_name(tmp_path):
    OryxViT(OryxViTConfig.tiny()).save_pretrained(tmp_path / "vit")
    model = OryxViT.from_pretrained(tmp_path / "vit", torch_dtype="bfloat16")
    assert model.pos_embed.dtype == torch.bfloat16


def test_from_pretrained_on_a_missing_gpu_is_a_config_error(tmp_path, monkeypatch):
    from oryx_mllm.errors import ConfigError

    OryxViT(OryxViTConfig.tiny()).save_pretrained(tmp_path / "vit")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        OryxViT.from_pretrained(tmp_path / "vit", device="cuda")


@pytest.mark.parametrize("shape", [(), (9,), (1, 0, 32), (1, 16, 5)])
def test_a_malformed_position_table_names_its_shape(fixtures, shape):
    model = OryxViT(OryxViTConfig.tiny())
    weights = {k.removeprefix("vit."): v for k, v in fixtures.items() if k.startswith("vit.")}
    weights["pos_embed"] = torch.zeros(shape)
    width = model.config.hidden_size
    with pytest.raises(CheckpointError) as info:
        model.load_weights(weights)
    assert str(info.value) == (
        f"OryxViT weight 'pos_embed' has shape {shape}; expected [1, G*G, {width}] "
        f"(a square grid of width-{width} vectors)"
    )


def test_unreadable_weights_files_say_why(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pth: zero-byte file"):
        OryxViT.from_pretrained(empty, config=OryxViTConfig.tiny())
    pickled = tmp_path / "objects.pth"
    torch.save({"config": OryxViTConfig.tiny()}, pickled)  # not tensors only
    with pytest.raises(CheckpointError) as info:
        OryxViT.from_pretrained(pickled, config=OryxViTConfig.tiny())
    assert "not a PyTorch checkpoint of tensors only" in str(info.value)
    assert "weights_only=False" not in str(info.value)


def test_the_encoder_of_a_whole_oryx_model_folder_loads(tmp_path):
    from oryx_tiny import byte_tokenizer, tiny_model

    model = tiny_model("qwen2", byte_tokenizer())
    model.save_pretrained(tmp_path / "oryx")
    for path in (tmp_path / "oryx", tmp_path / "oryx" / "model.safetensors"):
        config = None if path.is_dir() else model.vision_tower.config
        vit = OryxViT.from_pretrained(path, config=config)
        assert vit.config == model.vision_tower.config
        for name, tensor in model.vision_tower.state_dict().items():
            torch.testing.assert_close(vit.state_dict()[name], tensor, atol=0, rtol=0)
