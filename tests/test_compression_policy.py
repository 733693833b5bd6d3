"""The compression policy as the processor applies it: valid ratios, explicit ratios and budgets."""

import time

import numpy as np
import pytest
import torch

from oryx_mllm.compression_policy import CANDIDATE_RATIOS, check_ratio, fit_to_budget
from oryx_mllm.errors import ContextLengthError, InvalidInputError
from oryx_mllm.processing.processor import OryxProcessor
from oryx_mllm.processing.types import VisualInput
from oryx_tiny import byte_tokenizer


@pytest.fixture(scope="module")
def proc() -> OryxProcessor:
    return OryxProcessor(byte_tokenizer())


def rgb(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def ask(part: dict, **kw) -> dict:
    return [{"role": "user", "content": [part, "what?"]}], kw


def items_of(proc, part: dict, **kw) -> list[VisualInput]:
    conv, kw = ask(part, **kw)
    return proc(conv, **kw)["visual_inputs"]


@pytest.mark.parametrize("ratio", CANDIDATE_RATIOS)
def test_candidate_ratios_are_accepted(ratio):
    assert check_ratio(ratio) == ratio


@pytest.mark.parametrize("ratio", [0, -2, 3, 32, 1000, 1.5, "2", True, None])
def test_other_ratios_are_refused_and_named(ratio):
    with pytest.raises(InvalidInputError, match=r"compression must be one of 1, 2, 4, 8, 16"):
        check_ratio(ratio)


def test_a_huge_ratio_is_refused_before_the_image_is_resized(proc):
    t0 = time.perf_counter()
    with pytest.raises(InvalidInputError, match="got 1000"):
        items_of(proc, {"type": "image", "image": rgb(48, 64), "compression": 1000})
    assert time.perf_counter() - t0 < 2  # was a 16000x16000 upscale (13 GB) before the error


@pytest.mark.parametrize("kind", ["image", "multiview"])
def test_ratio_zero_is_an_error_not_the_default(proc, kind):
    part = (
        {"type": "image", "image": rgb(64, 64)}
        if kind == "image"
        else {"type": "multiview", "views": [rgb(64, 64), rgb(64, 64)]}
    )
    with pytest.raises(InvalidInputError, match="got 0"):
        items_of(proc, {**part, "compression": 0})


@pytest.mark.parametrize(
    "part, ratio",
    [
        ({"type": "image", "image": rgb(480, 640)}, 4),  # 30x40 patches at 1x: no 4x4
        ({"type": "video", "video": [rgb(360, 640)] * 3}, 8),  # 20x40 at 2x2: no 8x8
    ],
    ids=["image", "video"],
)
def test_budget_remakes_an_input_at_a_ratio_its_grid_did_not_allow(proc, part, ratio):
    (default,) = items_of(proc, part)
    assert ratio not in _grid_divisors(default)  # the default preprocessing cannot pool so much
    direct = items_of(proc, {**part, "compression": ratio})[0]
    budget = direct.num_tokens()
    (fitted,) = items_of(proc, part, visual_token_budget=budget)
    assert fitted.compression == ratio and fitted.num_tokens() == budget
    # exactly what asking for that ratio gives
    assert all(torch.equal(a, b) for a, b in zip(fitted.frames, direct.frames, strict=True))


def test_an_explicit_ratio_is_kept_under_a_budget(proc):
    part = {"type": "image", "image": rgb(64, 64)}
    (kept,) = items_of(proc, {**part, "compression": 4}, visual_token_budget=10_000)
    assert kept.compression == 4  # the budget alone would have chosen 1x
    with pytest.raises(ContextLengthError, match="budget of 10"):
        items_of(proc, {**part, "compression": 1}, visual_token_budget=10)


def test_preprocessed_inputs_that_cannot_be_remade_end_in_a_context_error():
    item = VisualInput("image", [torch.zeros(3, 32, 32), torch.zeros(3, 480, 640)], compression=1)
    calls = []

    def cannot(i: int, ratio: int):
        calls.append(ratio)
        return None

    with pytest.raises(ContextLengthError):
        fit_to_budget([item], 60, remake=cannot)
    assert calls == [4]  # asked once for the next ratio, then gave up


@pytest.mark.parametrize("budget", [0, -1, "10", 2.5])
def test_a_bad_budget_is_named(budget):
    item = VisualInput("image", [torch.zeros(3, 32, 32), torch.zeros(3, 64, 64)], compression=1)
    with pytest.raises(InvalidInputError, match="visual token budget"):
        fit_to_budget([item], budget)


def _grid_divisors(item: VisualInput) -> list[int]:
    from oryx_mllm.compression_policy import valid_ratios

    return valid_ratios(item)


def test_a_numpy_integer_budget_works(proc):
    (item,) = items_of(
        proc, {"type": "image", "image": rgb(64, 64)}, visual_token_budget=np.int64(40)
    )
    assert item.num_tokens() <= 40
