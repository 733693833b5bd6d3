"""oryx_mllm.data.build: bad arguments are refused before any file is touched, a failed build
keeps the previous split, and the command line reports errors without a traceback."""

from __future__ import annotations

import json

import pytest

import oryx_mllm.data.build as build
from oryx_mllm.data.build import BuildOptions, build_split, main, parse_counts
from oryx_mllm.errors import ConfigError

GOOD = {"objects": 3, "multiview_scenes": 2}


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def built(tmp_path):
    build_split(tmp_path / "out", GOOD)
    return tmp_path / "out"


def test_typo_in_counts_keeps_the_previous_split(built):
    before = _snapshot(built)
    with pytest.raises(ConfigError, match="unknown task or family 'multiview'"):
        build_split(built, {"objects": 3, "multiview": 2})
    assert _snapshot(built) == before


def test_failure_while_writing_keeps_the_previous_split(built, monkeypatch):
    before = _snapshot(built)
    calls = []

    def failing_record(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return record(*args)

    record = build._record
    monkeypatch.setattr(build, "_record", failing_record)
    with pytest.raises(RuntimeError, match="disk full"):
        build_split(built, GOOD)
    assert _snapshot(built) == before  # old files intact, no temporary files left


def test_rebuild_replaces_the_split(built):
    path = build_split(built, {"objects/color": 1})
    assert [r["task"] for r in json.loads(path.read_text())] == ["objects/color"]
    assert sorted(p.name for p in built.iterdir()) == [
        "train.json",
        "train_frames.bin",
        "train_images.bin",
        "train_views.bin",
    ]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"counts": {"objects": -2}}, "count of 'objects' must be an integer >= 0"),
        ({"seed": 5_000_000}, "train seed must be an integer >= 0 and < 1000000"),
        ({"options": BuildOptions(long_frames=0)}, "long_frames must be a positive integer"),
        ({"options": BuildOptions(marks_fraction=7)}, "marks_fraction must be a number >= 0"),
        ({"options": BuildOptions(task_kwargs={"bogus": {}})}, "unknown task or family 'bogus'"),
        (
            {"options": BuildOptions(task_kwargs={"documents": 5})},
            r"task_kwargs\['documents'\] must be a mapping of kwargs, got 5",
        ),
        (
            {"options": BuildOptions(task_kwargs={"objects/color": {"n_maxx": 3}})},
            "task 'objects/color' has no generator argument 'n_maxx'",
        ),
        ({"name": "a/b"}, "name must be a file stem"),
    ],
)
def test_bad_argument_is_a_config_error_and_writes_nothing(tmp_path, kwargs, match):
    kwargs = {"counts": GOOD, **kwargs}
    with pytest.raises(ConfigError, match=match):
        build_split(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_out_dir_that_is_a_file_is_a_config_error(tmp_path):
    (tmp_path / "f").write_text("keep")
    with pytest.raises(ConfigError, match="is not a directory"):
        build_split(tmp_path / "f", GOOD)
    assert (tmp_path / "f").read_text() == "keep"


def test_parse_counts_rejects_a_non_integer():
    with pytest.raises(ConfigError, match="N must be an integer, got 'abc'"):
        parse_counts(["objects=abc"])


def test_family_kwargs_reach_regenerated_long_videos(tmp_path):
    counts = {"long_videos/digit": 2}
    kw = {"frame_size": 64, "depth": 0.5}
    family = BuildOptions(long_frames=8, task_kwargs={"long_videos": kw})
    task = BuildOptions(long_frames=8, task_kwargs={"long_videos/digit": kw})
    build_split(tmp_path / "family", counts, options=family)
    build_split(tmp_path / "task", counts, options=task)
    assert _snapshot(tmp_path / "family") == _snapshot(tmp_path / "task")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--counts", "bogus=3"], "unknown task or family 'bogus'"),
        (["--counts", "objects=-2"], "count of 'objects' must be an integer >= 0"),
        (["--counts", "objects=abc"], "--counts 'objects=abc': N must be an integer"),
        (["--counts", "objects=1", "--seed", "5000000"], "train seed must be"),
        (["--counts", "objects=1", "--seed", "-1"], "train seed must be"),
        (["--counts", "objects=1", "--long-frames", "0"], "long_frames must be"),
        (["--counts", "objects=1", "--long-frames", "-3"], "long_frames must be"),
        (["--counts", "objects=1", "--marks-fraction", "7"], "marks_fraction must be"),
        (
            ["--counts", "objects=1", "--task-kwargs", "{bad"],
            "argument --task-kwargs: not valid JSON",
        ),
        (
            ["--counts", "objects=1", "--task-kwargs", '{"objects": 3}'],
            "argument --task-kwargs: expected",
        ),
        (
            [
                "--counts",
                "documents/line_code=1",
                "--task-kwargs",
                '{"documents/line_code": {"pitch": 4}}',
            ],
            "line_code pitch 4 px is smaller than a glyph",
        ),
    ],
)
def test_cli_bad_argument_exits_2_with_an_error_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "out"), *args])
    assert exc.value.code == 2
    assert f"error: {message}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_out_dir_that_is_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "f").write_text("keep")
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "f"), "--counts", "objects=1"])
    assert exc.value.code == 2
    assert "error: out_dir" in capsys.readouterr().err


def test_unknown_kwarg_passed_on_by_a_long_video_task_is_a_config_error(tmp_path):
    options = BuildOptions(long_frames=8, task_kwargs={"long_videos": {"framesize": 64}})
    with pytest.raises(ConfigError, match="task 'long_videos/digit'.*'framesize'"):
        build_split(tmp_path / "out", {"long_videos/digit": 1}, options=options)


def test_main_reports_a_bad_generator_kwarg_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build, "default_task_kwargs", lambda long_frames: {"objects": {"x": 1}})
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "out"), "--counts", "objects=1"])
    assert info.value.code == 2
    assert "task 'objects/color' has no generator argument 'x'" in capsys.readouterr().err
