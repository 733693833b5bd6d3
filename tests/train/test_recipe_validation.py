"""Recipe checks at load time: a bad value is a ConfigError naming its key, before any training."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from oryx_mllm.cli import app
from oryx_mllm.errors import ConfigError
from oryx_mllm.train.config import TrainConfig, load_recipe, stage_configs


@pytest.fixture
def recipe(tmp_path) -> Path:
    """A valid recipe file (nothing it names needs to exist to load it)."""
    path = tmp_path / "recipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "out"),
                "model": {"path": str(tmp_path / "model")},
                "data": {"train": ["train.json"]},
                "stage": {"trainable": ["mm_projector"]},
                "max_steps": 4,
                "save_steps": 2,
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("log_steps=0", "log_steps"),
        ("max_steps=-1", "max_steps"),
        ("max_steps=abc", "max_steps"),
        ("resume=true", "resume"),
        ("data=5", "data"),
        ("model=foo", "model"),
        ("optim.lr=abc", "optim.lr"),
        ("optim.lr=-1", "optim.lr"),
        ("optim.max_grad_norm=abc", "optim.max_grad_norm"),
        ("data.num_workers=-1", "data.num_workers"),
        ("data.compression.image=3", "data.compression.image"),
        ("optim.warmup_ratio=2", "optim.warmup_ratio"),
        ('gradient_checkpointing="false"', "gradient_checkpointing"),
        ("data.image.foo=1", "data.image"),
        ("data.image.max_pixels=abc", "data.image"),
        ("model.vision_config.foo=1", "model.vision_config"),
        ("model.llm_config={hidden_size: 8}", "model.llm_config.model_type"),
        ("model.llm_config={model_type: no_such_model}", "model.llm_config.model_type"),
        ("model.attn_implementation=foo", "model.attn_implementation"),
        ("stages=[{name: a, data: 5}]", "stages[0] (a).data"),
        ("stages=[{name: a, stage: {lora: {bogus: 1}}}]", "stages[0] (a)"),
        ("stage.lora={r: 0}", "stage.lora.r"),
        ("optim.lr=[1", "optim.lr"),
        ("optim.lr=.inf", "optim.lr"),
        ("optim.weight_decay=.inf", "optim.weight_decay"),
        ("model.visual_token_norm=layer", "model.visual_token_norm"),
        ("model.visual_token_norm=embedding_rms", "model.visual_token_norm"),  # with model.path
    ],
)
def test_bad_recipe_value_is_a_config_error_naming_the_key(recipe, override, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_recipe(recipe, [override])


def test_negative_save_total_limit_is_rejected(recipe):
    with pytest.raises(ConfigError, match="save_total_limit"):
        load_recipe(recipe, ["save_total_limit=-1"])


def test_a_single_trainable_group_may_be_given_as_a_string(recipe):
    assert load_recipe(recipe, ["stage.trainable=mm_projector"]).stage.trainable == ["mm_projector"]


def test_output_dir_naming_a_file_is_rejected_at_load_time(recipe, tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError, match="output_dir .*taken exists and is not a folder"):
        load_recipe(recipe, [f"output_dir={tmp_path / 'taken'}"])


def test_cli_train_with_output_dir_naming_a_file_fails_cleanly(recipe, tmp_path):
    (tmp_path / "taken").write_text("")
    result = CliRunner().invoke(
        app, ["train", str(recipe), "--set", f"output_dir={tmp_path / 'taken'}"]
    )
    assert result.exit_code == 2, result.output
    assert "exists and is not a folder" in " ".join(result.output.split())  # rich wraps lines


def test_relative_paths_stay_relative_to_the_working_directory(recipe, tmp_path):
    (tmp_path / "train.json").write_text("[]")  # next to the recipe: still not resolved there
    assert load_recipe(recipe).data.train == ["train.json"]


def two_stages(tmp_path, **over) -> TrainConfig:
    return TrainConfig(
        output_dir=str(tmp_path / "run"),
        stages=[{"name": "a", "max_steps": 2}, {"name": "b", "max_steps": 2}],
        **over,
    )


def test_duplicate_stage_names_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="'a' is used by another stage"):
        TrainConfig(output_dir=str(tmp_path), stages=[{"name": "a"}, {"name": "a"}])


def test_a_stage_cannot_change_mixed_precision(tmp_path):
    stages = [{"name": "a"}, {"name": "b", "mixed_precision": "bf16"}]
    with pytest.raises(ConfigError, match=r"stages\[1\] \(b\): mixed_precision 'bf16' differs"):
        TrainConfig(output_dir=str(tmp_path), stages=stages)
    same = [{"name": "a", "mixed_precision": "bf16"}, {"name": "b"}]
    assert TrainConfig(output_dir=str(tmp_path), mixed_precision="bf16", stages=same)


def test_skipped_samples_are_summed_over_processes():
    from oryx_mllm.train.data import SkipEvent, SkipStats
    from oryx_mllm.train.trainer import all_ranks_skip_stats

    ranks = [SkipStats(), SkipStats()]
    ranks[1].add([SkipEvent(2, "img2", "MediaNotFoundError", "no such file")] * 3)

    # gather: what every rank contributes, in rank order
    total = all_ranks_skip_stats(ranks[0], num_processes=2, gather=lambda objects: ranks)
    assert total.total == 3 and total.by_error == {"MediaNotFoundError": 3}


def test_only_the_main_process_prints_the_result(tmp_path, monkeypatch):
    from oryx_mllm.train import trainer

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'out'}\n")
    result = trainer.TrainResult(steps=2, losses=[1.0], final_model=None)
    monkeypatch.setattr(trainer, "train", lambda cfg: result)
    monkeypatch.setenv("RANK", "1")
    assert "trained" not in CliRunner().invoke(app, ["train", str(recipe)]).output
    monkeypatch.setenv("RANK", "0")
    assert "trained 2 steps" in CliRunner().invoke(app, ["train", str(recipe)]).output


@pytest.mark.parametrize(
    "name", ["../../escape", "a/b", "..", ".hidden", "final", "summary.json", ""]
)
def test_stage_names_must_be_plain_folder_names(tmp_path, name):
    with pytest.raises(ConfigError, match="plain folder name"):
        TrainConfig(output_dir=str(tmp_path), stages=[{"name": name}])


def test_explicit_resume_applies_to_the_stage_whose_folder_holds_it(tmp_path):
    ckpt = tmp_path / "run" / "b" / "checkpoints" / "step-2"
    a, b = stage_configs(two_stages(tmp_path, resume=str(ckpt)))
    assert (a.resume, b.resume) == ("auto", str(ckpt))


def test_explicit_resume_from_elsewhere_applies_to_the_first_stage_only(tmp_path):
    ckpt = tmp_path / "other" / "checkpoints" / "step-2"
    a, b = stage_configs(two_stages(tmp_path, resume=str(ckpt)))
    assert (a.resume, b.resume) == (str(ckpt), "auto")


def test_path_objects_are_accepted_where_paths_are(tmp_path):
    cfg = TrainConfig(
        output_dir=tmp_path / "out",
        resume=tmp_path / "out" / "checkpoint-2",
        model={"path": tmp_path / "model", "tokenizer": tmp_path / "tok"},
        data={"train": [tmp_path / "a.json", "b.json"], "data_root": tmp_path},
    )
    assert cfg.output_dir == str(tmp_path / "out")
    assert cfg.resume == str(tmp_path / "out" / "checkpoint-2")
    assert cfg.model.path == str(tmp_path / "model")
    assert cfg.model.tokenizer == str(tmp_path / "tok")
    assert cfg.data.train == [str(tmp_path / "a.json"), "b.json"]
    assert cfg.data.data_root == str(tmp_path)
    assert TrainConfig(output_dir="o", data={"train": tmp_path / "a.json"}).data.train == [
        str(tmp_path / "a.json")
    ]


def test_path_objects_are_not_names():
    with pytest.raises(ConfigError, match="report_to"):
        TrainConfig(output_dir="o", report_to=[Path("jsonl")])


def test_unquoted_no_is_a_mixed_precision_value(recipe, tmp_path):
    # YAML 1.1 reads `no` as False
    assert load_recipe(recipe, ["mixed_precision=no"]).mixed_precision == "no"
    stages = [{"name": "a", "mixed_precision": False}]
    assert TrainConfig(output_dir=str(tmp_path), stages=stages).mixed_precision == "no"


def test_a_video_multiple_too_large_for_max_pixels_is_named_with_its_numbers(recipe):
    video = "data.video={min_pixels: 4096, max_pixels: 4096, multiple: 32}"  # long_multiple 128
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe, [video])
    assert str(info.value) == (
        "data.video: long_multiple 128: 128² = 16384 > max_pixels 4096; max_pixels must hold at "
        "least one long_multiple² (lower long_multiple or raise max_pixels)"
    )
