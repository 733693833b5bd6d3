"""Small value checks shared by the configs and entry points.

Each raises a typed error (``ConfigError`` unless told otherwise) that names the value and the
rule, e.g. ``max_pixels must be a positive integer, got 'big'``. A bool is never a number here
(``True`` is an ``int`` to Python, not to a recipe), nor is a numeric string.
"""

from __future__ import annotations

import math
import numbers
import operator

from oryx_mllm.errors import ConfigError, OryxError

_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def _is_number(value, integer: bool) -> bool:
    """A finite real number (an integer when ``integer``: Python, numpy or a one-element integer
    tensor, anything ``operator.index`` takes); never a bool, a string, NaN or an infinity (a
    temperature of ``inf`` or a learning rate of ``.inf`` is a mistake, not a setting)."""
    if isinstance(value, bool):
        return False
    if not integer:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def check_number(
    name: str, value, integer: bool = False, error: type[OryxError] = ConfigError
) -> None:
    """``value`` is a finite real number (an integer when ``integer``)."""
    if not _is_number(value, integer):
        raise error(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")


def check_range(
    name: str,
    value,
    integer: bool = False,
    *,
    at_least=None,
    above=None,
    at_most=None,
    below=None,
    error: type[OryxError] = ConfigError,
) -> None:
    """``value`` is a number (an integer when ``integer``) within the bounds given; the error
    states the whole rule (``must be a positive integer``, ``must be a number >= 0 and < 1``)."""
    bounds = {">=": at_least, ">": above, "<=": at_most, "<": below}
    bounds = {op: bound for op, bound in bounds.items() if bound is not None}
    if _is_number(value, integer) and all(
        _COMPARE[op](value, bound) for op, bound in bounds.items()
    ):
        return
    noun = "integer" if integer else "number"
    if bounds in ({">": 0}, {">=": 1} if integer else None):
        want = f"a positive {noun}"
    else:
        rule = " and ".join(f"{op} {bound}" for op, bound in bounds.items())
        want = f"{'an' if integer else 'a'} {noun} {rule}".rstrip()
    raise error(f"{name} must be {want}, got {value!r}")


def check_bool(name: str, value, error: type[OryxError] = ConfigError) -> None:
    """``value`` is ``True`` or ``False`` (not a string such as ``"false"``, not 0 or 1)."""
    if not isinstance(value, bool):
        raise error(f"{name} must be true or false, got {value!r}")


def check_mapping(name: str, value, error: type[OryxError] = ConfigError) -> None:
    """``value`` is a mapping (a JSON object / YAML block)."""
    if not isinstance(value, dict):
        raise error(f"{name} must be a mapping, not a {type(value).__name__}")


def check_text(name: str, text: str, error: type[OryxError] = ConfigError) -> None:
    """``text`` is valid Unicode. JSON can carry a lone UTF-16 surrogate (``"\\ud800"``), which no
    tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise error(
            f"{name} is not valid Unicode: a lone UTF-16 surrogate {text[e.start : e.end]!r} at "
            f"position {e.start}"
        ) from None
