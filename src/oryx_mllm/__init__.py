"""oryx-mllm: the Oryx multimodal LLM (OryxViT + Dynamic Compressor + any Hugging Face LLM).

The public names below are imported on first use (PEP 562), so ``import oryx_mllm`` and the
command line's ``--help`` start without loading torch; the typed errors are imported at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "choose_compression": "oryx_mllm.compression_policy",
    "default_compression": "oryx_mllm.compression_policy",
    "fit_to_budget": "oryx_mllm.compression_policy",
    "DynamicCompressor": "oryx_mllm.compressor",
    "OryxConfig": "oryx_mllm.config",
    "OryxForConditionalGeneration": "oryx_mllm.model",
    "Answer": "oryx_mllm.pipeline",
    "OryxPipeline": "oryx_mllm.pipeline",
    "default_model_path": "oryx_mllm.pipeline",
    "OryxProcessor": "oryx_mllm.processing.processor",
    "OryxProjector": "oryx_mllm.projector",
    "OryxViT": "oryx_mllm.vision",
    "OryxViTConfig": "oryx_mllm.vision",
}

if TYPE_CHECKING:  # what type checkers and IDEs see
    from oryx_mllm.compression_policy import choose_compression, default_compression, fit_to_budget
    from oryx_mllm.compressor import DynamicCompressor
    from oryx_mllm.config import OryxConfig
    from oryx_mllm.model import OryxForConditionalGeneration
    from oryx_mllm.pipeline import Answer, OryxPipeline, default_model_path
    from oryx_mllm.processing.processor import OryxProcessor
    from oryx_mllm.projector import OryxProjector
    from oryx_mllm.vision import OryxViT, OryxViTConfig


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'oryx_mllm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
