"""From a raw training record (see :mod:`oryx_mllm.train.data`) to token ids, labels and visual
inputs, and from a list of those to micro-batches.

Runs inside DataLoader workers. Anything wrong with a sample raises an :class:`OryxError`, which
:class:`~oryx_mllm.train.data.SkippingDataset` turns into a logged skip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oryx_mllm.errors import ContextLengthError, DataError
from oryx_mllm.processing.chat import Encoded, collate, encode_conversation
from oryx_mllm.processing.image import preprocess_image
from oryx_mllm.processing.multiview import preprocess_views
from oryx_mllm.processing.options import ImageOptions, MultiViewOptions, VideoOptions
from oryx_mllm.processing.types import VisualInput
from oryx_mllm.processing.video import decode_frames_at, preprocess_video
from oryx_mllm.train.config import DataSpec

ROLE = {"human": "user", "gpt": "assistant", "system": "system"}


@dataclass
class TrainExample:
    id: str
    encoded: Encoded
    visual: list[VisualInput]

    @property
    def num_tokens(self) -> int:
        return len(self.encoded.input_ids)


class TrainTransform:
    """Raw item -> :class:`TrainExample` (tokenised ChatML with expanded visual placeholders)."""

    def __init__(self, tokenizer, visual_token_id: int, data: DataSpec, patch_size: int = 16):
        self.tokenizer = tokenizer
        self.visual_token_id = visual_token_id
        self.max_length = data.max_length
        self.compression = dict(data.compression)
        self.patch_size = patch_size
        self.image_options = ImageOptions(**data.image)
        self.video_options = VideoOptions(**{**data.video, "long_video": False})
        self.long_options = VideoOptions(**{**data.video, "long_video": True})
        self.view_options = MultiViewOptions(frame=self.video_options)

    def visual_inputs(self, item: dict) -> list[VisualInput]:
        modality, media = item["modality"], item["media"]
        r = self.compression.get(modality)
        if modality == "text":
            return []
        if modality == "image":
            return [preprocess_image(m, self.image_options, compression=r) for m in media]
        if modality in ("video", "video_long"):
            opt = self.long_options if modality == "video_long" else self.video_options
            video = media[0]
            if item.get("frames") is not None and isinstance(video, Path):
                video = decode_frames_at(video, item["frames"], opt)
            if isinstance(video, list):  # explicit frames: keep all of them, in order
                opt = dataclasses.replace(opt, max_frames=len(video), long_max_frames=len(video))
            return [preprocess_video(video, opt, compression=r)]
        if modality == "multiview":
            return [preprocess_views(media[0], self.view_options, compression=r)]
        raise DataError(f"sample {item.get('id')!r}: unknown modality {modality!r}")

    def __call__(self, item: dict) -> TrainExample:
        visual = self.visual_inputs(item)
        messages = [{"role": ROLE[t["from"]], "content": t["value"]} for t in item["conversations"]]
        encoded = encode_conversation(
            messages,
            self.tokenizer,
            visual,
            visual_token_id=self.visual_token_id,
            add_generation_prompt=False,
            patch_size=self.patch_size,
        )
        if len(encoded.input_ids) > self.max_length:
            raise ContextLengthError(
                f"sample {item['id']!r} has {len(encoded.input_ids)} tokens (visual included), "
                f"more than data.max_length={self.max_length}"
            )
        return TrainExample(item["id"], encoded, visual)


class MicroBatchCollator:
    """A loader batch (one optimiser step of this rank) -> ``accumulation`` micro-batches.

    Each micro-batch is a dict with right-padded ``input_ids``, ``attention_mask``, ``labels``
    and the ``visual_inputs`` in placeholder order.
    """

    def __init__(self, pad_token_id: int, accumulation: int):
        self.pad_token_id = pad_token_id
        self.accumulation = accumulation

    def __call__(self, examples: Sequence[TrainExample]) -> list[dict[str, Any]]:
        n = len(examples)
        size = -(-n // self.accumulation)
        out = []
        for start in range(0, n, size):
            chunk = examples[start : start + size]
            batch = collate([e.encoded for e in chunk], self.pad_token_id, padding_side="right")
            batch["visual_inputs"] = [v for e in chunk for v in e.visual]
            batch["ids"] = [e.id for e in chunk]
            out.append(batch)
        return out
