"""oryx_mllm.data.synthetic: bad names, seeds, splits and counts are typed ConfigErrors that
list the accepted values (ConfigError is a ValueError, so `except ValueError` still works)."""

from __future__ import annotations

import pytest

from oryx_mllm.data.synthetic import (
    _schedule,
    check_seed,
    generate,
    list_tasks,
    make_split,
    split_seed,
)
from oryx_mllm.data.synthetic.common import sample_rng
from oryx_mllm.errors import ConfigError


def test_unknown_task_or_family_lists_the_names():
    with pytest.raises(ConfigError, match=r"unknown task or family 'bogus'; families: \["):
        list_tasks("bogus")


def test_unknown_task_in_generate_lists_the_tasks():
    with pytest.raises(ConfigError, match=r"unknown task 'objects'; tasks: \['documents/"):
        generate("objects", 0, 0)


def test_negative_count_is_a_config_error():
    with pytest.raises(ConfigError, match="count of 'objects' must be an integer >= 0, got -2"):
        _schedule({"objects": -2})


def test_seed_outside_the_split_states_the_range():
    with pytest.raises(ConfigError, match="train seed must be an integer >= 0 and < 1000000"):
        check_seed(5_000_000, "train")


def test_unknown_split_lists_the_splits():
    with pytest.raises(ConfigError, match=r"split must be one of \['train', 'test'\], got 'val'"):
        make_split({"objects": 1}, 5, split="val")


def test_split_seed_of_unknown_split_is_a_config_error():
    with pytest.raises(ConfigError, match="split must be one of"):
        split_seed("val")


def test_negative_seed_in_sample_rng_is_a_config_error():
    with pytest.raises(ConfigError, match="seed must be an integer >= 0, got -1"):
        sample_rng(-1, "objects/color", 0)


def test_config_error_is_still_a_value_error():
    with pytest.raises(ValueError):
        list_tasks("bogus")


def test_resolve_task_kwargs_spreads_a_family_over_its_tasks():
    from oryx_mllm.data.synthetic import resolve_task_kwargs

    out = resolve_task_kwargs({"long_videos": {"depth": 0.5}, "long_videos/digit": {"depth": 0.1}})
    assert out == {
        "long_videos/color": {"depth": 0.5},
        "long_videos/digit": {"depth": 0.1},
        "long_videos/shape": {"depth": 0.5},
    }
