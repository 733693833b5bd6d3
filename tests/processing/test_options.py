"""Preprocessing options refuse wrong-typed or wrong-sized values at construction."""

from __future__ import annotations

import pytest

from oryx_mllm.errors import ConfigError
from oryx_mllm.processing.options import (
    ImageOptions,
    MarkStyle,
    MultiViewOptions,
    VideoOptions,
    image_options_from_dict,
)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ImageOptions(mean=(0.5, 0.5)), r"mean must have 3 values"),
        (
            lambda: ImageOptions(max_pixels="big"),
            "max_pixels must be a positive integer, got 'big'",
        ),
        (lambda: VideoOptions(fps="1"), "fps must be a positive number, got '1'"),
        (
            lambda: MarkStyle(radius_frac="a"),
            "marks.radius_frac must be a positive number, got 'a'",
        ),
        (lambda: MultiViewOptions(frame={"fps": 2}), "frame must be a VideoOptions, got dict"),
    ],
)
def test_a_wrong_typed_option_is_a_config_error_naming_it(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_options_from_a_list_are_a_config_error():
    with pytest.raises(ConfigError, match="ImageOptions must be a mapping, not a list"):
        image_options_from_dict([1])


@pytest.mark.parametrize("name", ["compression", "long_compression"])
def test_video_ratios_are_the_candidate_ratios(name):
    with pytest.raises(ConfigError, match=rf"{name} must be one of \(1, 2, 4, 8, 16\), got 3"):
        VideoOptions(**{name: 3})
