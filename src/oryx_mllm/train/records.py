"""Training records in the LLaVA / Oryx JSON format.

A data file is either a ``.json`` file holding a list of samples or a ``.jsonl`` file with one
sample per line. A sample::

    {
      "id": "coco_000123",
      "image": "coco/000123.jpg",              # or a list of images, or one of the keys below
      "conversations": [
        {"from": "human", "value": "<image>\\nWhat is on the table?"},
        {"from": "gpt", "value": "A red teapot."}
      ]
    }

Media keys (at most one per sample; none = a text-only sample):

- ``image``: one media reference or a list of them -> modality ``"image"``, one ``<image>``
  placeholder per image;
- ``video``: one reference (a video file, or a patch reference whose sizes are the frames) ->
  ``"video"``, one ``<video>`` placeholder;
- ``video_long``: the same for long videos (needle-in-a-haystack data, 4x4 compression) ->
  ``"video_long"``, one ``<video>`` placeholder;
- ``views``: a list of references, the views of one multi-view 3D scene (a single patch reference
  with several sizes is also accepted) -> ``"multiview"``, one ``<video>`` placeholder.

A media reference is a path relative to the data folder or a patch reference
``{"patch": ..., "start": ..., "size": [...]}`` (see :mod:`oryx_mllm.train.patchfile`).

``video`` / ``video_long`` samples may carry ``"frames": [i0, i1, ...]``: the 0-based source frame
indices to decode, in order (indices into the decoded video, or into the patch reference's sizes).
The needle-in-a-haystack builder writes them so the loader decodes exactly those frames.

Conversations alternate ``human`` / ``gpt``, start with ``human`` and contain at least one
``gpt`` turn. Placeholders may only appear in human turns. If a sample has media but no
placeholder at all, the placeholders are prepended to the first human turn (one ``<image>`` per
image, or one ``<video>``, then a newline), the LLaVA convention. Video-like samples written with the legacy
``<image>`` placeholder (common in LLaVA video data) get it rewritten to ``<video>``. Any other
mismatch between placeholders and media is an error. Every validation error is a
:class:`~oryx_mllm.errors.DataError` naming the file, the sample id and the problem.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from oryx_mllm.errors import DataError, MediaNotFoundError
from oryx_mllm.train.patchfile import MediaRef, parse_media_ref

logger = logging.getLogger(__name__)

SampleModality = Literal["text", "image", "video", "video_long", "multiview"]
SAMPLE_MODALITIES: tuple[str, ...] = ("text", "image", "video", "video_long", "multiview")

IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"

# record key -> modality
_MEDIA_KEYS = {"image": "image", "video": "video", "video_long": "video_long", "views": "multiview"}
_ROLES = ("human", "gpt")


@dataclass
class Turn:
    """One conversation turn: ``role`` is ``"human"`` or ``"gpt"``."""

    role: Literal["human", "gpt"]
    value: str

    def to_json(self) -> dict:
        return {"from": self.role, "value": self.value}


@dataclass
class Sample:
    """One validated training sample.

    ``media`` holds one :class:`MediaRef` per image (``image``), exactly one for ``video`` /
    ``video_long``, one per view for ``multiview``, none for ``text``. ``frames`` are the source
    frame indices to decode (videos only, optional). ``extra`` keeps any other keys of the record.
    """

    id: str
    modality: SampleModality
    media: list[MediaRef]
    conversations: list[Turn]
    frames: list[int] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def placeholder(self) -> str | None:
        if self.modality == "text":
            return None
        return IMAGE_PLACEHOLDER if self.modality == "image" else VIDEO_PLACEHOLDER

    @property
    def text_length(self) -> int:
        """Characters of conversation text (a cheap length proxy)."""
        return sum(len(t.value) for t in self.conversations)

    @property
    def num_visual_items(self) -> int | None:
        """Images / frames / views when known without decoding, else ``None`` (a video file)."""
        if self.modality == "text":
            return 0
        if self.frames is not None:
            return len(self.frames)
        if self.modality in ("video", "video_long"):
            ref = self.media[0]
            return ref.num_items if ref.is_patch else None
        return sum(r.num_items for r in self.media)

    def to_json(self) -> dict:
        """The record form (placeholders already normalised)."""
        out: dict = {"id": self.id}
        if self.modality == "image":
            refs = [r.to_json() for r in self.media]
            out["image"] = refs[0] if len(refs) == 1 else refs
        elif self.modality in ("video", "video_long"):
            out[self.modality] = self.media[0].to_json()
        elif self.modality == "multiview":
            out["views"] = [r.to_json() for r in self.media]
        if self.frames is not None:
            out["frames"] = list(self.frames)
        out["conversations"] = [t.to_json() for t in self.conversations]
        out.update(self.extra)
        return out


def parse_sample(record: object, *, index: int | None = None, source: str | None = None) -> Sample:
    """Validate one JSON record and return a :class:`Sample`.

    ``index`` / ``source`` (position and file) only make error messages more precise.
    """
    where = f"{source}: " if source else ""
    if not isinstance(record, Mapping):
        raise DataError(
            f"{where}sample #{index}: expected a JSON object, got {type(record).__name__}"
        )
    raw_id = record.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id) == "":
        raise DataError(f"{where}sample #{index}: missing or invalid 'id' ({raw_id!r})")
    sid = str(raw_id)

    def fail(msg: str) -> DataError:
        return DataError(f"{where}sample {sid!r}: {msg}")

    # --- media ---------------------------------------------------------------------------
    present = [k for k in _MEDIA_KEYS if record.get(k) is not None]
    if len(present) > 1:
        raise fail(f"has several media keys {present}; use one of {list(_MEDIA_KEYS)}")
    modality: str = _MEDIA_KEYS[present[0]] if present else "text"
    media: list[MediaRef] = []
    try:
        if modality == "image":
            value = record["image"]
            items = value if isinstance(value, list) else [value]
            if not items:
                raise DataError("'image' is an empty list")
            media = [parse_media_ref(v, what=f"image[{i}]") for i, v in enumerate(items)]
            for i, ref in enumerate(media):
                if ref.num_items != 1:
                    raise DataError(f"image[{i}]: a patch reference for an image needs one size")
        elif modality in ("video", "video_long"):
            media = [parse_media_ref(record[modality], what=modality)]
        elif modality == "multiview":
            value = record["views"]
            items = value if isinstance(value, list) else [value]
            if not items:
                raise DataError("'views' is an empty list")
            media = [parse_media_ref(v, what=f"views[{i}]") for i, v in enumerate(items)]
    except DataError as e:
        raise fail(str(e)) from None

    frames = record.get("frames")
    if frames is not None:
        if modality not in ("video", "video_long"):
            raise fail("'frames' is only allowed with 'video' or 'video_long'")
        if (
            not isinstance(frames, list)
            or not frames
            or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in frames)
        ):
            raise fail("'frames' must be a non-empty list of ints >= 0")
        ref = media[0]
        if ref.is_patch and max(frames) >= ref.num_items:
            raise fail(f"'frames' index {max(frames)} >= {ref.num_items} stored frames")

    # --- conversations --------------------------------------------------------------------
    convs = record.get("conversations")
    if not isinstance(convs, list) or not convs:
        raise fail("'conversations' must be a non-empty list")
    turns: list[Turn] = []
    for i, t in enumerate(convs):
        if not isinstance(t, Mapping):
            raise fail(f"turn {i} is not an object")
        role, value = t.get("from"), t.get("value")
        if role not in _ROLES:
            raise fail(f"turn {i} has role {role!r}; expected 'human' or 'gpt'")
        expected = _ROLES[i % 2]
        if role != expected:
            raise fail(f"turn {i} is {role!r} but turns must alternate human/gpt from 'human'")
        if not isinstance(value, str):
            raise fail(f"turn {i} value must be a string, got {type(value).__name__}")
        turns.append(Turn(role, value))
    if len(turns) < 2:
        raise fail("needs at least one 'gpt' answer")

    _normalise_placeholders(turns, modality, len(media), fail)

    extra = {
        k: v
        for k, v in record.items()
        if k not in ("id", "conversations", "frames", *tuple(_MEDIA_KEYS))
    }
    return Sample(sid, modality, media, turns, list(frames) if frames else None, extra)  # type: ignore[arg-type]


def _normalise_placeholders(turns: list[Turn], modality: str, num_media: int, fail) -> None:
    for i, t in enumerate(turns):
        if t.role == "gpt" and (IMAGE_PLACEHOLDER in t.value or VIDEO_PLACEHOLDER in t.value):
            raise fail(f"turn {i} (gpt) contains a media placeholder")
    n_img = sum(t.value.count(IMAGE_PLACEHOLDER) for t in turns)
    n_vid = sum(t.value.count(VIDEO_PLACEHOLDER) for t in turns)
    if modality == "text":
        if n_img or n_vid:
            raise fail("text-only sample contains a media placeholder")
        return
    if modality == "image":
        if n_vid:
            raise fail(f"image sample contains {VIDEO_PLACEHOLDER}")
        if n_img == 0:
            turns[0].value = IMAGE_PLACEHOLDER * num_media + "\n" + turns[0].value
        elif n_img != num_media:
            raise fail(f"{n_img} {IMAGE_PLACEHOLDER} placeholders for {num_media} images")
        return
    # video / video_long / multiview: one placeholder for the whole clip or scene
    if n_img and not n_vid and n_img == 1:  # legacy LLaVA video data uses <image>
        for t in turns:
            t.value = t.value.replace(IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER)
        n_img, n_vid = 0, 1
    if n_img:
        raise fail(f"{modality} sample contains {IMAGE_PLACEHOLDER}")
    if n_vid == 0:
        turns[0].value = VIDEO_PLACEHOLDER + "\n" + turns[0].value
    elif n_vid != 1:
        raise fail(f"{n_vid} {VIDEO_PLACEHOLDER} placeholders; expected exactly one")


def iter_json_records(path: str | os.PathLike) -> Iterable[tuple[int, object]]:
    """Yield ``(index, record)`` from a ``.json`` list or a ``.jsonl`` file.

    Malformed JSON raises :class:`DataError` naming the file, line and column.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise MediaNotFoundError(f"data file not found: {path}") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from e
    if path.suffix == ".jsonl":
        index = 0
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}: invalid JSON at line {lineno}, column {e.colno}: {e.msg}"
                ) from None
            yield index, record
            index += 1
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of samples, got {type(data).__name__}")
    yield from enumerate(data)


