"""Padding-free sequence packing, and attention that never crosses the packed samples.

Several tokenised samples are concatenated into one row of a batch of size 1, with no padding::

    input_ids    [1, L]   a1 a2 a3 b1 b2 c1 c2 c3 c4
    labels       [1, L]   -100 a2 a3 -100 b2 -100 c2 c3 c4
    position_ids [1, L]   0  1  2  0  1  0  1  2  3
    cu_seqlens   [n + 1]  0 3 5 9            (int32, cumulative sample lengths)
    max_seqlen            4

Position ids restart at 0 per sample, so rotary embeddings match unpacked training. The first
label of every sample is set to ``ignore_index``: causal-LM losses shift labels by one, so that
position would otherwise train the last token of the previous sample to predict the first token of
the next one. (A sample's own first token is never a target in unpacked training either.)

Keeping the samples apart (:func:`packed_attention_kwargs`), per attention backend:

- ``flash_attention_2``: ``position_ids`` plus ``cu_seq_lens_q/k`` and ``max_length_q/k`` and *no*
  ``attention_mask``; transformers then calls the varlen kernel with our boundaries directly (the
  layout of its ``DataCollatorWithFlattening``), no O(L^2) mask exists.
- ``sdpa`` / ``eager``: an explicit 4-D block-diagonal causal mask ``[1, 1, L, L]`` (0 where a
  query may attend, -inf elsewhere), which transformers passes to the kernels as given. Why not
  rely on transformers' own detection of packed ``position_ids`` (``find_packed_sequence_indices``
  in ``masking_utils``, present in the installed 5.x)? It is skipped whenever a KV cache object
  exists, and Qwen2/Llama create one in training forwards unless ``use_cache=False`` is passed:
  measured on transformers 5.24, a packed second sample then attends to the first with no error
  (logit error 5.4 on a tiny Qwen2). It is also absent from older transformers releases this package
  supports (>= 4.45). An explicit mask behaves the same on every version and for any cache
  setting; its cost is ``L^2`` mask elements per row, which transformers' own path materialises
  too (as booleans) once packing is detected. Rows are capped at ``data.max_length`` tokens.
- anything else (``flex_attention``, paged or hub kernels), sliding-window layers under
  sdpa/eager, and backbones whose packed forward is not verified (:data:`PACKING_MODEL_TYPES`)
  raise :class:`~oryx_mllm.errors.PackingUnsupportedError` from :func:`check_packing_support`
  when the trainer starts, instead of training on cross-sample attention.

Losses are computed outside the model (:func:`lm_loss_sum`) as a sum over the targets of all rows
of a micro-batch divided by their count: the token-weighted mean the padded batch gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from oryx_mllm.errors import ContextLengthError, InvalidInputError, PackingUnsupportedError


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


# Attention across packed samples ------------------------------------------------------------------

PACKING_BACKENDS = ("eager", "sdpa", "flash_attention_2")
# backbones whose packed forward is tested to equal the unpacked one (Qwen2 / Qwen2.5; Llama / Yi)
PACKING_MODEL_TYPES = ("qwen2", "llama")


def check_packing_support(language_model) -> str:
    """The attention backend packed batches will use with ``language_model``; raises
    :class:`PackingUnsupportedError` if this backbone/backend cannot keep packed samples apart."""
    config = getattr(language_model, "config", None)
    impl = getattr(config, "_attn_implementation", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in PACKING_MODEL_TYPES:
        raise PackingUnsupportedError(
            f"data.packing: backbone model_type {model_type!r} is not one whose packed forward is "
            f"verified ({', '.join(PACKING_MODEL_TYPES)}); set data.packing=false"
        )
    if impl not in PACKING_BACKENDS:
        raise PackingUnsupportedError(
            f"data.packing: attention implementation {impl!r} cannot keep packed samples apart; "
            f"use one of {PACKING_BACKENDS} (model.attn_implementation) or data.packing=false"
        )
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    sliding = layer_types != {"full_attention"} or (
        getattr(config, "use_sliding_window", False) and getattr(config, "sliding_window", None)
    )
    if sliding and impl != "flash_attention_2":
        raise PackingUnsupportedError(
            f"data.packing: the backbone has non-full attention layers {sorted(layer_types)}; the "
            f"explicit packed mask used with {impl!r} would drop the window; use "
            "flash_attention_2 or data.packing=false"
        )
    return impl


def block_causal_mask(
    cu_seqlens: torch.Tensor, dtype: torch.dtype = torch.float32, device=None
) -> torch.Tensor:
    """Additive causal mask that is block-diagonal over the packed samples: ``[1, 1, L, L]``,
    0 where query ``q`` may attend key ``k`` (same sample, ``k <= q``), -inf elsewhere."""
    cu = cu_seqlens.to(device=device, dtype=torch.long)
    lengths = cu[1:] - cu[:-1]
    seq = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)  # [L]
    pos = torch.arange(int(cu[-1]), device=device)
    allowed = (seq[:, None] == seq[None, :]) & (pos[None, :] <= pos[:, None])  # [L, L]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~allowed, float("-inf"))[None, None]


def packed_attention_kwargs(
    position_ids: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    attn_implementation: str,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Keyword arguments for a causal LM's forward on one packed row (module docstring), on
    ``position_ids``' device; ``dtype`` is the dtype of the additive mask (sdpa / eager)."""
    device = position_ids.device
    kwargs: dict = {"position_ids": position_ids, "use_cache": False}
    if attn_implementation == "flash_attention_2":
        cu = cu_seqlens.to(device=device, dtype=torch.int32)
        kwargs.update(
            attention_mask=None,
            cu_seq_lens_q=cu,
            cu_seq_lens_k=cu,
            max_length_q=int(max_seqlen),
            max_length_k=int(max_seqlen),
        )
    elif attn_implementation in ("sdpa", "eager"):
        kwargs["attention_mask"] = block_causal_mask(cu_seqlens, dtype, device)
    else:
        raise PackingUnsupportedError(
            f"packed batches need one of {PACKING_BACKENDS}, not {attn_implementation!r}"
        )
    return kwargs


def lm_loss_sum(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, int]:
    """Next-token cross-entropy summed over the targets (in float32) and the number of targets.
    ``logits [B, L, V]``, ``labels [B, L]`` (unshifted, as given to a causal LM)."""
    target = labels[:, 1:]
    pred = logits[:, :-1].float()
    loss = torch.nn.functional.cross_entropy(
        pred.reshape(-1, pred.shape[-1]),
        target.reshape(-1).to(pred.device),
        ignore_index=ignore_index,
        reduction="sum",
    )
    return loss, int((target != ignore_index).sum())
