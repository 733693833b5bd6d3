"""Stage freezing: only the groups a stage names receive gradients; every shipped recipe parses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from oryx_mllm.errors import ConfigError
from oryx_mllm.train.config import MODULE_GROUPS, LoraSpec, StageSpec, load_recipe
from oryx_mllm.train.stages import apply_stage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from oryx_tiny import batch, byte_tokenizer, image, tiny_model, video  # noqa: E402

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def grads_by_group(stage: StageSpec) -> dict[str, bool]:
    tok = byte_tokenizer()
    model = tiny_model("qwen2", tok).train()
    apply_stage(model, stage)
    convs = [
        [{"role": "user", "content": "<image>\nwhat?"}, {"role": "assistant", "content": "red"}],
        [{"role": "user", "content": "<video>\nwhat?"}, {"role": "assistant", "content": "blue"}],
    ]
    b = batch(tok, convs, [[image()], [video()]], model)
    model(**b).loss.backward()
    got = {}
    for group in MODULE_GROUPS:
        params = list(getattr(model, group).named_parameters())
        got[group] = any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in params)
        frozen_with_grad = [n for n, p in params if not p.requires_grad and p.grad is not None]
        assert not frozen_with_grad, frozen_with_grad
    return got


@pytest.mark.parametrize(
    "trainable",
    [
        ["vision_resampler", "mm_projector"],  # stage 1a
        ["vision_resampler", "mm_projector", "language_model"],  # stage 1b / 2
        ["vision_tower"],
    ],
)
def test_only_named_groups_receive_gradients(trainable):
    got = grads_by_group(StageSpec(trainable=trainable))
    assert got == {g: g in trainable for g in MODULE_GROUPS}


def test_oryxvit_pretraining_stage_trains_encoder_and_lora_adapters_only():
    stage = StageSpec(
        trainable=["vision_tower", "vision_resampler", "mm_projector"],
        lora=LoraSpec(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]),
    )
    tok = byte_tokenizer()
    model = tiny_model("qwen2", tok).train()
    names = apply_stage(model, stage)
    llm_trainable = [n for n in names if n.startswith("language_model.")]
    assert llm_trainable and all("lora_" in n for n in llm_trainable)
    b = batch(
        tok,
        [[{"role": "user", "content": "<image>\nx"}, {"role": "assistant", "content": "y"}]],
        [[image()]],
        model,
    )
    model(**b).loss.backward()
    assert model.vision_tower.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    base = [p for n, p in model.language_model.named_parameters() if "lora_" not in n]
    assert all(p.grad is None for p in base)


def test_stage_rejects_unknown_group_and_lora_with_full_llm():
    with pytest.raises(ConfigError, match="unknown groups"):
        StageSpec(trainable=["projector"])
    with pytest.raises(ConfigError, match="lora"):
        StageSpec(trainable=["language_model"], lora=LoraSpec())


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_parse(recipe):
    cfg = load_recipe(recipe)
    assert cfg.stage.trainable
    assert cfg.optim.lr > 0


def test_recipe_overrides_and_errors(tmp_path):
    cfg = load_recipe(RECIPES[0], ["optim.lr=0.5", "max_steps=3"])
    assert cfg.optim.lr == 0.5 and cfg.max_steps == 3
    # YAML 1.1 reads "1e-4" (no dot) as a string; recipes mean a float
    assert load_recipe(RECIPES[0], ["optim.lr=1e-4"]).optim.lr == 1e-4
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: 1}\nbogus: 2\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_recipe(bad)
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_recipe(tmp_path / "missing.yaml")


def test_optimizer_groups_split_trainable_parameters_by_group_lr():
    from oryx_mllm.train.config import OptimSpec
    from oryx_mllm.train.stages import optimizer_groups

    model = tiny_model("qwen2", byte_tokenizer())
    apply_stage(model, StageSpec(trainable=["vision_tower", "mm_projector", "language_model"]))
    groups = optimizer_groups(model, OptimSpec(lr=1e-3, group_lr={"vision_tower": 1e-4}))
    assert [(g["name"], g["lr"]) for g in groups] == [("default", 1e-3), ("vision_tower", 1e-4)]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.vision_tower.parameters()}
    rest = {id(p) for p in groups[0]["params"]}
    assert rest.isdisjoint(id(p) for p in model.vision_tower.parameters())
    trainable = sum(1 for p in model.parameters() if p.requires_grad)  # resampler frozen
    assert len(rest) + len(groups[1]["params"]) == trainable


def test_optim_group_lr_rejects_unknown_groups_and_bad_rates():
    from oryx_mllm.train.config import OptimSpec

    with pytest.raises(ConfigError, match="unknown groups"):
        OptimSpec(group_lr={"vit": 1e-4})
    with pytest.raises(ConfigError, match="positive number"):
        OptimSpec(group_lr={"vision_tower": -1})


def test_optimizer_groups_warn_about_a_group_lr_for_a_frozen_group(caplog):
    from oryx_mllm.train.config import OptimSpec
    from oryx_mllm.train.stages import optimizer_groups

    model = tiny_model("qwen2", byte_tokenizer())
    apply_stage(model, StageSpec(trainable=["mm_projector"]))
    with caplog.at_level("WARNING", logger="oryx_mllm.train.stages"):
        groups = optimizer_groups(model, OptimSpec(lr=1e-3, group_lr={"vision_tower": 1e-4}))
    assert [g["name"] for g in groups] == ["default"]
    assert "group_lr.vision_tower is ignored" in caplog.text
