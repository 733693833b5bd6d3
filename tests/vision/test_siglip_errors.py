"""load_from_siglip: malformed folders, state dicts and overrides are typed errors naming the
file or key."""

from __future__ import annotations

import pytest
import torch
from transformers import SiglipVisionConfig, SiglipVisionModel

from oryx_mllm.errors import CheckpointError, ConfigError
from oryx_mllm.vision import load_from_siglip

PATCH_WEIGHT = "embeddings.patch_embedding.weight"


@pytest.fixture
def folder(tmp_path):
    config = SiglipVisionConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
    )
    SiglipVisionModel(config).save_pretrained(tmp_path)
    return tmp_path


def test_malformed_config_json_is_a_checkpoint_error(folder):
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        load_from_siglip(folder, position_grid=4)


def test_shard_index_without_weight_map_is_a_checkpoint_error(folder):
    (folder / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"index\.json has no weight_map object"):
        load_from_siglip(folder, position_grid=4)


def test_unknown_override_through_a_folder_is_a_config_error(folder):
    with pytest.raises(ConfigError, match=r"unknown OryxViTConfig keys: \['bogus'\]"):
        load_from_siglip(folder, position_grid=4, bogus=1)


def test_state_dict_without_layers_is_a_checkpoint_error():
    sd = {PATCH_WEIGHT: torch.zeros(768, 3, 16, 16)}
    with pytest.raises(CheckpointError, match=r"no encoder\.layers\.N weights"):
        load_from_siglip(sd)


def test_state_dict_without_mlp_fc1_is_a_checkpoint_error():
    sd = {
        PATCH_WEIGHT: torch.zeros(768, 3, 16, 16),
        "encoder.layers.0.layer_norm1.weight": torch.ones(768),
    }
    with pytest.raises(CheckpointError, match=r"lacks encoder\.layers\.0\.mlp\.fc1\.weight"):
        load_from_siglip(sd)
