"""oryx-mllm: the Oryx multimodal LLM (OryxViT + Dynamic Compressor + any Hugging Face LLM)."""

from oryx_mllm.compression_policy import choose_compression, default_compression, fit_to_budget
from oryx_mllm.compressor import DynamicCompressor
from oryx_mllm.config import OryxConfig
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
from oryx_mllm.model import OryxForConditionalGeneration
from oryx_mllm.pipeline import Answer, OryxPipeline, default_model_path
from oryx_mllm.processing.processor import OryxProcessor
from oryx_mllm.projector import OryxProjector
from oryx_mllm.vision import OryxViT, OryxViTConfig

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "OryxPipeline",
    "default_model_path",
    "DynamicCompressor",
    "OryxConfig",
    "OryxForConditionalGeneration",
    "OryxProcessor",
    "OryxProjector",
    "choose_compression",
    "default_compression",
    "fit_to_budget",
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
