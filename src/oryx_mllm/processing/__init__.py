"""Turning user inputs (images, videos, multi-view scenes, chats) into model inputs."""

from oryx_mllm.processing.types import (
    MODALITIES,
    VisualInput,
    compressed_grid,
    image_token_count,
    video_token_count,
)

__all__ = [
    "MODALITIES",
    "VisualInput",
    "compressed_grid",
    "image_token_count",
    "video_token_count",
]
