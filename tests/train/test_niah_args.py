"""oryx_mllm.train.niah: directories as input / output and duplicate video ids are DataErrors;
the command line reports them without a traceback."""

from __future__ import annotations

import json

import pytest

from oryx_mllm.errors import DataError
from oryx_mllm.train.niah import build_niah_file, main


def _video(path, **kw):
    return {"video": path, "num_frames": 100, "captions": [{"frame": 5, "caption": "A dog."}], **kw}


@pytest.fixture
def input_json(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps([_video("movies/a.mp4")]))
    return path


def test_output_that_is_a_directory_is_a_data_error(tmp_path, input_json):
    (tmp_path / "out.json").mkdir()
    with pytest.raises(DataError, match="output .* is a directory"):
        build_niah_file(input_json, tmp_path / "out.json", num_frames=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json", "out.json"]


def test_input_that_is_a_directory_is_a_data_error(tmp_path):
    (tmp_path / "in.json").mkdir()
    with pytest.raises(DataError, match="input .* is a directory"):
        build_niah_file(tmp_path / "in.json", tmp_path / "out.json", num_frames=16)


def test_same_default_id_from_two_folders_is_refused(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps([_video("a/clip.mp4"), _video("b/clip.mp4")]))
    with pytest.raises(DataError, match="videos #0 and #1 have the same id 'clip'"):
        build_niah_file(path, tmp_path / "out.json", num_frames=16)
    assert not (tmp_path / "out.json").exists()


def test_repeated_explicit_id_is_refused(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = [json.dumps(_video(f"m/{k}.mp4", id="x")) for k in range(2)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="same id 'x'"):
        build_niah_file(path, tmp_path / "out.json", num_frames=16)


def test_distinct_ids_for_same_stem_are_accepted(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps([_video("a/clip.mp4", id="a"), _video("b/clip.mp4", id="b")]))
    assert build_niah_file(path, tmp_path / "out.json", num_frames=16) == 2


def test_cli_output_directory_exits_2(tmp_path, input_json, capsys):
    (tmp_path / "out.json").mkdir()
    with pytest.raises(SystemExit) as exc:
        main([str(input_json), str(tmp_path / "out.json")])
    assert exc.value.code == 2
    assert "error: NIAH output" in capsys.readouterr().err
