"""Needle-in-a-haystack builder: format, target frames at the stated positions, determinism."""

from __future__ import annotations

import json
import re

import pytest

from oryx_mllm.errors import DataError
from oryx_mllm.train import (
    OryxJsonDataset,
    PatchFileWriter,
    build_niah_file,
    build_niah_samples,
    load_records,
)
from oryx_mllm.train.niah import insert_targets, main, uniform_frames

VIDEO = {
    "id": "movie1",
    "video": "movies/movie1.mp4",
    "num_frames": 1000,
    "captions": [{"frame": 1, "caption": "A dog."}, {"frame": 500, "caption": "A cat."}],
    "differences": [
        {"frames": [333, 7], "difference": "The second one is darker."},
        {"frames": [0, 999], "difference": "Day versus night."},
    ],
}


def _positions(question: str) -> list[int]:
    return [int(x) for x in re.findall(r"frame (\d+)", question)]


def test_uniform_frames():
    assert uniform_frames(10, 20) == list(range(10))
    f = uniform_frames(1000, 256)
    assert len(f) == 256 and len(set(f)) == 256 and f == sorted(f) and f[0] >= 0 and f[-1] < 1000


def test_samples_format_and_targets():
    out = build_niah_samples(VIDEO, num_frames=64, seed=0)
    assert [r["niah"]["task"] for r in out] == ["captioning"] * 2 + ["differing"] * 2
    for r in out:
        assert r["video_long"] == "movies/movie1.mp4"
        frames, info = r["frames"], r["niah"]
        assert len(frames) == 64 and len(set(frames)) == 64
        human, gpt = r["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<video>\n")
        assert sorted(_positions(human["value"])) == sorted(info["positions"])
        for src, pos in zip(info["source_frames"], info["positions"]):
            assert frames[pos - 1] == src  # 1-based positions
        assert gpt["from"] == "gpt"
    assert out[0]["conversations"][1]["value"] == "A dog."
    assert out[2]["niah"]["source_frames"] == [333, 7]
    # non-target frames are the uniform subsample
    base = uniform_frames(1000, 64)
    r = out[1]
    changed = [k for k in range(64) if r["frames"][k] != base[k]]
    assert len(changed) <= 1 and all(k + 1 in r["niah"]["positions"] for k in changed)


def test_differing_question_names_both_positions_in_order():
    templates = ("What is the difference between frame {i} and frame {j}?",)
    out = build_niah_samples(
        VIDEO, num_frames=32, seed=1, tasks=["differing"], differing_templates=templates
    )
    for r in out:
        i, j = _positions(r["conversations"][0]["value"])
        assert [r["frames"][i - 1], r["frames"][j - 1]] == r["niah"]["source_frames"]


def test_deterministic_and_seed_dependent():
    a = build_niah_samples(VIDEO, num_frames=64, seed=3)
    assert a == build_niah_samples(VIDEO, num_frames=64, seed=3)
    assert a != build_niah_samples(VIDEO, num_frames=64, seed=4)


def test_target_already_present_keeps_its_place():
    import random

    frames, pos = insert_targets([0, 10, 20, 30], [20, 5], random.Random(0))
    assert pos[0] == 2 and frames[2] == 20 and frames[pos[1]] == 5 and pos[1] != 2


def test_bad_input_names_the_video():
    for bad, msg in [
        ({**VIDEO, "captions": [{"frame": 1000, "caption": "x"}]}, "captions\\[0\\]"),
        ({**VIDEO, "differences": [{"frames": [3, 3], "difference": "x"}]}, "same"),
        ({**VIDEO, "differences": [{"frames": [3], "difference": "x"}]}, "two frame"),
        ({**VIDEO, "num_frames": None}, "num_frames"),
        ({**VIDEO, "captions": [{"frame": 1, "caption": ""}]}, "non-empty"),
    ]:
        with pytest.raises(DataError, match=msg) as exc:
            build_niah_samples(bad)
        assert "'movie1'" in str(exc.value)


def test_file_round_trip_and_loader_decodes_those_frames(tmp_path):
    # a "video" stored as a patch file: frame k is the bytes b"frame-k"
    with PatchFileWriter(tmp_path / "movie.bin") as w:
        ref = w.append([f"frame-{k}".encode() for k in range(300)])
    videos = [
        VIDEO,
        {
            "video": ref,
            "captions": [{"frame": 299, "caption": "The end."}],
            "differences": [{"frames": [5, 250], "difference": "d"}],
        },
    ]
    (tmp_path / "in.json").write_text(json.dumps(videos))
    n = build_niah_file(tmp_path / "in.json", tmp_path / "out.json", num_frames=16, seed=0)
    assert n == 6
    samples = load_records(tmp_path / "out.json")
    assert all(s.modality == "video_long" and len(s.frames) == 16 for s in samples)
    assert samples[0].extra["niah"]["task"] == "captioning"
    ds = OryxJsonDataset(samples[4:], tmp_path)
    item = ds[0]  # "The end." caption on the patch video
    (frames_bytes,) = item["media"]
    pos = samples[4].extra["niah"]["positions"][0]
    assert frames_bytes[pos - 1] == b"frame-299"
    assert frames_bytes == [f"frame-{k}".encode() for k in samples[4].frames]
    # JSON lines output through the CLI entry point, same content
    main([str(tmp_path / "in.json"), str(tmp_path / "out.jsonl"), "--num-frames", "16"])
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == json.loads((tmp_path / "out.json").read_text())
