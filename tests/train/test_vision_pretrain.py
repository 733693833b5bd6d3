"""Dense OryxViT pretraining (oryx_mllm.train.vision_pretrain)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from oryx_mllm.data.synthetic.dense import DENSE_CLASSES
from oryx_mllm.errors import ConfigError, TrainingError
from oryx_mllm.train.vision_pretrain import (
    VisionPretrainConfig,
    load_vision_recipe,
    patch_targets,
    pretrain_vision,
)
from oryx_mllm.vision import OryxViT, OryxViTConfig

TINY_VIT = {
    "hidden_size": 32,
    "depth": 1,
    "num_heads": 2,
    "mlp_hidden_size": 64,
    "position_grid": 8,
}


def test_patch_targets_are_class_fractions_per_patch():
    labels = np.zeros((20, 36), dtype=np.uint8)  # 2 x 3 patches of 16 after padding
    labels[0:8, 0:16] = 5  # half of patch (0, 0)
    labels[16:20, 32:36] = 7  # 16 pixels of the padded corner patch (1, 2)
    t = patch_targets(labels, 16)
    assert t.shape == (6, len(DENSE_CLASSES))
    torch.testing.assert_close(t.sum(-1), torch.ones(6))
    assert t[0, 5] == 0.5 and t[0, 0] == 0.5
    assert t[5, 7] == 16 / 256 and t[5, 0] == 1 - 16 / 256  # padding counts as background
    assert torch.equal(
        t[1], torch.nn.functional.one_hot(torch.tensor(0), len(DENSE_CLASSES)).float()
    )


def test_recipe_reads_exponent_floats_and_rejects_unknown_keys(tmp_path):
    (tmp_path / "r.yaml").write_text("output_dir: out\nlr: 2e-3\n")
    assert load_vision_recipe(tmp_path / "r.yaml").lr == 0.002
    assert load_vision_recipe(tmp_path / "r.yaml", ["lr=5e-4"]).lr == 0.0005
    (tmp_path / "bad.yaml").write_text("output_dir: out\nlearning_rate: 1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_vision_recipe(tmp_path / "bad.yaml")
    (tmp_path / "broken.yaml").write_text("lr: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_vision_recipe(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="vision_config"):
        VisionPretrainConfig(output_dir="x", vision_config={"width": 3})
    with pytest.raises(ConfigError, match="kinds"):
        VisionPretrainConfig(output_dir="x", kinds={"faces": 1.0})


def test_shipped_vision_recipe_parses():
    root = Path(__file__).resolve().parents[2]
    cfg = load_vision_recipe(root / "recipes" / "vision" / "tiny.yaml")
    assert cfg.steps > 0 and OryxViTConfig(**cfg.vision_config).hidden_size == 128


def test_pretraining_lowers_the_loss_and_saves_a_loadable_encoder(tmp_path):
    cfg = VisionPretrainConfig(
        output_dir=str(tmp_path / "vit"), vision_config=TINY_VIT, kinds={"needles": 1.0},
        steps=40, batch_size=8, lr=3e-3, num_workers=0, log_every=10, mixed_precision="no",
    )  # fmt: skip
    out = pretrain_vision(cfg)
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40]
    assert log[-1]["loss"] < log[0]["loss"]
    assert "needles" in json.loads((out / "eval.json").read_text())["foreground_patch_accuracy"]
    vit = OryxViT.from_pretrained(out)
    assert vit.config.hidden_size == 32
    feats, grids = vit.encode([torch.zeros(3, 64, 64)])
    assert grids == [(4, 4)] and feats[0].shape == (16, 32)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("kinds={objects: 0}", "kinds.objects must be a positive number, got 0"),
        ("kinds={objects: .nan}", "kinds.objects must be a positive number, got nan"),
        ("kinds={}", "kinds must give at least one of"),
        ("lr=.inf", "lr must be a positive number, got inf"),
        ("weight_decay=-1", "weight_decay must be a number >= 0, got -1"),
    ],
)
def test_bad_weights_and_rates_are_rejected_when_the_recipe_loads(tmp_path, override, message):
    (tmp_path / "r.yaml").write_text("output_dir: out\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_vision_recipe(tmp_path / "r.yaml", [override])


def test_unquoted_no_is_a_mixed_precision_value(tmp_path):
    (tmp_path / "r.yaml").write_text("output_dir: out\nmixed_precision: no\n")
    assert load_vision_recipe(tmp_path / "r.yaml").mixed_precision == "no"


def test_a_non_finite_loss_stops_pretraining_without_saving(tmp_path):
    cfg = VisionPretrainConfig(
        output_dir=str(tmp_path / "vit"), vision_config=TINY_VIT, kinds={"needles": 1.0},
        steps=4, batch_size=2, lr=1e30, num_workers=0, mixed_precision="no",
    )  # fmt: skip
    with pytest.raises(TrainingError, match="the loss is nan at step 2; stopped without saving"):
        pretrain_vision(cfg)
    assert not (tmp_path / "vit" / "config.json").exists()
