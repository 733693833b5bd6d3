"""How many tokens each visual input keeps: the one place the compression policy lives.

Defaults follow the paper: images 1x (no pooling), videos of up to 64 frames 2x2, longer videos
4x4; multi-view scenes are treated as short videos (2x2). Callers may instead give a visual token
budget and get the smallest compression (most tokens) that fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from oryx_mllm.checks import check_range
from oryx_mllm.errors import ContextLengthError, InvalidInputError, OryxError

if TYPE_CHECKING:  # no runtime import: processing imports this module
    from oryx_mllm.processing.types import VisualInput

IMAGE_RATIO = 1
SHORT_VIDEO_RATIO = 2
LONG_VIDEO_RATIO = 4
LONG_VIDEO_FRAMES = 64  # more frames than this -> long-video compression
CANDIDATE_RATIOS: tuple[int, ...] = (1, 2, 4, 8, 16)


def check_ratio(
    ratio: object, name: str = "compression", error: type[OryxError] = InvalidInputError
) -> int:
    """``ratio`` when it is a pooling ratio the compressor is used with (``CANDIDATE_RATIOS``);
    otherwise ``error`` naming it (before any image is resized for it)."""
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio not in CANDIDATE_RATIOS:
        raise error(
            f"{name} must be one of {', '.join(map(str, CANDIDATE_RATIOS))} (the pooling "
            f"ratio per side: 1 keeps every token, 2 a quarter, 4 a sixteenth), got {ratio!r}"
        )
    return ratio


def default_compression(modality: str, num_frames: int = 1) -> int:
    """The paper's default pooling ratio for a modality (and frame count for videos)."""
    if modality == "image":
        return IMAGE_RATIO
    if modality == "video":
        return SHORT_VIDEO_RATIO if num_frames <= LONG_VIDEO_FRAMES else LONG_VIDEO_RATIO
    if modality == "multiview":
        return SHORT_VIDEO_RATIO
    raise InvalidInputError(f"unknown modality {modality!r}")


def valid_ratios(item: VisualInput, patch_size: int = 16) -> list[int]:
    """Candidate ratios that divide every frame's patch grid."""
    grids = [(-(-f.shape[-2] // patch_size), -(-f.shape[-1] // patch_size)) for f in item.frames]
    return [r for r in CANDIDATE_RATIOS if all(h % r == 0 and w % r == 0 for h, w in grids)]


def tokens_at(item: VisualInput, ratio: int, patch_size: int = 16) -> int:
    """Token count of ``item`` if it were compressed by ``ratio``."""
    saved = item.compression
    try:
        item.compression = ratio
        return item.num_tokens(patch_size)
    finally:
        item.compression = saved


def choose_compression(item: VisualInput, budget: int, patch_size: int = 16) -> int:
    """Smallest ratio whose token count fits ``budget`` (raises ContextLengthError if none)."""
    for r in valid_ratios(item, patch_size):
        if tokens_at(item, r, patch_size) <= budget:
            return r
    raise ContextLengthError(
        f"{item.modality} input {item.source or ''} cannot fit {budget} visual tokens at any "
        f"compression in {valid_ratios(item, patch_size)}; use fewer frames or a smaller size"
    )


def fit_to_budget(
    items: list[VisualInput],
    budget: int,
    patch_size: int = 16,
    fixed: Sequence[int] = (),
    remake: Callable[[int, int], VisualInput | None] | None = None,
) -> list[int]:
    """Set every item's compression so that together they fit ``budget`` visual tokens.

    Starts from no compression and repeatedly raises the ratio of the input with the most tokens
    (ties: the first) until the total fits. Returns the chosen ratios (also written to the items).

    ``fixed``: indices of inputs whose ratio the caller chose explicitly; they keep it.
    ``remake(i, ratio)``: input ``i`` preprocessed again at ``ratio`` (None: it cannot be). An
    input's sides are made multiples of its ratio when it is preprocessed, so a larger ratio may
    not divide its grid; with ``remake`` such an input is remade (and replaced in ``items``)
    instead of giving up.
    """
    check_range(
        "the visual token budget", budget, integer=True, at_least=1, error=InvalidInputError
    )
    budget = int(budget)
    fixed, remade = set(fixed), {}  # remade: input -> the ratio it was last remade at
    while True:
        options = [
            [it.compression] if i in fixed else valid_ratios(it, patch_size)
            for i, it in enumerate(items)
        ]
        pick = [0] * len(items)
        counts = [tokens_at(it, opts[0], patch_size) for it, opts in zip(items, options)]
        while sum(counts) > budget:
            order = sorted(range(len(items)), key=lambda i: -counts[i])
            for i in order:
                if pick[i] + 1 < len(options[i]):
                    pick[i] += 1
                    counts[i] = tokens_at(items[i], options[i][pick[i]], patch_size)
                    break
            else:
                break
        if sum(counts) <= budget:
            for it, opts, p in zip(items, options, pick):
                it.compression = opts[p]
            return [opts[p] for opts, p in zip(options, pick)]
        # Out of ratios: remake the largest input that has a larger candidate ratio, then retry.
        larger = {
            i: [r for r in CANDIDATE_RATIOS if r > max(options[i][-1], remade.get(i, 0))]
            for i in range(len(items))
            if i not in fixed and remake is not None
        }
        todo = [i for i, rs in larger.items() if rs]
        if not todo:
            raise ContextLengthError(
                f"{len(items)} visual inputs need at least {sum(counts)} tokens, more than the "
                f"budget of {budget}"
            )
        i = max(todo, key=lambda i: counts[i])
        new = remake(i, larger[i][0])
        remade[i] = larger[i][0] if new is not None else CANDIDATE_RATIOS[-1]
        items[i] = new if new is not None else items[i]
