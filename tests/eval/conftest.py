"""Fixtures for the evaluation tests: a tiny random Oryx folder saved to disk (nothing downloaded)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for oryx_tiny

from oryx_mllm.pipeline import OryxPipeline, default_model_path  # noqa: E402
from oryx_mllm.processing.options import ImageOptions, MultiViewOptions, VideoOptions  # noqa: E402
from oryx_mllm.processing.processor import OryxProcessor  # noqa: E402
from oryx_tiny import byte_tokenizer, tiny_model  # noqa: E402

SMALL_VIDEO = VideoOptions(
    min_pixels=64 * 64,
    max_pixels=64 * 64,
    multiple=64,
    long_multiple=64,
    max_frames=8,
    long_max_frames=16,
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised tiny Oryx (Qwen2 LLM, byte tokenizer) saved with small media sizes."""
    tok = byte_tokenizer()
    processor = OryxProcessor(
        tok,
        image_options=ImageOptions(lowres_pixels=32 * 32, max_pixels=128 * 128),
        video_options=SMALL_VIDEO,
        multiview_options=MultiViewOptions(frame=SMALL_VIDEO),
    )
    folder = tmp_path_factory.mktemp("oryx-tiny-random")
    OryxPipeline(tiny_model("qwen2", tok), processor).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def default_or_tiny_dir(tiny_model_dir) -> Path:
    """The embedded default model when it is installed, else the tiny random one."""
    default = default_model_path()
    return default if (default / "config.json").exists() else tiny_model_dir
