"""Padding-free sequence packing.

Several tokenised samples are concatenated into one row of a batch of size 1, with no padding::

    input_ids    [1, L]   a1 a2 a3 b1 b2 c1 c2 c3 c4
    labels       [1, L]   -100 a2 a3 -100 b2 -100 c2 c3 c4
    position_ids [1, L]   0  1  2  0  1  0  1  2  3
    cu_seqlens   [n + 1]  0 3 5 9            (int32, cumulative sample lengths)
    max_seqlen            4

This is the layout transformers understands for padding-free training with flash-attention-2
(the same one its ``DataCollatorWithFlattening`` produces): call the model with ``input_ids``,
``labels`` and ``position_ids`` and *no* ``attention_mask``; the flash-attention path detects the
packing from the positions that restart at 0 and attends within each sample only (varlen kernel).
Models / kernels that take the boundaries directly get ``cu_seqlens`` and ``max_seqlen``
(e.g. as ``cu_seq_lens_q = cu_seq_lens_k = cu_seqlens`` and ``max_length_q = max_length_k =
max_seqlen``). Position ids restart at 0 per sample, so rotary embeddings match unpacked training.

The first label of every sample is set to ``ignore_index``: causal-LM losses shift labels by one,
so that position would otherwise train the last token of the previous sample to predict the first
token of the next one. (A sample's own first token is never a target in unpacked training
either.) With the eager / sdpa attention and no mask, tokens would attend across samples; only
use packed batches with a varlen-aware attention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from oryx_mllm.errors import ContextLengthError, InvalidInputError


@dataclass
class PackedSequence:
    """One packed row. ``sample_indices`` are the positions of the packed samples in the input
    list, in packing order."""

    input_ids: torch.Tensor  # [1, L] long
    labels: torch.Tensor  # [1, L] long
    position_ids: torch.Tensor  # [1, L] long
    cu_seqlens: torch.Tensor  # [n + 1] int32
    max_seqlen: int
    sample_indices: list[int]


def first_fit_bins(
    lengths: Sequence[int], max_length: int, decreasing: bool = False
) -> list[list[int]]:
    """Greedy first-fit: put each item (in input order, or longest first if ``decreasing``) into
    the first bin with room, opening a new bin when none has. Returns item indices per bin."""
    order = (
        sorted(range(len(lengths)), key=lambda i: -lengths[i])
        if decreasing
        else range(len(lengths))
    )
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = lengths[i]
        if n > max_length:
            raise ContextLengthError(f"sample {i} has {n} tokens > max_length {max_length}")
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(max_length - n)
    return bins


def pack_sequences(
    input_ids: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    max_length: int,
    *,
    ignore_index: int = -100,
    decreasing: bool = False,
) -> list[PackedSequence]:
    """Pack 1-D ``input_ids`` / ``labels`` pairs into rows of at most ``max_length`` tokens.

    Bins are filled greedily first-fit (:func:`first_fit_bins`); a sample longer than
    ``max_length`` raises :class:`ContextLengthError` (truncate before packing if that is wanted).
    Returns one :class:`PackedSequence` per bin; format in the module docstring.
    """
    if len(input_ids) != len(labels):
        raise InvalidInputError(f"{len(input_ids)} input_ids but {len(labels)} labels")
    if max_length < 1:
        raise InvalidInputError("max_length must be >= 1")
    lengths = []
    for i, (ids, lab) in enumerate(zip(input_ids, labels)):
        if ids.dim() != 1 or lab.shape != ids.shape or ids.numel() == 0:
            raise InvalidInputError(
                f"sample {i}: need non-empty 1-D input_ids and labels of the same shape, got "
                f"{tuple(ids.shape)} and {tuple(lab.shape)}"
            )
        lengths.append(ids.numel())
    packs = []
    for bin_ in first_fit_bins(lengths, max_length, decreasing):
        ids = torch.cat([input_ids[i].long() for i in bin_])
        labs = []
        for i in bin_:
            lab = labels[i].long().clone()
            lab[0] = ignore_index
            labs.append(lab)
        pos = torch.cat([torch.arange(lengths[i]) for i in bin_])
        cu = torch.zeros(len(bin_) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(torch.tensor([lengths[i] for i in bin_]), 0)
        packs.append(
            PackedSequence(
                input_ids=ids[None],
                labels=torch.cat(labs)[None],
                position_ids=pos[None],
                cu_seqlens=cu,
                max_seqlen=max(lengths[i] for i in bin_),
                sample_indices=list(bin_),
            )
        )
    return packs
