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


def _main_error(tmp_path, capsys, *args: str) -> str:
    """Run the CLI with ``args``; assert it exits with 2 and writes nothing; return stderr."""
    from oryx_mllm.eval.synthetic import main

    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
    return capsys.readouterr().err


def test_main_lists_the_known_tasks_for_an_unknown_task(tmp_path, capsys):
    err = _main_error(tmp_path, capsys, "--tasks", "nonexistent_task")
    assert err.startswith("error: unknown task or family 'nonexistent_task'; families: documents")
    assert "multiview_scenes; tasks: documents/line_code" in err and "multiview/closer" in err


def test_main_rejects_a_training_only_task(tmp_path, capsys):
    err = _main_error(tmp_path, capsys, "--tasks", "objects/qa_session")
    assert "unknown task or family 'objects/qa_session'" in err


@pytest.mark.parametrize(
    ("flag", "name"),
    [
        ("--per-task", "per_task"),
        ("--batch-size", "batch_size"),
        ("--image-size", "image_size"),
        ("--long-frames", "long_frames"),
    ],
)
def test_main_rejects_a_zero_count(tmp_path, capsys, flag, name):
    err = _main_error(tmp_path, capsys, flag, "0")
    assert f"error: {name} must be a positive integer, got 0" in err


@pytest.mark.parametrize("ratio", ["-2", "0", "3"])
def test_main_rejects_a_compression_outside_the_candidate_ratios(tmp_path, capsys, ratio):
    err = _main_error(tmp_path, capsys, "--compression", ratio)
    assert err.startswith("error: compression must be one of 1, 2, 4, 8, 16 ")
    assert err.endswith(f", got {ratio}\n")


def test_main_rejects_a_needle_depth_outside_0_1(tmp_path, capsys):
    err = _main_error(tmp_path, capsys, "--long-depth", "1.5")
    assert "error: long_depth must be in [0, 1], got 1.5" in err


def test_main_rejects_a_name_with_folders(tmp_path, capsys):
    err = _main_error(tmp_path, capsys, "--name", "a/b")
    assert "error: --name must be a file name without folders, got 'a/b'" in err


def test_main_rejects_an_out_folder_below_a_file(tmp_path, capsys):
    from oryx_mllm.eval.synthetic import main

    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "eval"
    assert main(["--out", str(out)]) == 2
    assert f"error: --out {out}: not a folder" in capsys.readouterr().err


def test_main_needs_a_task_after_tasks(capsys):
    from oryx_mllm.eval.synthetic import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--tasks"])
    assert exit_info.value.code == 2
    assert "argument --tasks: expected at least one argument" in capsys.readouterr().err


def test_main_reports_an_error_raised_during_the_run(tmp_path, capsys, monkeypatch):
    from oryx_mllm.errors import ContextLengthError
    from oryx_mllm.eval import synthetic
    from oryx_mllm.pipeline import OryxPipeline

    def too_long(pipeline, options):
        raise ContextLengthError("prompt too long")

    monkeypatch.setattr(OryxPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: None))
    monkeypatch.setattr(synthetic, "evaluate", too_long)
    assert _main_error(tmp_path, capsys, "--per-task", "1") == "error: prompt too long\n"


def test_options_reject_an_empty_task_list():
    from oryx_mllm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"tasks must be a non-empty list .* got \[\]"):
        SyntheticEvalOptions(tasks=[])


def test_options_raise_config_error_for_a_train_seed():
    from oryx_mllm.errors import ConfigError

    with pytest.raises(ConfigError, match="test seed must be an integer >= 1000000 .* got 5"):
        SyntheticEvalOptions(seed=5)


def test_main_passes_task_kwargs_to_the_generators_and_names_a_bad_one(tmp_path, capsys):
    err = _main_error(
        tmp_path,
        capsys,
        "--tasks",
        "documents/line_code",
        "--per-task",
        "1",
        "--task-kwargs",
        '{"documents/line_code": {"pitch": 4}}',
    )
    assert "error: line_code pitch 4 px is smaller than a glyph" in err


def test_main_rejects_task_kwargs_that_are_not_json(tmp_path, capsys):
    from oryx_mllm.eval.synthetic import main

    with pytest.raises(SystemExit) as exc:
        main(["--task-kwargs", "{nope", "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "argument --task-kwargs: not valid JSON" in capsys.readouterr().err


def test_main_names_a_misspelt_task_in_task_kwargs_before_loading_the_model(tmp_path, capsys):
    err = _main_error(tmp_path, capsys, "--task-kwargs", '{"documents/line_cod": {"pitch": 16}}')
    assert "error: unknown task or family 'documents/line_cod'" in err
