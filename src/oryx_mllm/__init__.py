"""oryx-mllm: the Oryx multimodal LLM (OryxViT + Dynamic Compressor + any Hugging Face LLM)."""

from oryx_mllm.errors import (
    CheckpointError,
    ConfigError,
    ContextLengthError,
    ImageDecodeError,
    InvalidInputError,
    OryxError,
    UnsupportedModalityError,
    VideoDecodeError,
)
from oryx_mllm.vision import OryxViT, OryxViTConfig

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ContextLengthError",
    "ImageDecodeError",
    "InvalidInputError",
    "OryxError",
    "OryxViT",
    "OryxViTConfig",
    "UnsupportedModalityError",
    "VideoDecodeError",
]
