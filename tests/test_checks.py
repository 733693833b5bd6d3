"""The shared value checks: what passes, and the rule each error states."""

import numpy as np
import pytest

from oryx_mllm.checks import check_bool, check_number, check_range
from oryx_mllm.errors import ConfigError, InvalidInputError


@pytest.mark.parametrize(
    "value, kw, message",
    [
        ("3", {"integer": True, "at_least": 1}, "n must be a positive integer, got '3'"),
        (0, {"integer": True, "at_least": 1}, "n must be a positive integer, got 0"),
        (True, {"integer": True, "at_least": 1}, "n must be a positive integer, got True"),
        (0.0, {"above": 0}, "n must be a positive number, got 0.0"),
        (1.0, {"at_least": 0, "below": 1}, "n must be a number >= 0 and < 1, got 1.0"),
        (2.5, {"integer": True}, "n must be an integer, got 2.5"),
    ],
)
def test_check_range_states_the_whole_rule(value, kw, message):
    with pytest.raises(ConfigError) as info:
        check_range("n", value, **kw)
    assert str(info.value) == message


def test_numbers_within_the_bounds_pass():
    check_range("n", np.int64(3), integer=True, at_least=1)
    check_range("n", 0.5, at_least=0, below=1)
    check_number("n", 7, integer=True)
    check_bool("flag", False)


def test_the_error_type_can_be_chosen():
    with pytest.raises(InvalidInputError, match="temperature must be a number"):
        check_number("temperature", "0.5", error=InvalidInputError)
    with pytest.raises(ConfigError, match="flag must be true or false, got 'false'"):
        check_bool("flag", "false")


def test_integer_like_values_pass_integer_checks():
    import torch

    for value in (np.int64(3), torch.tensor(3), torch.tensor([3])):
        check_range("n", value, integer=True, at_least=1)
    with pytest.raises(ConfigError, match="must be an integer"):
        check_number("n", torch.tensor(3.0), integer=True)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), np.float32("inf")])
def test_nan_and_infinities_are_not_numbers(value):
    with pytest.raises(InvalidInputError, match="temperature must be a number"):
        check_number("temperature", value, error=InvalidInputError)
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        check_range("lr", value, above=0)
