"""OryxViT, the native-resolution vision encoder, and its attention backends."""

from oryx_mllm.vision.attention import BACKENDS, resolve_backend, varlen_attention
from oryx_mllm.vision.config import OryxViTConfig
from oryx_mllm.vision.encoder import OryxViT, load_state_dict_file, resample_position_table
from oryx_mllm.vision.siglip import (
    convert_siglip_state_dict,
    load_from_siglip,
    oryx_config_from_siglip,
)

__all__ = [
    "BACKENDS",
    "OryxViT",
    "OryxViTConfig",
    "convert_siglip_state_dict",
    "load_from_siglip",
    "load_state_dict_file",
    "oryx_config_from_siglip",
    "resample_position_table",
    "resolve_backend",
    "varlen_attention",
]
