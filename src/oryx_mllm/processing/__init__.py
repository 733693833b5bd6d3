"""Turning user inputs (images, videos, multi-view scenes, chats) into model inputs."""

from oryx_mllm.processing.chat import (
    collate,
    encode_conversation,
    ensure_visual_token,
)
from oryx_mllm.processing.image import (
    load_image,
    normalize,
    preprocess_image,
    resize_highres,
    resize_lowres,
)
from oryx_mllm.processing.multiview import (
    draw_correspondence_marks,
    draw_marks,
    mark_color,
    mark_locations,
    preprocess_views,
)
from oryx_mllm.processing.options import ImageOptions, MarkStyle, MultiViewOptions, VideoOptions
from oryx_mllm.processing.processor import OryxProcessor
from oryx_mllm.processing.types import (
    MODALITIES,
    VisualInput,
    compressed_grid,
    image_token_count,
    video_token_count,
)
from oryx_mllm.processing.video import (
    is_long_video,
    preprocess_video,
    resize_video_frame,
    sample_video,
)

__all__ = [
    "OryxProcessor",
    "collate",
    "encode_conversation",
    "ensure_visual_token",
    "MODALITIES",
    "ImageOptions",
    "MarkStyle",
    "MultiViewOptions",
    "VideoOptions",
    "VisualInput",
    "compressed_grid",
    "draw_correspondence_marks",
    "draw_marks",
    "image_token_count",
    "is_long_video",
    "load_image",
    "mark_color",
    "mark_locations",
    "normalize",
    "preprocess_image",
    "preprocess_video",
    "preprocess_views",
    "resize_highres",
    "resize_lowres",
    "resize_video_frame",
    "sample_video",
    "video_token_count",
]
