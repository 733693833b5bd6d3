"""Patch labels: an auxiliary loss that names what each visual token of an image shows.

A training record may say which character each patch of its image shows, one string per row
of the native-resolution patch grid (``" "``: nothing to name)::

    {"image": "page.png", "patch_text": ["  3 48213 ", "  4 90017 "], "conversations": [...]}

With ``align.weight > 0`` (:class:`~oryx_mllm.train.config.AlignSpec`) the trainer adds
``weight x`` the cross-entropy of the language model's output layer, applied to each labelled
visual token as it enters the LLM, against its character's token. This ties every token of a
page to the word it shows before the LLM has to find it; ``docs/default_model.md`` ("Documents
on a grid") measured that a small LLM learns to copy a page's text with this as a 500-step
warm-up and not without it. The labels need the image at its native resolution, uncompressed
(compression 1), with a patch grid of exactly ``len(patch_text)`` rows of
``len(patch_text[0])`` patches; each labelled character must be one token of the tokenizer.

A video or multi-view record may instead say what each of its frames shows, one word per frame
(``""``: nothing to name)::

    {"video_long": ..., "frame_text": ["", "", "green", "", ...], "conversations": [...]}

Every token of a named frame's (compressed) grid then gets that word's token, e.g. the needle
frame of a long video its card's colour; the word must be one token of the tokenizer.
"""

from __future__ import annotations

import torch

from oryx_mllm.errors import DataError
from oryx_mllm.processing.chat import IGNORE_INDEX
from oryx_mllm.processing.types import VisualInput


def check_patch_text(value: object) -> list[str]:
    """``value`` as a non-empty list of equally long, non-empty strings, or a DataError."""
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(r, str) and r for r in value)
        or len({len(r) for r in value}) != 1
    ):
        raise DataError("'patch_text' must be a non-empty list of equally long, non-empty strings")
    return value


def check_frame_text(value: object) -> list[str]:
    """``value`` as a non-empty list of strings (one per frame), or a DataError."""
    if not isinstance(value, list) or not value or not all(isinstance(w, str) for w in value):
        raise DataError("'frame_text' must be a non-empty list of strings, one per frame")
    return value


def _token_id(tokenizer, text: str, ids: dict[str, int], what: str) -> int:
    if text not in ids:
        tok = tokenizer.encode(text, add_special_tokens=False)
        if len(tok) != 1:
            raise DataError(f"{what} {text!r} is {len(tok)} tokens, not one")
        ids[text] = tok[0]
    return ids[text]


def patch_text_targets(
    item: VisualInput, rows: list[str], tokenizer, patch_size: int = 16
) -> torch.Tensor:
    """``[item.num_tokens()]`` token ids: each native-view token of the image ``item`` gets the
    id of the character ``rows`` names for its patch; every other token (the low-res view, the
    layout tokens of ``OryxProjector.image``, blank patches) gets ``IGNORE_INDEX``."""
    if item.modality != "image" or item.compression != 1:
        raise DataError(
            f"'patch_text' needs an uncompressed image, got a {item.modality} at "
            f"compression {item.compression}"
        )
    (lo_h, lo_w), (h, w) = item.grids(patch_size)
    if (h, w) != (len(rows), len(rows[0])):
        raise DataError(
            f"'patch_text' has {len(rows)} x {len(rows[0])} cells but the image is "
            f"{h} x {w} patches as preprocessed (was it resized?)"
        )
    cells = torch.full((h, w + 1), IGNORE_INDEX, dtype=torch.long)  # + the newline of each row
    ids: dict[str, int] = {}
    for i, row in enumerate(rows):
        for j, ch in enumerate(row):
            if ch != " ":
                cells[i, j] = _token_id(tokenizer, ch, ids, "'patch_text' character")
    # begin, low-res rows (each + newline), sep | native rows (each + newline) | end
    before = torch.full((1 + lo_h * (lo_w + 1) + 1,), IGNORE_INDEX, dtype=torch.long)
    out = torch.cat([before, cells.reshape(-1), torch.tensor([IGNORE_INDEX])])
    assert len(out) == item.num_tokens(patch_size)
    return out


def frame_text_targets(
    item: VisualInput, words: list[str], tokenizer, patch_size: int = 16
) -> torch.Tensor:
    """``[item.num_tokens()]`` token ids: every grid token of frame ``t`` of the video or
    multi-view scene ``item`` gets the id of ``words[t]`` (at any compression); unnamed frames
    (``""``) and the layout tokens (begin, newlines, separators, end) get ``IGNORE_INDEX``."""
    if item.modality == "image":
        raise DataError("'frame_text' needs a video or a multi-view scene, got an image")
    if len(words) != len(item.frames):
        raise DataError(
            f"'frame_text' names {len(words)} frames but the {item.modality} has "
            f"{len(item.frames)} as preprocessed"
        )
    h, w = item.grids(patch_size)[0]
    ids: dict[str, int] = {}
    frames = []
    for word in words:
        label = _token_id(tokenizer, word, ids, "'frame_text' word") if word else IGNORE_INDEX
        grid = torch.full((h, w + 1), label, dtype=torch.long)
        grid[:, -1] = IGNORE_INDEX  # the newline after each row
        frames += [grid.reshape(-1), torch.tensor([IGNORE_INDEX])]  # + the frame's separator
    edge = torch.tensor([IGNORE_INDEX])
    out = torch.cat([edge, *frames, edge])  # begin | frames | end
    assert len(out) == item.num_tokens(patch_size)
    return out
