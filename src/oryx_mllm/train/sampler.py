"""Length estimates and a modality- and length-grouped, resumable, distributed batch sampler.

Mixed Oryx training data spans one-line text questions to 256-frame long videos. Batching them
together wastes almost all compute on padding, so :class:`ModalityLengthGroupedSampler` builds
every batch from a single modality and from samples of similar estimated length.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from torch.utils.data import Sampler

from oryx_mllm.errors import ConfigError
from oryx_mllm.train.records import Sample


@dataclass
class LengthEstimator:
    """Cheap per-sample token-length estimate: ``ceil(chars / chars_per_token)`` plus a visual
    token estimate per modality (no media is opened).

    Defaults follow the paper's settings (Appendix D): images at native resolution (~1k tokens),
    videos at 2x2 pooling (a ~480 px frame -> ~15x15 grid + newlines ~ 241 tokens) capped at 64
    frames, long videos at 4x4 pooling (~73 tokens per frame) with 256 frames, multi-view scenes
    like video frames. When the frame / view count is known from the record (``frames`` list or
    a patch reference's sizes) it is used; otherwise the default count.
    """

    chars_per_token: float = 4.0
    image_tokens: int = 1024
    video_frames: int = 64
    video_tokens_per_frame: int = 241
    video_long_frames: int = 256
    video_long_tokens_per_frame: int = 73
    view_tokens: int = 241

    def __call__(self, sample: Sample) -> int:
        text = math.ceil(sample.text_length / self.chars_per_token)
        n = sample.num_visual_items
        if sample.modality == "image":
            visual = self.image_tokens * len(sample.media)
        elif sample.modality == "video":
            visual = self.video_tokens_per_frame * min(n or self.video_frames, self.video_frames)
        elif sample.modality == "video_long":
            visual = self.video_long_tokens_per_frame * (n or self.video_long_frames)
        elif sample.modality == "multiview":
            visual = self.view_tokens * (n or 1)
        else:
            visual = 0
        return text + visual


def estimate_length(sample: Sample) -> int:
    """:class:`LengthEstimator` with default settings."""
    return LengthEstimator()(sample)


class ModalityLengthGroupedSampler(Sampler[int]):
    """Yields this rank's sample indices so that each run of ``batch_size`` consecutive indices
    (one DataLoader batch) is a single modality of similar length.

    Per epoch, with ``rng = random.Random(f"{seed}:{epoch}")`` and ``G = batch_size * world_size``
    (the global batch):

    1. for each modality (in sorted order) shuffle its indices; if the count is not a multiple of
       ``G``, drop the remainder (``drop_last``) or top it up by repeating that modality's own
       shuffled indices from the start, so every global batch is full and single-modality;
    2. cut the list into mega-batches of ``G * megabatch_mult`` samples, sort each by estimated
       length (longest first), and cut it into global batches of ``G``;
    3. shuffle the global batches of all modalities together;
    4. rank ``r`` takes slice ``[r * batch_size, (r + 1) * batch_size)`` of every global batch.

    Every rank sees the same number of indices, ranks never overlap within an epoch (except the
    documented top-up repeats), and the order depends only on ``(seed, epoch)``.

    ``start_index`` is the number of samples already consumed in this epoch by *all* ranks
    together (``steps * batch_size * world_size``); it must be a multiple of ``world_size`` and
    the sampler skips the first ``start_index // world_size`` of this rank's indices, so a resumed
    run continues at the exact position. :meth:`set_epoch` resets it to 0 unless given.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        modalities: Sequence[str],
        batch_size: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        epoch: int = 0,
        start_index: int = 0,
        megabatch_mult: int = 8,
        drop_last: bool = False,
    ):
        if len(lengths) != len(modalities):
            raise ConfigError(f"{len(lengths)} lengths but {len(modalities)} modalities")
        if batch_size < 1 or world_size < 1 or megabatch_mult < 1:
            raise ConfigError("batch_size, world_size and megabatch_mult must be >= 1")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} not in [0, {world_size})")
        self.lengths = list(lengths)
        self.modalities = list(modalities)
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.megabatch_mult = megabatch_mult
        self.drop_last = drop_last
        self.epoch = epoch
        self.start_index = 0
        self.set_epoch(epoch, start_index)

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        """Select the epoch (changes the order) and how many of its samples are already done."""
        if start_index < 0 or start_index % self.world_size:
            raise ConfigError(
                f"start_index {start_index} must be >= 0 and a multiple of world_size "
                f"{self.world_size}"
            )
        if start_index > self.samples_per_epoch:
            raise ConfigError(f"start_index {start_index} > {self.samples_per_epoch} per epoch")
        self.epoch = epoch
        self.start_index = start_index

    @property
    def samples_per_epoch(self) -> int:
        """Samples yielded per epoch over all ranks (a multiple of the global batch)."""
        g = self.batch_size * self.world_size
        counts: dict[str, int] = {}
        for m in self.modalities:
            counts[m] = counts.get(m, 0) + 1
        if self.drop_last:
            return sum(c // g * g for c in counts.values())
        return sum(-(-c // g) * g for c in counts.values())

    def global_batches(self, epoch: int | None = None) -> list[list[int]]:
        """All global batches of an epoch, in order (every rank computes the same list)."""
        epoch = self.epoch if epoch is None else epoch
        rng = random.Random(f"{self.seed}:{epoch}")
        g = self.batch_size * self.world_size
        mega = g * self.megabatch_mult
        by_modality: dict[str, list[int]] = {}
        for i, m in enumerate(self.modalities):
            by_modality.setdefault(m, []).append(i)
        batches: list[list[int]] = []
        for m in sorted(by_modality):
            idx = by_modality[m]
            rng.shuffle(idx)
            remainder = len(idx) % g
            if remainder and self.drop_last:
                idx = idx[: len(idx) - remainder]
            elif remainder:
                need = g - remainder
                idx = idx + [idx[k % len(idx)] for k in range(need)]
            for s in range(0, len(idx), mega):
                chunk = sorted(idx[s : s + mega], key=lambda i: -self.lengths[i])
                batches.extend(chunk[b : b + g] for b in range(0, len(chunk), g))
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[int]:
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        mine = [i for batch in self.global_batches() for i in batch[lo:hi]]
        return iter(mine[self.start_index // self.world_size :])

    def __len__(self) -> int:
        return (self.samples_per_epoch - self.start_index) // self.world_size
