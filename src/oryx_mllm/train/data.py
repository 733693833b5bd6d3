"""Lazy training dataset over Oryx JSON records, and bad-sample skipping.

:class:`OryxJsonDataset` parses and validates the records up front (cheap: text only) and touches
media only in ``__getitem__``, where it returns the RAW media handles; decoding and preprocessing
belong to the ``transform`` callable (the model's processor). Item format (a plain dict)::

    {
      "index": 17,                     # dataset index
      "id": "coco_000123",
      "modality": "image",             # text | image | video | video_long | multiview
      "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", ...}],
      "media": [...],                  # see below
      "frames": None,                  # source frame indices still to select, see below
    }

``media`` holds one handle per visual input:

- ``image``: one entry per image: a :class:`pathlib.Path` (file on disk) or ``bytes`` (encoded
  image read from a patch file);
- ``video`` / ``video_long``: one entry: a ``Path`` to the video file, or ``list[bytes]`` (the
  encoded frames read from a patch file);
- ``multiview``: one entry: the list of views, each a ``Path`` or ``bytes``;
- ``text``: empty.

``frames`` is the record's source frame list for a video *file* (the transform must decode
exactly those frames, in that order); for patch-stored videos the selection has already been
applied while reading, and ``frames`` is ``None``.

:class:`SkippingDataset` wraps any dataset with a ``sample_id(index)`` method: a sample whose
loading or transform raises an :class:`~oryx_mllm.errors.OryxError` (missing file, corrupt frame,
too long ...) is logged with its id and replaced by another index chosen deterministically from
``(seed, index, attempt)``, at most ``max_attempts`` tries in total. Each item comes back as a
:class:`Fetched` carrying the skip events, :class:`SkipCollate` moves them into the batch, and
:class:`SkipStats` adds them up in the main process, so the counts are right with any number of
DataLoader workers::

    ds = SkippingDataset(OryxJsonDataset("train.json", "data/", transform=processor), seed=0)
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=SkipCollate(my_collate))
    stats = SkipStats()
    for batch in loader:
        stats.add(batch.skipped)
        train_step(batch.data)
    logger.info(stats.summary())
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset

from oryx_mllm.errors import DataError, MediaNotFoundError, OryxError
from oryx_mllm.train.patchfile import MediaRef, read_patch
from oryx_mllm.train.records import Sample, load_records
from oryx_mllm.train.sampler import LengthEstimator

logger = logging.getLogger(__name__)


class OryxJsonDataset(Dataset):
    """Map-style dataset over one or more Oryx JSON / JSONL files (or already parsed samples).

    ``data_root`` is the folder media paths are relative to. ``transform(item) -> anything`` is
    applied to the raw item dict (module docstring); without it the raw dict is returned.
    ``strict=False`` drops invalid records at load time instead of raising.
    """

    def __init__(
        self,
        data: str | os.PathLike | Sequence[str | os.PathLike] | Sequence[Sample],
        data_root: str | os.PathLike,
        transform: Callable[[dict], Any] | None = None,
        *,
        strict: bool = True,
        length_estimator: LengthEstimator | None = None,
    ):
        if isinstance(data, (str, os.PathLike)):
            data = [data]
        samples: list[Sample] = []
        for entry in data:
            if isinstance(entry, Sample):
                samples.append(entry)
            else:
                samples.extend(load_records(entry, strict=strict))
        self.samples = samples
        self.data_root = Path(data_root)
        self.transform = transform
        self.length_estimator = length_estimator or LengthEstimator()
        self._lengths: list[int] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def sample_id(self, index: int) -> str:
        return self.samples[index].id

    @property
    def modalities(self) -> list[str]:
        """Modality of every sample (for :class:`ModalityLengthGroupedSampler`)."""
        return [s.modality for s in self.samples]

    @property
    def lengths(self) -> list[int]:
        """Estimated token length of every sample (for :class:`ModalityLengthGroupedSampler`)."""
        if self._lengths is None:
            self._lengths = [self.length_estimator(s) for s in self.samples]
        return self._lengths

    def load_raw(self, index: int) -> dict:
        """The raw item dict of sample ``index`` (media read from patch files, paths checked)."""
        s = self.samples[index]
        frames = s.frames
        media: list[Any]
        if s.modality == "image":
            media = [self._handle(s, r) for r in s.media]
        elif s.modality in ("video", "video_long"):
            ref = s.media[0]
            if ref.is_patch:
                media = [self._read(s, ref, frames)]
                frames = None
            else:
                media = [self._handle(s, ref)]
        elif s.modality == "multiview":
            views: list[Path | bytes] = []
            for r in s.media:
                views.extend(self._read(s, r) if r.is_patch else [self._handle(s, r)])
            media = [views]
        else:
            media = []
        return {
            "index": index,
            "id": s.id,
            "modality": s.modality,
            "conversations": [t.to_json() for t in s.conversations],
            "media": media,
            "frames": list(frames) if frames is not None else None,
            "patch_text": s.extra.get("patch_text"),
            "frame_text": s.extra.get("frame_text"),
        }

    def __getitem__(self, index: int) -> Any:
        item = self.load_raw(index)
        return self.transform(item) if self.transform is not None else item

    def _handle(self, sample: Sample, ref: MediaRef) -> Path | bytes:
        if ref.is_patch:
            return self._read(sample, ref)[0]
        path = ref.resolve(self.data_root)
        if not path.exists():
            raise MediaNotFoundError(f"sample {sample.id!r}: media file not found: {path}")
        return path

    def _read(self, sample: Sample, ref: MediaRef, indices=None) -> list[bytes]:
        try:
            return read_patch(self.data_root, ref, indices)
        except DataError as e:
            raise type(e)(f"sample {sample.id!r}: {e}") from e


# ------------------------------------------------------------------------------------------
# bad-sample skipping


@dataclass(frozen=True)
class SkipEvent:
    """One skipped sample: dataset index, id, exception type and message, DataLoader worker id
    (-1 = main process)."""

    index: int
    sample_id: str
    error: str
    message: str
    worker: int = -1


@dataclass
class Fetched:
    """What :class:`SkippingDataset` returns: the item actually served (``index``, maybe a
    replacement for ``requested``) and the samples skipped on the way."""

    item: Any
    index: int
    requested: int
    skipped: list[SkipEvent] = field(default_factory=list)


class SkippingDataset(Dataset):
    """Wrap a dataset so samples raising one of ``skip_on`` are skipped, counted and logged.

    On failure the replacement for ``index`` at attempt ``k`` is drawn with
    ``random.Random(f"{seed}:{index}:{k}")`` from the indices sharing ``index``'s group key:
    deterministic, identical in every worker, and different for every failing index. ``groups``
    (one hashable key per index) defaults to the wrapped dataset's ``modalities``, so a skipped
    video is replaced by another video and batches built by
    :class:`~oryx_mllm.train.sampler.ModalityLengthGroupedSampler` stay single-modality; a group
    of one, or no groups at all, draws from the whole dataset. After ``max_attempts`` failed tries in a
    row :class:`DataError` is raised (a dataset that is mostly broken should stop the run, not
    spin). ``self.stats`` counts skips made in *this* process only; with DataLoader workers use
    the events carried by :class:`Fetched` (see :class:`SkipCollate`).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        max_attempts: int = 8,
        seed: int = 0,
        skip_on: tuple[type[BaseException], ...] = (OryxError,),
        groups: Sequence[Hashable] | None = None,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.dataset = dataset
        self.max_attempts = max_attempts
        self.seed = seed
        self.skip_on = skip_on
        self.stats = SkipStats()
        if groups is None:
            groups = getattr(dataset, "modalities", None)
        self.groups = list(groups) if groups is not None else None
        if self.groups is not None and len(self.groups) != len(self):
            raise ValueError(f"{len(self.groups)} group keys for {len(self)} samples")
        self._members: dict[Hashable, list[int]] | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def sample_id(self, index: int) -> str:
        get = getattr(self.dataset, "sample_id", None)
        return str(get(index)) if get is not None else f"#{index}"

    def replacement(self, index: int, attempt: int) -> int:
        """Index tried at ``attempt`` (1, 2, ...) after ``index`` failed."""
        rng = random.Random(f"{self.seed}:{index}:{attempt}")
        if self.groups is not None:
            if self._members is None:
                self._members = {}
                for i, key in enumerate(self.groups):
                    self._members.setdefault(key, []).append(i)
            pool = self._members[self.groups[index]]
            if len(pool) > 1:
                return pool[rng.randrange(len(pool))]
        return rng.randrange(len(self))

    def __getitem__(self, index: int) -> Fetched:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else -1
        skipped: list[SkipEvent] = []
        current = index
        for attempt in range(self.max_attempts):
            if attempt > 0:
                current = self.replacement(index, attempt)
            try:
                item = self.dataset[current]
            except self.skip_on as e:
                event = SkipEvent(
                    current, self.sample_id(current), type(e).__name__, str(e), worker
                )
                logger.warning(
                    "skipping sample %r (index %d): %s: %s",
                    event.sample_id,
                    current,
                    event.error,
                    event.message,
                )
                skipped.append(event)
                self.stats.add([event])
                continue
            return Fetched(item, current, index, skipped)
        raise DataError(
            f"gave up on index {index} after {self.max_attempts} failed attempts; "
            f"last: {skipped[-1].sample_id!r}: {skipped[-1].message}"
        )


