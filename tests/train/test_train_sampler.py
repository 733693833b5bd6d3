"""ModalityLengthGroupedSampler: grouping, determinism, resume and rank splits."""

from __future__ import annotations

import random

import pytest

from oryx_mllm.errors import ConfigError
from oryx_mllm.train import LengthEstimator, ModalityLengthGroupedSampler, parse_sample


def _data(n=203, seed=0):
    rng = random.Random(seed)
    modalities = [
        rng.choice(["text", "image", "video", "video_long", "multiview"]) for _ in range(n)
    ]
    base = {"text": 50, "image": 1000, "video": 15000, "video_long": 19000, "multiview": 3000}
    lengths = [base[m] + rng.randrange(1000) for m in modalities]
    return lengths, modalities


def _batches(sampler, bs):
    idx = list(sampler)
    return [idx[i : i + bs] for i in range(0, len(idx), bs)]


def test_batches_are_single_modality_and_length_sorted():
    lengths, modalities = _data()
    s = ModalityLengthGroupedSampler(lengths, modalities, batch_size=4, seed=1, megabatch_mult=4)
    batches = _batches(s, 4)
    assert all(len(b) == 4 for b in batches)
    for b in batches:
        assert len({modalities[i] for i in b}) == 1
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)
    # every sample appears (top-up repeats only inside a modality)
    assert set(sum(batches, [])) == set(range(len(lengths)))
    assert len(s) == len(sum(batches, []))
    # groups are shuffled: modality order is not simply sorted
    order = [modalities[b[0]] for b in batches]
    assert order != sorted(order)


def test_deterministic_by_seed_and_epoch():
    lengths, modalities = _data()
    a = ModalityLengthGroupedSampler(lengths, modalities, batch_size=4, seed=5)
    b = ModalityLengthGroupedSampler(lengths, modalities, batch_size=4, seed=5)
    assert list(a) == list(b)
    assert list(a) != list(ModalityLengthGroupedSampler(lengths, modalities, batch_size=4, seed=6))
    e0 = list(a)
    a.set_epoch(1)
    assert list(a) != e0
    a.set_epoch(0)
    assert list(a) == e0


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_resume_at_start_index(world_size):
    lengths, modalities = _data()
    bs = 2
    full = [
        list(
            ModalityLengthGroupedSampler(
                lengths, modalities, bs, world_size=world_size, rank=r, seed=2, epoch=3
            )
        )
        for r in range(world_size)
    ]
    consumed_steps = 7
    start = consumed_steps * bs * world_size
    for r in range(world_size):
        resumed = ModalityLengthGroupedSampler(
            lengths,
            modalities,
            bs,
            world_size=world_size,
            rank=r,
            seed=2,
            epoch=3,
            start_index=start,
        )
        assert list(resumed) == full[r][consumed_steps * bs :]
        assert len(resumed) == len(full[r]) - consumed_steps * bs
        resumed.set_epoch(4)  # next epoch starts from the beginning
        assert len(list(resumed)) == len(full[r])
    with pytest.raises(ConfigError):
        ModalityLengthGroupedSampler(lengths, modalities, bs, world_size=2, start_index=3)


def test_ranks_do_not_overlap_and_batches_stay_aligned():
    lengths, modalities = _data(n=240)  # counts per modality need not divide evenly
    ws, bs = 4, 3
    per_rank = [
        list(
            ModalityLengthGroupedSampler(
                lengths, modalities, bs, world_size=ws, rank=r, seed=9, drop_last=True
            )
        )
        for r in range(ws)
    ]
    assert len({len(p) for p in per_rank}) == 1
    flat = sum(per_rank, [])
    assert len(flat) == len(set(flat))  # no overlap with drop_last
    # step k of every rank is the same modality
    for k in range(len(per_rank[0]) // bs):
        mods = {modalities[i] for p in per_rank for i in p[k * bs : (k + 1) * bs]}
        assert len(mods) == 1
    # without drop_last every sample is seen; repeats only to fill the last batch of a modality
    per_rank = [
        list(ModalityLengthGroupedSampler(lengths, modalities, bs, world_size=ws, rank=r, seed=9))
        for r in range(ws)
    ]
    flat = sum(per_rank, [])
    assert set(flat) == set(range(len(lengths)))
    assert len(flat) - len(set(flat)) < ws * bs * len(set(modalities))


def test_length_estimator_orders_modalities():
    conv = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]
    est = LengthEstimator()
    text = est(parse_sample({"id": "t", "conversations": conv}))
    image = est(parse_sample({"id": "i", "image": "a.jpg", "conversations": conv}))
    video = est(parse_sample({"id": "v", "video": "a.mp4", "conversations": conv}))
    long = est(
        parse_sample(
            {"id": "l", "video_long": "a.mp4", "frames": list(range(256)), "conversations": conv}
        )
    )
    short_long = est(
        parse_sample({"id": "s", "video_long": "a.mp4", "frames": [1, 2], "conversations": conv})
    )
    assert text < image < video < long
    assert short_long < long
    assert text == 2  # 7 chars / 4
