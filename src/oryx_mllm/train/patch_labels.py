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
            if ch == " ":
                continue
            if ch not in ids:
                tok = tokenizer.encode(ch, add_special_tokens=False)
                if len(tok) != 1:
                    raise DataError(f"'patch_text' character {ch!r} is {len(tok)} tokens, not one")
                ids[ch] = tok[0]
            cells[i, j] = ids[ch]
    # begin, low-res rows (each + newline), sep | native rows (each + newline) | end
    before = torch.full((1 + lo_h * (lo_w + 1) + 1,), IGNORE_INDEX, dtype=torch.long)
    out = torch.cat([before, cells.reshape(-1), torch.tensor([IGNORE_INDEX])])
    assert len(out) == item.num_tokens(patch_size)
    return out
