"""Property tests: the sampler partitions the data across ranks, packing preserves every token."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from oryx_mllm.train import ModalityLengthGroupedSampler, pack_sequences


@settings(max_examples=40, deadline=None)
@given(
    mods=st.lists(st.sampled_from(["text", "image", "video"]), min_size=1, max_size=60),
    bs=st.integers(1, 4),
    ws=st.integers(1, 3),
    seed=st.integers(0, 5),
)
def test_sampler_partition(mods, bs, ws, seed):
    lengths = [len(m) * 7 + i % 5 for i, m in enumerate(mods)]
    ranks = [
        list(ModalityLengthGroupedSampler(lengths, mods, bs, world_size=ws, rank=r, seed=seed))
        for r in range(ws)
    ]
    assert len({len(r) for r in ranks}) == 1
    assert set(sum(ranks, [])) == set(range(len(mods)))
    for k in range(len(ranks[0]) // bs):
        assert len({mods[i] for r in ranks for i in r[k * bs : (k + 1) * bs]}) == 1


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 16), min_size=1, max_size=20), max_length=st.integers(16, 40)
)
def test_packing_preserves_tokens(lengths, max_length):
    ids = [torch.randint(0, 1000, (n,)) for n in lengths]
    packs = pack_sequences(ids, [x.clone() for x in ids], max_length)
    seen = []
    for p in packs:
        assert p.input_ids.shape[1] <= max_length
        for k, i in enumerate(p.sample_indices):
            a, b = p.cu_seqlens[k].item(), p.cu_seqlens[k + 1].item()
            assert torch.equal(p.input_ids[0, a:b], ids[i])
            assert p.labels[0, a].item() == -100
            assert torch.equal(p.labels[0, a + 1 : b], ids[i][1:])
            seen.append(i)
    assert sorted(seen) == list(range(len(lengths)))
