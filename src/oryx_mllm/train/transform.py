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

import torch

from oryx_mllm.errors import ConfigError, ContextLengthError, DataError
from oryx_mllm.processing.chat import (
    IGNORE_INDEX,
    Encoded,
    collate,
    encode_conversation,
    markers_after_text,
)
from oryx_mllm.processing.image import preprocess_image
from oryx_mllm.processing.multiview import preprocess_views
from oryx_mllm.processing.types import VisualInput
from oryx_mllm.processing.video import decode_frames_at, preprocess_video
from oryx_mllm.train.config import DataSpec
from oryx_mllm.train.packing import pack_sequences
from oryx_mllm.train.patch_labels import (
    check_frame_text,
    check_patch_text,
    frame_text_targets,
    patch_text_targets,
)

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

    def __init__(
        self,
        tokenizer,
        visual_token_id: int,
        data: DataSpec,
        patch_size: int = 16,
        patch_labels: bool = False,
    ):
        """``patch_labels``: turn a record's ``patch_text`` or ``frame_text`` into
        per-visual-token labels (``VisualInput.meta["labels"]``,
        :mod:`oryx_mllm.train.patch_labels`)."""
        self.tokenizer = tokenizer
        self.visual_token_id = visual_token_id
        self.max_length = data.max_length
        self.compression = dict(data.compression)
        self.patch_size = patch_size
        self.image_options = data.image_options()
        self.video_options = data.video_options(long_video=False)
        self.long_options = data.video_options(long_video=True)
        self.view_options = data.multiview_options()
        self.text_first = set(data.text_first)
        self.repeat_question = data.repeat_question
        self.patch_labels = patch_labels

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

    def visual_labels(self, item: dict, visual: list[VisualInput]) -> torch.Tensor | None:
        """The labels of the record's one visual input from its ``patch_text`` (an image) or
        ``frame_text`` (a video or multi-view scene); None when it has neither."""
        patch_text, frame_text = item.get("patch_text"), item.get("frame_text")
        if patch_text is None and frame_text is None:
            return None
        if patch_text is not None and frame_text is not None:
            raise DataError("has both 'patch_text' and 'frame_text'; give one")
        key = "patch_text" if patch_text is not None else "frame_text"
        if len(visual) != 1:
            raise DataError(f"{key!r} needs exactly one visual input, got {len(visual)}")
        if patch_text is not None:
            rows = check_patch_text(patch_text)
            return patch_text_targets(visual[0], rows, self.tokenizer, self.patch_size)
        words = check_frame_text(frame_text)
        return frame_text_targets(visual[0], words, self.tokenizer, self.patch_size)

    def __call__(self, item: dict) -> TrainExample:
        visual = self.visual_inputs(item)
        messages = [{"role": ROLE[t["from"]], "content": t["value"]} for t in item["conversations"]]
        kind = "video" if item["modality"] == "video_long" else item["modality"]
        if kind in self.text_first:  # the first question before its media
            first = next(m for m in messages if m["role"] == "user")
            first["content"] = markers_after_text(first["content"], self.repeat_question)
        if self.patch_labels:
            try:
                labels = self.visual_labels(item, visual)
            except DataError as e:
                raise DataError(f"sample {item['id']!r}: {e}") from None
            if labels is not None:
                visual[0].meta["labels"] = labels
            for v in visual:  # every visual input of a sample gets labels, -100 when unnamed
                if "labels" not in v.meta:
                    v.meta["labels"] = torch.full((v.num_tokens(self.patch_size),), IGNORE_INDEX)
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

    With ``packing=True`` (``data.packing``) a micro-batch is instead ``{"packed": True, "rows":
    [...], "ids": [...]}``: its samples are packed first-fit into rows of at most ``max_length``
    tokens (:func:`~oryx_mllm.train.packing.pack_sequences`), each row a dict with ``input_ids``,
    ``labels``, ``position_ids`` (``[1, L]``), ``cu_seqlens``, ``max_seqlen``, ``ids`` and the
    ``visual_inputs`` of its samples in packing order (= placeholder order within the row). A
    micro-batch holds the same samples with or without packing.
    """

    def __init__(
        self,
        pad_token_id: int,
        accumulation: int,
        *,
        packing: bool = False,
        max_length: int | None = None,
    ):
        if packing and (max_length is None or max_length < 1):
            raise ConfigError("packing needs max_length >= 1")
        self.pad_token_id = pad_token_id
        self.accumulation = accumulation
        self.packing = packing
        self.max_length = max_length

    def __call__(self, examples: Sequence[TrainExample]) -> list[dict[str, Any]]:
        n = len(examples)
        size = -(-n // self.accumulation)
        out = []
        for start in range(0, n, size):
            chunk = examples[start : start + size]
            if self.packing:
                out.append(self.pack(chunk))
                continue
            batch = collate([e.encoded for e in chunk], self.pad_token_id, padding_side="right")
            batch["visual_inputs"] = [v for e in chunk for v in e.visual]
            batch["ids"] = [e.id for e in chunk]
            visual = batch["visual_inputs"]
            if visual and all("labels" in v.meta for v in visual):  # TrainTransform(patch_labels)
                batch["visual_labels"] = torch.cat([v.meta["labels"] for v in visual])
            out.append(batch)
        return out

    def pack(self, chunk: Sequence[TrainExample]) -> dict[str, Any]:
        ids = [torch.tensor(e.encoded.input_ids, dtype=torch.long) for e in chunk]
        labels = [torch.tensor(e.encoded.labels, dtype=torch.long) for e in chunk]
        rows = []
        for p in pack_sequences(ids, labels, self.max_length, ignore_index=IGNORE_INDEX):
            rows.append(
                {
                    "input_ids": p.input_ids,
                    "labels": p.labels,
                    "position_ids": p.position_ids,
                    "cu_seqlens": p.cu_seqlens,
                    "max_seqlen": p.max_seqlen,
                    "visual_inputs": [v for i in p.sample_indices for v in chunk[i].visual],
                    "ids": [chunk[i].id for i in p.sample_indices],
                }
            )
        return {"packed": True, "rows": rows, "ids": [e.id for e in chunk]}
