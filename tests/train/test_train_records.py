"""Record parsing: every modality, patch references, placeholder rules and typed errors."""

from __future__ import annotations

import json

import pytest

from oryx_mllm.errors import DataError, InvalidInputError
from oryx_mllm.train import load_records, parse_sample
from oryx_mllm.train.patchfile import MediaRef


def _conv(q="Question?", a="Answer."):
    return [{"from": "human", "value": q}, {"from": "gpt", "value": a}]


def test_each_modality(tmp_path):
    records = [
        {"id": "t", "conversations": _conv()},
        {"id": "i1", "image": "imgs/a.jpg", "conversations": _conv("<image>\nWhat?")},
        {"id": "i2", "image": ["a.jpg", "b.jpg"], "conversations": _conv("<image><image> Both?")},
        {"id": "v", "video": "clips/v.mp4", "conversations": _conv("<video>\nWhat happens?")},
        {
            "id": "vl",
            "video_long": {"patch": "f.bin", "start": 0, "size": [3, 4, 5]},
            "frames": [2, 0],
            "conversations": _conv("<video>\nDescribe frame 1."),
        },
        {
            "id": 7,
            "views": ["s/0.jpg", "s/1.jpg", "s/2.jpg"],
            "conversations": _conv("<video>\nWhere?"),
        },
    ]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(records))
    samples = load_records(path)
    assert [s.modality for s in samples] == [
        "text",
        "image",
        "image",
        "video",
        "video_long",
        "multiview",
    ]
    assert samples[1].media == [MediaRef("imgs/a.jpg")]
    assert samples[2].media[1].resolve(tmp_path) == tmp_path / "b.jpg"
    assert samples[4].media[0] == MediaRef("f.bin", 0, (3, 4, 5)) and samples[4].frames == [2, 0]
    assert samples[4].num_visual_items == 2
    assert samples[5].id == "7" and len(samples[5].media) == 3
    assert samples[0].conversations[1].role == "gpt"
    # JSONL gives the same samples; to_json round-trips
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    again = load_records(jl)
    assert [s.to_json() for s in again] == [s.to_json() for s in samples]
    assert [parse_sample(s.to_json()) for s in samples] == samples


def test_missing_placeholder_is_prepended():
    s = parse_sample({"id": "a", "image": ["x.jpg", "y.jpg"], "conversations": _conv("Compare.")})
    assert s.conversations[0].value == "<image><image>\nCompare."
    s = parse_sample({"id": "b", "video": "v.mp4", "conversations": _conv("Summarise.")})
    assert s.conversations[0].value == "<video>\nSummarise."
    # legacy LLaVA video data uses <image>
    s = parse_sample({"id": "c", "video": "v.mp4", "conversations": _conv("<image>\nWhat?")})
    assert s.conversations[0].value == "<video>\nWhat?"


@pytest.mark.parametrize(
    "record, message",
    [
        (
            {
                "id": "r1",
                "conversations": [{"from": "user", "value": "hi"}, {"from": "gpt", "value": "x"}],
            },
            "role 'user'",
        ),
        (
            {
                "id": "r2",
                "conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "x"}],
            },
            "alternate",
        ),
        (
            {
                "id": "r3",
                "conversations": _conv() + _conv()[:1] + [{"from": "human", "value": "?"}],
            },
            "alternate",
        ),
        ({"id": "r4", "conversations": _conv()[:1]}, "gpt"),
        ({"id": "r5", "conversations": []}, "conversations"),
        (
            {"id": "r6", "image": "a.jpg", "video": "b.mp4", "conversations": _conv()},
            "several media",
        ),
        (
            {"id": "r7", "image": ["a.jpg", "b.jpg"], "conversations": _conv("<image> one?")},
            "1 <image> placeholders for 2",
        ),
        ({"id": "r8", "conversations": _conv("<image> no media")}, "text-only"),
        ({"id": "r9", "image": "a.jpg", "conversations": _conv("<image>", "<image>")}, "gpt"),
        ({"id": "r10", "image": "a.jpg", "frames": [1], "conversations": _conv()}, "frames"),
        (
            {
                "id": "r11",
                "video": {"patch": "f.bin", "start": 0, "size": [1, 1]},
                "frames": [2],
                "conversations": _conv(),
            },
            ">= 2 stored",
        ),
        (
            {
                "id": "r12",
                "image": {"patch": "f.bin", "start": -3, "size": [1]},
                "conversations": _conv(),
            },
            "start",
        ),
        (
            {
                "id": "r13",
                "conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "x"}],
            },
            "string",
        ),
    ],
)
def test_invalid_records_name_the_sample(record, message):
    with pytest.raises(DataError, match=message) as exc:
        parse_sample(record)
    assert repr(record["id"]) in str(exc.value)
    assert isinstance(exc.value, InvalidInputError)


def test_missing_id_names_the_index(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(
        json.dumps([{"id": "ok", "conversations": _conv()}, {"conversations": _conv()}])
    )
    with pytest.raises(DataError, match=r"d.json: sample #1: missing or invalid 'id'"):
        load_records(path)
    assert [s.id for s in load_records(path, strict=False)] == ["ok"]


def test_malformed_json_names_file_and_position(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n  {"id": "a",\n   "conversations": [}\n]')
    with pytest.raises(DataError, match=r"bad\.json: invalid JSON at line 3, column"):
        load_records(bad)
    bad_jl = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "a", "conversations": _conv()})
    bad_jl.write_text(good + "\n" + good + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad\.jsonl: invalid JSON at line 3, column 2"):
        load_records(bad_jl)
    not_list = tmp_path / "obj.json"
    not_list.write_text("{}")
    with pytest.raises(DataError, match="expected a JSON list"):
        load_records(not_list)
    with pytest.raises(FileNotFoundError):
        load_records(tmp_path / "nope.json")
