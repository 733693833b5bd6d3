"""OryxViT, the native-resolution vision encoder, and its attention backends."""

from oryx_mllm.vision.attention import BACKENDS, resolve_backend, varlen_attention
from oryx_mllm.vision.config import OryxViTConfig
from oryx_mllm.vision.encoder import OryxViT, load_state_dict_file, resample_position_table

__all__ = [
    "BACKENDS",
    "OryxViT",
    "OryxViTConfig",
    "load_state_dict_file",
    "resample_position_table",
    "resolve_backend",
    "varlen_attention",
]
