"""Multi-stage recipes: ``stages:`` expands into chained single-stage runs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from oryx_mllm.errors import ConfigError, DataError
from oryx_mllm.train.config import TrainConfig, stage_configs
from oryx_mllm.train.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_utils import (  # noqa: E402
    make_dataset,
    make_text_dataset,
    recipe_dict,
    save_tiny_model,
)


def test_stage_configs_merge_and_chain(tmp_path):
    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"),
        model={"tokenizer": "tok", "llm_config": {"model_type": "qwen2"}},
        data={"train": ["a.json"], "max_length": 128},
        optim={"lr": 1e-3, "warmup_ratio": 0.1},
        stages=[
            {"name": "one", "max_steps": 3, "stage": {"trainable": ["mm_projector"]}},
            {"name": "two", "data": {"train": ["b.json"]}, "optim": {"lr": 5e-4}, "max_steps": 2},
        ],
    )
    one, two = stage_configs(cfg)
    assert one.output_dir == str(tmp_path / "run" / "one") and one.max_steps == 3
    assert one.model.llm_config == {"model_type": "qwen2"} and one.stage.trainable == [
        "mm_projector"
    ]
    assert two.model.path == str(tmp_path / "run" / "one" / "final")
    assert two.model.llm_config is None and two.model.tokenizer is None
    assert two.data.train == ["b.json"] and two.data.max_length == 128
    assert two.optim.lr == 5e-4 and two.optim.warmup_ratio == 0.1
    assert two.stage.name == "two" and not two.stages
    assert stage_configs(TrainConfig()) == [TrainConfig()]


def test_stage_keys_are_checked():
    with pytest.raises(ConfigError):
        TrainConfig(stages=[{"max_steps": 2}])
    with pytest.raises(ConfigError):
        TrainConfig(stages=[{"name": "x", "output_dir": "elsewhere"}])


def test_two_stage_training_chains_weights(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    train_json = make_dataset(data, n=8)
    model_dir = save_tiny_model(tmp_path / "model")
    base = recipe_dict(model_dir, train_json, tmp_path / "run", max_steps=2, save_steps=2)
    base["stages"] = [
        {"name": "a", "stage": {"trainable": ["mm_projector"]}},
        {"name": "b", "optim": {"lr": 1e-3}},
    ]
    result = train(TrainConfig(**base))
    assert result.steps == 4 and len(result.losses) == 4
    final = tmp_path / "run" / "final"
    assert (final / "config.json").exists() and (final / "processor_config.json").exists()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stages"] == ["a", "b"] and summary["steps"] == 4
    recipe_b = (tmp_path / "run" / "b" / "checkpoints" / "step-2" / "recipe.yaml").read_text()
    assert str(tmp_path / "run" / "a" / "final") in recipe_b


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "data file not found: {}"), ("[{", "{}: invalid JSON at line 1, column 3")],
)
def test_bad_data_of_a_later_stage_stops_the_run_before_the_first_stage(tmp_path, content, message):
    second = tmp_path / "b.json"
    if content is not None:
        second.write_text(content)
    base = recipe_dict(tmp_path / "model", make_text_dataset(tmp_path), tmp_path / "run")
    base["stages"] = [{"name": "a"}, {"name": "b", "data": {"train": [str(second)]}}]
    expected = f"stages[1] (b): {message.format(second)}"
    with pytest.raises(DataError, match=re.escape(expected)):
        train(TrainConfig(**base))
    assert not (tmp_path / "run" / "a").exists()  # stage a never started
