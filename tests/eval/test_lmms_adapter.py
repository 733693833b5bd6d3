"""The lmms-eval adapter answers a tiny offline task end to end (no datasets, no downloads)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from oryx_mllm.data.synthetic import generate, split_seed
from oryx_mllm.errors import ConfigError
from oryx_mllm.eval.lmms import OryxLmms

TASK, SPLIT = "oryx_offline", "test"


def offline_docs() -> list[dict]:
    """Three held-out synthetic questions: an image, a short video and a multi-view scene."""
    seed = split_seed("test", 7)
    out = []
    for task in ("objects/color", "short_videos/direction", "multiview/count"):
        s = generate(task, seed, 0)
        out.append(
            {"question": s.question, "answer": s.answer, "media": s.media, "kind": s.modality}
        )
    return out


def doc_to_visual(doc: dict):
    media = doc["media"]
    if doc["kind"] == "video":
        return [media]  # a nested list of PIL frames = one video
    return media if isinstance(media, list) else [media]


def requests(docs, gen_kwargs, task=TASK):
    try:
        from oryx_mllm.eval.lmms import make_requests

        return make_requests(docs, lambda d: d["question"], doc_to_visual, gen_kwargs, task, SPLIT)
    except ImportError:  # lmms-eval not installed: Instance-like stand-ins with the same .args
        return [
            SimpleNamespace(args=(d["question"], dict(gen_kwargs), doc_to_visual, i, task, SPLIT))
            for i, d in enumerate(docs)
        ]


@pytest.fixture(scope="module")
def model(default_or_tiny_dir):
    return OryxLmms(pretrained=str(default_or_tiny_dir), batch_size="2", max_new_tokens=4)


def test_generate_until_batched_equals_one_by_one(model):
    docs = offline_docs()
    model.task_dict = {TASK: {SPLIT: docs}, "scanqa_local": {SPLIT: docs}}
    gen = {"max_new_tokens": 4, "temperature": 0, "until": ["\n\n"]}
    batched = model.generate_until(requests(docs, gen))
    assert len(batched) == 3 and all(isinstance(t, str) for t in batched)
    model.batch_size = 1
    single = model.generate_until(requests(docs, gen))
    model.batch_size = 2
    assert single == batched


def test_messages_route_media_by_kind(model):
    docs = offline_docs()
    image_msg = model.messages("<image>\nWhat colour?", doc_to_visual(docs[0]))
    kinds = [p["type"] for p in image_msg[0]["content"]]
    assert kinds == ["image", "text"] and "<image>" not in image_msg[0]["content"][-1]["text"]
    video_msg = model.messages("q", doc_to_visual(docs[1]))
    assert [p["type"] for p in video_msg[0]["content"]] == ["video", "text"]
    views = doc_to_visual(docs[2])
    assert [p["type"] for p in model.messages("q", views, "scanqa_val")[0]["content"]] == [
        "multiview",
        "text",
    ]
    assert [p["type"] for p in model.messages("q", views, "mmbench")[0]["content"]][:-1] == [
        "image"
    ] * len(views)


def test_compression_and_video_options_are_model_args(default_or_tiny_dir):
    m = OryxLmms(
        pretrained=str(default_or_tiny_dir), compression=4, video_fps=2, max_frames=3, batch_size=1
    )
    assert m.pipeline.processor.video_options.fps == 2.0
    assert m.pipeline.processor.video_options.max_frames == 3
    msg = m.messages("q", doc_to_visual(offline_docs()[1]))
    assert all(p["compression"] == 4 for p in msg[0]["content"] if p["type"] != "text")
    with pytest.raises(ValueError):
        OryxLmms(pipeline=m.pipeline, compression=3)


def test_loglikelihood_scores_continuations(model):
    docs = offline_docs()[:1]
    model.task_dict = {TASK: {SPLIT: docs}}
    reqs = [
        SimpleNamespace(args=(docs[0]["question"], cont, doc_to_visual, 0, TASK, SPLIT))
        for cont in ("red", "a much longer continuation than red")
    ]
    (lp_short, _), (lp_long, _) = model.loglikelihood(reqs)
    assert math.isfinite(lp_short) and lp_short < 0
    assert lp_long < lp_short  # more tokens, each with probability < 1
    with pytest.raises(NotImplementedError):
        model.generate_until_multi_round(reqs)


def test_lmms_eval_resolves_oryx_to_this_adapter():
    pytest.importorskip("lmms_eval")
    from lmms_eval.models import get_model

    assert get_model("oryx") is OryxLmms


@pytest.mark.parametrize(
    "kwargs,match",
    [({"compression": 3}, "compression must be 1, 2 or 4, got 3"),
     ({"compression": "x"}, "model arg compression must be an integer, got 'x'"),
     ({"multiview": "maybe"}, "multiview must be auto, true or false, got 'maybe'")],
)  # fmt: skip
def test_bad_model_args_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        OryxLmms(**kwargs)


def _run_lmms_cli(args, monkeypatch):
    from typer.testing import CliRunner

    from oryx_mllm import cli

    calls = []
    monkeypatch.setattr("subprocess.call", lambda cmd: calls.append(cmd) or 0)
    # lmms-eval's own dependencies are not all in the test environment (installed --no-deps)
    monkeypatch.setattr("oryx_mllm.eval.cli.check_lmms_eval_importable", lambda: None)
    return CliRunner().invoke(cli.app, ["eval", "lmms", *args]), calls


@pytest.mark.parametrize(
    "missing,named",
    [("sacrebleu", "'sacrebleu' is not installed"), ("lmms_eval", "lmms-eval is not installed")],
)
def test_cli_eval_lmms_names_a_missing_package_before_lmms_eval_runs(missing, named, monkeypatch):
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from oryx_mllm import cli

    def fail_import(name):
        assert name == "lmms_eval.__main__"
        raise ModuleNotFoundError(f"No module named '{missing}'", name=missing)

    calls = []
    monkeypatch.setattr("oryx_mllm.eval.cli.importlib", SimpleNamespace(import_module=fail_import))
    monkeypatch.setattr("subprocess.call", lambda cmd: calls.append(cmd) or 0)
    result = CliRunner().invoke(cli.app, ["eval", "lmms", "mme"])
    assert result.exit_code == 2 and not calls
    assert f"error: lmms-eval cannot start: {named}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args,message",
    [([" , "], "error: no lmms-eval task named in ' , '"),
     (["mme", "--batch-size", "0"], "Invalid value for '--batch-size'"),
     (["mme", "--limit", "-1"], "Invalid value for '--limit'")],
)  # fmt: skip
def test_cli_eval_lmms_bad_args_fail_before_lmms_eval_runs(args, message, monkeypatch):
    result, calls = _run_lmms_cli(args, monkeypatch)
    assert result.exit_code == 2 and not calls
    assert message in result.output


def test_cli_eval_lmms_output_path_that_is_a_file_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("")
    result, calls = _run_lmms_cli(["mme", "--output-path", str(tmp_path / "f")], monkeypatch)
    assert result.exit_code == 2 and not calls
    assert "Invalid value for '--output-path'" in result.output


def test_cli_eval_lmms_passes_clean_task_names(monkeypatch):
    result, calls = _run_lmms_cli(["mme, mmbench_en_dev,"], monkeypatch)
    assert result.exit_code == 0, result.output
    assert calls[0][calls[0].index("--tasks") + 1] == "mme,mmbench_en_dev"
