"""Lazy dataset items and bad-sample skipping, in process and with two DataLoader workers."""

from __future__ import annotations

import io
import json
import logging

import pytest
from PIL import Image
from torch.utils.data import DataLoader

from oryx_mllm.errors import DataError, ImageDecodeError
from oryx_mllm.train import (
    OryxJsonDataset,
    PatchFileWriter,
    SkipCollate,
    SkippingDataset,
    SkipStats,
)


def _jpeg(v: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 10), (v, v, v)).save(buf, format="JPEG")
    return buf.getvalue()


def _conv(q="<image>\nWhat?"):
    return [{"from": "human", "value": q}, {"from": "gpt", "value": "This."}]


def decode_transform(item: dict) -> dict:
    """A stand-in for the processor: decode images, raise a typed error on corrupt data."""
    out = []
    for handle in item["media"]:
        handles = handle if isinstance(handle, list) else [handle]
        for h in handles:
            try:
                img = Image.open(h if not isinstance(h, bytes) else io.BytesIO(h))
                img.load()
            except OSError as e:
                raise ImageDecodeError(f"{item['id']}: {e}") from e
            out.append(img.size)
    return {"id": item["id"], "sizes": out, "frames": item["frames"]}


@pytest.fixture
def data_root(tmp_path):
    """10 image samples, 3 of them bad: missing file, corrupt patch bytes, truncated patch."""
    (tmp_path / "img").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "img" / "ok.png")
    with PatchFileWriter(tmp_path / "p.bin") as w:
        good_ref = w.append(_jpeg(100))
        video_ref = w.append([_jpeg(10), _jpeg(20), _jpeg(30)])
        corrupt_ref = w.append(b"definitely not a jpeg")
    records = []
    for i in range(10):
        rec = {
            "id": f"s{i}",
            "image": "img/ok.png" if i % 2 else good_ref,
            "conversations": _conv(),
        }
        records.append(rec)
    records[3]["image"] = "img/missing.png"
    records[5]["image"] = corrupt_ref
    records[8]["image"] = {"patch": "p.bin", "start": 10**6, "size": [5]}
    records.append(
        {"id": "vid", "video": video_ref, "frames": [2, 0], "conversations": _conv("<video>\n?")}
    )
    records.append(
        {"id": "file_vid", "video": "img/ok.png", "frames": [5, 1], "conversations": _conv("?")}
    )
    (tmp_path / "train.json").write_text(json.dumps(records))
    return tmp_path


def test_raw_items(data_root):
    ds = OryxJsonDataset(data_root / "train.json", data_root)
    item = ds[1]
    assert item["id"] == "s1" and item["modality"] == "image"
    assert item["media"] == [data_root / "img" / "ok.png"]
    assert item["conversations"][0] == {"from": "human", "value": "<image>\nWhat?"}
    assert ds[0]["media"] == [_jpeg(100)]
    vid = ds[10]
    assert vid["media"] == [[_jpeg(30), _jpeg(10)]] and vid["frames"] is None  # selection applied
    file_vid = ds[11]
    assert file_vid["media"] == [data_root / "img" / "ok.png"] and file_vid["frames"] == [5, 1]
    assert file_vid["conversations"][0]["value"] == "<video>\n?"
    assert ds.modalities[10] == "video" and len(ds.lengths) == 12
    with pytest.raises(DataError, match="'s3'.*not found"):
        ds[3]
    with pytest.raises(DataError, match="'s8'.*past the end"):
        ds[8]


def test_skipping_single_process(data_root, caplog):
    ds = SkippingDataset(
        OryxJsonDataset(data_root / "train.json", data_root, decode_transform), seed=3
    )
    with caplog.at_level(logging.WARNING, logger="oryx_mllm.train.data"):
        got = [ds[i] for i in range(len(ds))]
    for bad in (3, 5, 8):
        assert got[bad].requested == bad and got[bad].index not in (3, 5, 8)
        assert got[bad].skipped[0].sample_id == f"s{bad}"
    assert [e.error for e in got[3].skipped][:1] == ["MediaNotFoundError"]
    assert [e.error for e in got[5].skipped][:1] == ["ImageDecodeError"]
    assert [e.error for e in got[8].skipped][:1] == ["PatchFileError"]
    assert all(not got[i].skipped for i in (0, 1, 2, 4, 6, 7, 9, 10, 11))
    assert ds.stats.total == sum(len(g.skipped) for g in got) >= 3
    assert "'s5'" in caplog.text and "ImageDecodeError" in caplog.text
    # deterministic replacement
    again = SkippingDataset(
        OryxJsonDataset(data_root / "train.json", data_root, decode_transform), seed=3
    )
    assert [again[i].index for i in range(len(again))] == [g.index for g in got]


def test_bounded_attempts(data_root):
    def always_fail(item):
        raise ImageDecodeError("broken")

    ds = SkippingDataset(
        OryxJsonDataset(data_root / "train.json", data_root, always_fail), max_attempts=4
    )
    with pytest.raises(DataError, match="after 4 failed attempts"):
        ds[0]
    assert ds.stats.total == 4

    # real bugs are not swallowed
    def buggy(item):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        SkippingDataset(OryxJsonDataset(data_root / "train.json", data_root, buggy))[0]


def test_skipping_with_two_workers(data_root):
    ds = SkippingDataset(
        OryxJsonDataset(data_root / "train.json", data_root, decode_transform), seed=3
    )
    expected = [ds[i].index for i in range(len(ds))]
    expected_skips = ds.stats.total
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=SkipCollate())
    stats = SkipStats()
    served = []
    for batch in loader:
        stats.add(batch.skipped)
        served += batch.indices
        assert len(batch.data) == len(batch.indices)
        assert all(isinstance(x, dict) and "sizes" in x for x in batch.data)
    assert served == expected
    assert stats.total == expected_skips
    assert set(stats.by_worker) <= {0, 1} and len(stats.by_worker) == 2
    assert {"s3", "s5", "s8"} <= set(stats.by_sample)
    summary = stats.summary()
    assert f"skipped {expected_skips} sample loads" in summary and "s5" in summary
    merged = SkipStats()
    merged.merge(stats)
    merged.merge(stats)
    assert merged.total == 2 * stats.total
    assert SkipStats().summary() == "no samples skipped"


def test_replacement_keeps_the_modality(data_root):
    records = json.loads((data_root / "train.json").read_text())
    records.append({"id": "bad_vid", "video": "img/gone.mp4", "conversations": _conv("<video>\n?")})
    (data_root / "train.json").write_text(json.dumps(records))
    base = OryxJsonDataset(data_root / "train.json", data_root)
    for seed in range(5):
        ds = SkippingDataset(base, seed=seed)
        for bad in (3, 5, 8, 12):
            got = ds[bad]
            assert base.modalities[got.index] == base.modalities[bad]
    assert base.modalities[12] == "video" and ds[12].index in (10, 11)


def test_loader_with_grouped_sampler_yields_single_modality_batches(data_root):
    from oryx_mllm.train import ModalityLengthGroupedSampler

    base = OryxJsonDataset(data_root / "train.json", data_root)
    sampler = ModalityLengthGroupedSampler(base.lengths, base.modalities, batch_size=2, seed=0)
    loader = DataLoader(
        SkippingDataset(base), batch_size=2, sampler=sampler, collate_fn=SkipCollate()
    )
    n = 0
    for batch in loader:
        assert len({item["modality"] for item in batch.data}) == 1
        n += len(batch.data)
    assert n == len(sampler) == 12