class SkipBatch(NamedTuple):
    """A collated batch plus the dataset indices served and the skips made while building it."""

    data: Any
    indices: list[int]
    skipped: list[SkipEvent]


class SkipCollate:
    """DataLoader ``collate_fn`` for :class:`SkippingDataset`: collates the served items with
    ``collate_fn`` (default: keep them as a list) and returns a :class:`SkipBatch`. A top-level
    class, so it pickles into worker processes."""

    def __init__(self, collate_fn: Callable[[list[Any]], Any] | None = None):
        self.collate_fn = collate_fn

    def __call__(self, batch: list[Fetched]) -> SkipBatch:
        items = [f.item for f in batch]
        data = self.collate_fn(items) if self.collate_fn is not None else items
        skipped = [e for f in batch for e in f.skipped]
        return SkipBatch(data, [f.index for f in batch], skipped)


@dataclass
class SkipStats:
    """Running totals of skipped samples, for the end-of-run summary.

    ``add`` the events of every batch in the main process; ``merge`` the stats of other ranks
    (e.g. after ``torch.distributed.all_gather_object``).
    """

    total: int = 0
    by_error: Counter = field(default_factory=Counter)
    by_worker: Counter = field(default_factory=Counter)
    by_sample: Counter = field(default_factory=Counter)

    def add(self, events: Iterable[SkipEvent]) -> None:
        for e in events:
            self.total += 1
            self.by_error[e.error] += 1
            self.by_worker[e.worker] += 1
            self.by_sample[e.sample_id] += 1

    def merge(self, other: SkipStats) -> None:
        self.total += other.total
        self.by_error.update(other.by_error)
        self.by_worker.update(other.by_worker)
        self.by_sample.update(other.by_sample)

    def summary(self, max_ids: int = 20) -> str:
        if self.total == 0:
            return "no samples skipped"
        errors = ", ".join(f"{k}: {v}" for k, v in self.by_error.most_common())
        workers = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_worker.items()))
        ids = ", ".join(f"{k} (x{v})" for k, v in self.by_sample.most_common(max_ids))
        more = len(self.by_sample) - max_ids
        return (
            f"skipped {self.total} sample loads ({len(self.by_sample)} distinct samples); "
            f"by error: {errors}; by worker: {workers}; ids: {ids}"
            + (f" and {more} more" if more > 0 else "")
        )
