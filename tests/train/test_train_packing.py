"""Padding-free packing: first-fit bins, position ids, cu_seqlens, boundary labels."""

from __future__ import annotations

import pytest
import torch

from oryx_mllm.errors import ContextLengthError
from oryx_mllm.train import first_fit_bins, pack_sequences


def test_first_fit():
    assert first_fit_bins([5, 4, 3, 2, 6], 8) == [[0, 2], [1, 3], [4]]
    assert first_fit_bins([5, 4, 3, 2, 6], 8, decreasing=True) == [[4, 3], [0, 2], [1]]
    with pytest.raises(ContextLengthError):
        first_fit_bins([9], 8)


def test_pack_sequences_format():
    ids = [torch.arange(10, 13), torch.arange(20, 22), torch.arange(30, 34)]
    labels = [x + 100 for x in ids]
    packs = pack_sequences(ids, labels, max_length=9)
    assert len(packs) == 1
    p = packs[0]
    assert p.input_ids.tolist() == [[10, 11, 12, 20, 21, 30, 31, 32, 33]]
    assert p.labels.tolist() == [[-100, 111, 112, -100, 121, -100, 131, 132, 133]]
    assert p.position_ids.tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert p.cu_seqlens.tolist() == [0, 3, 5, 9] and p.cu_seqlens.dtype == torch.int32
    assert p.max_seqlen == 4 and p.sample_indices == [0, 1, 2]
    # the boundaries are recoverable from position_ids alone (what flash-attention-2 paths use)
    starts = (p.position_ids[0] == 0).nonzero().flatten().tolist()
    assert starts + [p.input_ids.shape[1]] == p.cu_seqlens.tolist()
    assert labels[0].tolist() == [110, 111, 112]  # inputs untouched


def test_pack_into_several_bins():
    lengths = [7, 3, 6, 2, 4, 1]
    ids = [torch.full((n,), i) for i, n in enumerate(lengths)]
    packs = pack_sequences(ids, [x.clone() for x in ids], max_length=8)
    assert [p.sample_indices for p in packs] == [[0, 5], [1, 3], [2], [4]]
    for p in packs:
        assert p.input_ids.shape[1] <= 8
        assert p.cu_seqlens[-1].item() == p.input_ids.shape[1]
        for k, i in enumerate(p.sample_indices):
            a, b = p.cu_seqlens[k].item(), p.cu_seqlens[k + 1].item()
            assert (p.input_ids[0, a:b] == i).all()
            assert p.position_ids[0, a:b].tolist() == list(range(lengths[i]))
    assert sorted(i for p in packs for i in p.sample_indices) == list(range(6))
    with pytest.raises(ContextLengthError):
        pack_sequences([torch.zeros(9, dtype=torch.long)], [torch.zeros(9, dtype=torch.long)], 8)
