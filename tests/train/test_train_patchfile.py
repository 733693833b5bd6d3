"""Patch files: round trips of images and multi-frame videos, and every way a reference can be bad."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from oryx_mllm.errors import DataError, MediaNotFoundError, OryxError, PatchFileError
from oryx_mllm.train import MediaRef, PatchFileWriter, parse_media_ref, read_patch


def _png(color: tuple[int, int, int], size=(8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (value, 255 - value, 7)).save(buf, format="JPEG")
    return buf.getvalue()


def test_round_trip_images_and_video(tmp_path):
    img_a, img_b = _png((255, 0, 0)), _png((0, 0, 255), size=(5, 9))
    frames = [_jpeg(v) for v in range(0, 250, 50)]
    with PatchFileWriter(tmp_path / "packs" / "p0.bin", ref_path="packs/p0.bin") as w:
        ref_a = w.append(img_a)
        ref_v = w.append(frames)
        ref_b = w.append(img_b)
    assert ref_a == {"patch": "packs/p0.bin", "start": 0, "size": [len(img_a)]}
    assert ref_v["start"] == len(img_a) and ref_v["size"] == [len(f) for f in frames]
    assert ref_b["start"] == len(img_a) + sum(len(f) for f in frames)

    assert read_patch(tmp_path, ref_a) == [img_a]
    assert read_patch(tmp_path, ref_b) == [img_b]
    assert read_patch(tmp_path, ref_v) == frames
    assert read_patch(tmp_path, ref_v, indices=[4, 0, 0]) == [frames[4], frames[0], frames[0]]
    decoded = Image.open(io.BytesIO(read_patch(tmp_path, ref_b)[0]))
    assert decoded.size == (5, 9)
    # MediaRef form and JSON round trip
    mref = parse_media_ref(ref_v)
    assert mref.is_patch and mref.num_items == 5 and mref.to_json() == ref_v
    assert read_patch(tmp_path, mref) == frames


def test_writer_appends_to_existing_file(tmp_path):
    with PatchFileWriter(tmp_path / "p.bin") as w:
        r1 = w.append(b"abc")
    with PatchFileWriter(tmp_path / "p.bin") as w:
        r2 = w.append([b"de", b"f"])
    assert r2 == {"patch": "p.bin", "start": 3, "size": [2, 1]}
    assert read_patch(tmp_path, r1) == [b"abc"]
    assert read_patch(tmp_path, r2) == [b"de", b"f"]


def test_bad_references(tmp_path):
    with PatchFileWriter(tmp_path / "p.bin") as w:
        w.append(b"0123456789")
        with pytest.raises(DataError):
            w.append(b"")
    with pytest.raises(PatchFileError, match="past the end"):
        read_patch(tmp_path, {"patch": "p.bin", "start": 8, "size": [3]})
    with pytest.raises(PatchFileError, match="past the end"):
        read_patch(tmp_path, {"patch": "p.bin", "start": 100, "size": 1})
    with pytest.raises(MediaNotFoundError) as exc:
        read_patch(tmp_path, {"patch": "missing.bin", "start": 0, "size": [1]})
    assert isinstance(exc.value, FileNotFoundError) and isinstance(exc.value, OryxError)
    with pytest.raises(PatchFileError, match="out of range"):
        read_patch(tmp_path, {"patch": "p.bin", "start": 0, "size": [2, 2]}, indices=[2])
    for bad in (
        {"patch": "p.bin", "start": -1, "size": [1]},
        {"patch": "p.bin", "start": 0, "size": []},
        {"patch": "p.bin", "start": 0, "size": [0]},
        {"patch": "p.bin", "size": [1]},
        {"patch": "", "start": 0, "size": [1]},
        {"patch": "p.bin", "start": 0, "size": [1], "offset": 3},
        42,
    ):
        with pytest.raises(DataError):
            read_patch(tmp_path, bad)
    with pytest.raises(DataError, match="plain path"):
        read_patch(tmp_path, MediaRef("p.bin"))


def test_truncated_file(tmp_path):
    with PatchFileWriter(tmp_path / "p.bin") as w:
        ref = w.append([_jpeg(1), _jpeg(2)])
    data = (tmp_path / "p.bin").read_bytes()
    (tmp_path / "p.bin").write_bytes(data[:-10])
    with pytest.raises(PatchFileError, match="truncated"):
        read_patch(tmp_path, ref)
