"""Held-out synthetic evaluation (oryx_mllm.eval.synthetic) on the embedded default model."""

from __future__ import annotations

import json

import pytest

from oryx_mllm.eval.synthetic import (
    SyntheticEvalOptions,
    evaluate,
    make_samples,
    needle_span,
    normalize_answer,
    to_markdown,
    write_report,
)
from oryx_mllm.processing.video import sample_times


def test_normalize_answer():
    assert normalize_answer("  Yes.\n") == "yes"
    assert normalize_answer('"Red"') == "red"
    assert normalize_answer("48 213") == "48 213"


@pytest.mark.parametrize("n,f", [(1000, 32), (1000, 64), (1600, 32), (100, 32), (257, 7)])
def test_needle_span_survives_uniform_sampling(n, f):
    span = needle_span(n, f)
    picked = {round(t) for t in sample_times(0.0, float(n), 1.0, f, 1.0)}
    for start in range(n - span + 1):
        assert picked & set(range(start, start + span)), (n, f, start)


def test_options_check_the_test_seed():
    with pytest.raises(ValueError):
        SyntheticEvalOptions(seed=5)


def test_long_video_samples_have_the_requested_length():
    opt = SyntheticEvalOptions(per_task=1, long_frames=1000, long_depth=0.5)
    (s,) = make_samples("long_videos/digit", opt, long_sampled=32)
    assert len(s.media) == 1000 and s.media.needle_span == needle_span(1000, 32)


def test_evaluate_the_default_model_writes_tables(tmp_path):
    opt = SyntheticEvalOptions(tasks=["objects/exists", "multiview/count"], per_task=2)
    report = evaluate(None, opt)
    assert set(report["per_task"]) == {"objects/exists", "multiview/count"}
    assert set(report["per_family"]) == {"objects", "multiview_scenes"}
    assert all(v["n"] == 2 for v in report["per_task"].values())
    assert 0.0 <= report["overall"] <= 1.0 and len(report["samples"]) == 4
    md = write_report(report, tmp_path)
    assert "| objects/exists |" in md.read_text() and "| objects/exists |" in to_markdown(report)
    assert json.loads((tmp_path / "synthetic_eval.json").read_text())["options"]["per_task"] == 2


def test_default_tasks_are_the_families_without_training_sessions():
    from oryx_mllm.data.synthetic import FAMILIES, TRAIN_TASKS
    from oryx_mllm.eval.synthetic import _tasks

    tasks = _tasks(None)
    assert tasks == [t for family in FAMILIES.values() for t in family]
    assert not set(tasks) & set(TRAIN_TASKS)


def test_main_reports_a_bad_device_without_a_traceback(tmp_path, capsys):
    from oryx_mllm.eval.synthetic import main

    assert main(["--device", "tpu9", "--per-task", "1", "--out", str(tmp_path)]) == 2
    assert "unknown device 'tpu9'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
