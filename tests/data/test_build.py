"""The curriculum build (oryx_mllm.data.build) is deterministic and loads in the trainer."""

from __future__ import annotations

import json

import numpy as np

from oryx_mllm.data.build import (
    BuildOptions,
    build_split,
    has_marks,
    long_video_indices,
    long_video_span,
    needle_frame_text,
    parse_counts,
)
from oryx_mllm.data.synthetic import make_needle_video
from oryx_mllm.train.data import OryxJsonDataset

COUNTS = {
    "objects/color": 2,
    "documents/line_code": 1,
    "short_videos/direction": 2,
    "long_videos/digit": 2,
    "multiview/count": 4,
}


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*")) if p.is_file()}


def test_build_is_deterministic(tmp_path):
    opt = BuildOptions(long_frames=8, marks_fraction=0.5)
    a = build_split(tmp_path / "a", COUNTS, split="train", seed=3, options=opt)
    b = build_split(tmp_path / "b", COUNTS, split="train", seed=3, options=opt)
    assert _files(a.parent) == _files(b.parent)
    # rebuilding into the same folder replaces (not appends to) the patch files
    c = build_split(tmp_path / "a", COUNTS, split="train", seed=3, options=opt)
    assert _files(c.parent) == _files(b.parent)
    records = json.loads(a.read_text())
    assert len(records) == sum(COUNTS.values())
    assert {r["task"] for r in records} == set(COUNTS)


def test_build_records_load_and_keep_the_needle(tmp_path):
    path = build_split(tmp_path, COUNTS, split="train", seed=0, options=BuildOptions(long_frames=8))
    ds = OryxJsonDataset([str(path)], str(tmp_path))
    by_id = {ds[i]["id"]: ds[i] for i in range(len(ds))}
    records = {r["id"]: r for r in json.loads(path.read_text())}
    for sid, item in by_id.items():
        rec = records[sid]
        if rec["task"].startswith("long_videos"):
            assert item["modality"] == "video_long"
            assert len(item["media"][0]) == 8
            assert rec["num_frames"] >= 100
        if rec["task"] == "multiview/count":
            assert item["modality"] == "multiview"
            assert isinstance(rec["marks"], bool)


def test_long_video_records_name_the_needle_on_exactly_the_frames_that_show_it(tmp_path):
    path = build_split(tmp_path, COUNTS, split="train", seed=0, options=BuildOptions(long_frames=8))
    for rec in json.loads(path.read_text()):
        if rec["task"].startswith("long_videos"):
            words = rec["frame_text"]
            assert len(words) == 8
            assert {w for w in words if w} == {rec["answer"]}  # a digit needle: the digit
        else:
            assert "frame_text" not in rec


def test_needle_frame_text_follows_the_pixels():
    for needle, word in [
        ({"kind": "shape", "shape": "circle", "color": "green"}, "green"),
        ({"kind": "digit", "digit": "4"}, "4"),
    ]:
        video = make_needle_video(
            np.random.default_rng(0),
            needle,
            num_frames=120,
            depth=0.5,
            frame_size=64,
            needle_span=15,
        )
        idx = long_video_indices(120, 8)
        shown = [
            not np.array_equal(np.asarray(video.frame(i)), np.asarray(video.haystack(i)))
            for i in idx
        ]
        assert [w == word for w in needle_frame_text(video, idx)] == shown
        assert any(shown)


def test_needle_sampling_never_misses():
    for n in (100, 257, 1000, 1600):
        for f in (8, 32, 64):
            span = long_video_span(n, f)
            idx = set(long_video_indices(n, f))
            for start in range(0, n - span + 1):
                assert idx & set(range(start, start + span)), (n, f, start)


def test_marks_fraction_and_counts():
    ids = [f"multiview/count:0:{i}" for i in range(400)]
    share = sum(has_marks(i, 0.5) for i in ids) / len(ids)
    assert 0.4 < share < 0.6
    assert not any(has_marks(i, 0.0) for i in ids)
    assert parse_counts(["objects=3", "documents/table=1"]) == {"objects": 3, "documents/table": 1}


def test_session_records_are_multi_turn(tmp_path):
    path = build_split(tmp_path, {"objects/qa_session": 2, "multiview/scene_session": 1})
    for rec in json.loads(path.read_text()):
        conv = rec["conversations"]
        assert len(conv) >= 4 and len(conv) % 2 == 0
        assert [m["from"] for m in conv] == ["human", "gpt"] * (len(conv) // 2)
        placeholders = [m["value"].count("<image>") + m["value"].count("<video>") for m in conv]
        assert placeholders[0] == 1 and sum(placeholders) == 1
        assert conv[1]["value"] == rec["answer"]


def test_text_session_records_have_no_media_and_load_as_text(tmp_path):
    path = build_split(tmp_path, {"objects/text_session": 2})
    ds = OryxJsonDataset([str(path)], str(tmp_path))
    for rec, i in zip(json.loads(path.read_text()), range(len(ds)), strict=True):
        assert not {"image", "video", "video_long", "views"} & set(rec)
        assert rec["conversations"][0]["value"].startswith("scene:")
        assert ds[i]["modality"] == "text" and ds[i]["media"] == []


def test_marks_are_drawn_in_the_given_style(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from oryx_mllm.data.build import marked_views
    from oryx_mllm.data.synthetic import generate
    from oryx_mllm.processing.options import MarkStyle

    style = MarkStyle(radius_frac=0.12)
    opt = BuildOptions(marks_fraction=1.0, mark_style=style)
    path = build_split(tmp_path, {"multiview/count": 2}, split="train", seed=0, options=opt)
    ds = OryxJsonDataset([str(path)], str(tmp_path))
    for i in range(len(ds)):
        item = ds[i]
        task, seed, index = item["id"].rsplit(":", 2)
        expected = marked_views(generate(task, int(seed), int(index)), style)
        default = marked_views(generate(task, int(seed), int(index)))
        stored = [np.asarray(Image.open(io.BytesIO(v)).convert("RGB")) for v in item["media"][0]]
        assert len(stored) == len(expected)
        for got, want, small in zip(stored, expected, default, strict=True):
            assert np.array_equal(got, np.asarray(want))
            assert not np.array_equal(got, np.asarray(small))  # larger discs than the default


GRID_PAGES = {"documents/line_code": {"pitch": 16, "fit": 32, "max_lines": 4, "page_sides": [256]}}


def test_pages_on_the_patch_grid_carry_the_character_of_each_patch(tmp_path):
    from oryx_mllm.data.synthetic import generate

    opt = BuildOptions(task_kwargs=GRID_PAGES)
    path = build_split(tmp_path, {"documents/line_code": 3}, seed=7, name="pages", options=opt)
    for rec in json.loads(path.read_text()):
        index = int(rec["id"].rsplit(":", 1)[1])
        s = generate("documents/line_code", 7, index, **GRID_PAGES["documents/line_code"])
        width, height = s.media.size
        rows = rec["patch_text"]
        assert (len(rows), len(rows[0])) == (height // 16, width // 16)
        for text, (x, y) in zip(s.meta["lines"], s.meta["line_xy"], strict=True):
            assert rows[y // 16][x // 16 : x // 16 + len(text)] == text
    plain = build_split(tmp_path, {"documents/line_code": 1}, seed=7, name="plain")
    assert "patch_text" not in json.loads(plain.read_text())[0]
