"""``data.multiview`` in a recipe: the views' own size and mark style, in training and in the
saved ``processor_config.json``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

from oryx_mllm.errors import ConfigError
from oryx_mllm.processing.options import MarkStyle
from oryx_mllm.processing.processor import OryxProcessor
from oryx_mllm.train.config import DataSpec, TrainConfig
from oryx_mllm.train.trainer import _save_processor_config
from oryx_mllm.train.transform import TrainTransform

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from oryx_tiny import byte_tokenizer  # noqa: E402

VIDEO_64 = {"min_pixels": 4096, "max_pixels": 4096, "multiple": 32, "long_multiple": 64}
VIEWS_128 = {"frame": {"min_pixels": 16384, "max_pixels": 16384}, "marks": {"radius_frac": 0.1}}


def _item(modality: str, n: int = 2) -> dict:
    frames = [Image.new("RGB", (160, 160), (40 * i, 90, 200)) for i in range(n)]
    conv = [{"from": "human", "value": "<video>\nHow many?"}, {"from": "gpt", "value": "2"}]
    return {"id": "s:0", "modality": modality, "media": [frames], "conversations": conv}


def _transform(data: DataSpec) -> TrainTransform:
    tok = byte_tokenizer()
    return TrainTransform(tok, tok.convert_tokens_to_ids("<|visual_pad|>"), data)


def test_views_default_to_the_video_frame_size():
    t = _transform(DataSpec(video=VIDEO_64))
    (scene,) = t.visual_inputs(_item("multiview"))
    assert [tuple(f.shape[1:]) for f in scene.frames] == [(64, 64)] * 2
    assert t.view_options.marks == MarkStyle()


def test_multiview_block_sizes_views_apart_from_video_frames():
    t = _transform(DataSpec(video=VIDEO_64, multiview=VIEWS_128))
    (scene,) = t.visual_inputs(_item("multiview"))
    (clip,) = t.visual_inputs(_item("video"))
    assert [tuple(f.shape[1:]) for f in scene.frames] == [(128, 128)] * 2
    assert [tuple(f.shape[1:]) for f in clip.frames] == [(64, 64)] * 2
    assert t.view_options.marks.radius_frac == 0.1
    assert t.view_options.frame.multiple == 32  # the rest of the frame policy comes from video


@pytest.mark.parametrize(
    ("multiview", "match"),
    [
        ({"bogus": 1}, "unknown MultiViewOptions keys: \\['bogus'\\]"),
        ({"marks": {"colour": 1}}, "unknown MarkStyle keys"),
        ({"marks": {"radius_frac": 0}}, "radius_frac must be a positive number"),
        ({"frame": {"max_pixels": 0}}, "max_pixels must be a positive integer"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_bad_multiview_block_is_a_config_error_naming_the_key(multiview, match):
    with pytest.raises(ConfigError, match=match):
        DataSpec(multiview=multiview)


def test_saved_processor_config_carries_the_multiview_block(tmp_path):
    cfg = TrainConfig(data=DataSpec(video=VIDEO_64, multiview=VIEWS_128))
    _save_processor_config(cfg, byte_tokenizer(), 16, tmp_path)
    options = OryxProcessor.from_pretrained(tmp_path).multiview_options
    assert options == cfg.data.multiview_options()
    assert (options.frame.max_pixels, options.marks.radius_frac) == (16384, 0.1)