def load_records(path: str | os.PathLike, *, strict: bool = True) -> list[Sample]:
    """Parse and validate every sample of a ``.json`` / ``.jsonl`` file.

    ``strict=True`` raises on the first invalid sample; ``strict=False`` logs a warning naming
    the sample and drops it (malformed JSON always raises). Duplicate ids (they occur in public
    LLaVA data) are allowed but counted in one warning, since ids are only used in messages.
    """
    samples: list[Sample] = []
    seen: set[str] = set()
    duplicates = 0
    for index, record in iter_json_records(path):
        try:
            sample = parse_sample(record, index=index, source=str(path))
        except DataError as e:
            if strict:
                raise
            logger.warning("dropping invalid record: %s", e)
            continue
        duplicates += sample.id in seen
        seen.add(sample.id)
        samples.append(sample)
    if duplicates:
        logger.warning("%s: %d samples reuse an earlier id", path, duplicates)
    return samples


def check_media_exists(sample: Sample, data_root: str | os.PathLike) -> None:
    """Raise :class:`MediaNotFoundError` naming the sample if any referenced file is missing."""
    for ref in sample.media:
        p = ref.resolve(data_root)
        if not p.exists():
            raise MediaNotFoundError(f"sample {sample.id!r}: media file not found: {p}")
