"""The training loop end to end on a tiny random model (CPU): learning, resume, DDP equivalence."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from oryx_mllm.errors import ConfigError, TrainingError
from oryx_mllm.train.config import TrainConfig
from oryx_mllm.train.trainer import latest_checkpoint, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_utils import (  # noqa: E402
    make_dataset,
    make_text_dataset,
    recipe_dict,
    save_tiny_model,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer")
    data = root / "data"
    data.mkdir()
    return {"json": make_dataset(data), "model": save_tiny_model(root / "model"), "root": root}


def losses_by_step(output_dir: Path, key: str = "loss") -> dict[int, float]:
    """Loss (or ``key``) per step from metrics.jsonl (the last line for a step wins: a resumed
    run re-logs)."""
    out = {}
    for line in (output_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out[row["step"]] = row[key]
    return out


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_cli(args: list[str], env_extra: dict | None = None, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw
    )


def test_tiny_model_overfits_mixed_image_video_data(workspace, tmp_path):
    cfg = TrainConfig(
        **recipe_dict(workspace["model"], workspace["json"], tmp_path / "out", max_steps=30)
    )
    result = train(cfg)
    first, last = result.losses[0], sum(result.losses[-5:]) / 5
    assert first > 3.0
    assert last < 1.0, result.losses
    assert result.skipped == 0
    # the final model is saved and loads back
    from transformers import AutoTokenizer

    from oryx_mllm.model import OryxForConditionalGeneration

    again = OryxForConditionalGeneration.from_pretrained(result.final_model)
    tokenizer = AutoTokenizer.from_pretrained(result.final_model)
    assert again.config.visual_token_id == tokenizer.convert_tokens_to_ids("<|visual_pad|>")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["skipped_samples"] == 0


def test_bad_samples_are_skipped_and_counted(workspace, tmp_path):
    records = json.loads(workspace["json"].read_text())
    records[0]["image"] = "missing.png"
    (workspace["json"].parent / "corrupt.png").write_bytes(b"not a png")
    records[2]["image"] = "corrupt.png"
    bad = workspace["json"].parent / "bad.json"
    bad.write_text(json.dumps(records))
    cfg = TrainConfig(**recipe_dict(workspace["model"], bad, tmp_path / "out", max_steps=6))
    result = train(cfg)
    assert result.steps == 6
    assert result.skipped >= 2
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["skipped_samples"] == result.skipped
    assert set(summary["skipped_by_error"]) >= {"MediaNotFoundError", "ImageDecodeError"}


def test_resume_after_kill_gives_the_same_loss_curve(workspace, tmp_path):
    steps = 12
    base = recipe_dict(workspace["model"], workspace["json"], tmp_path / "full", max_steps=steps)
    full = train(TrainConfig(**base))

    killed = tmp_path / "killed"
    recipe = write_recipe(tmp_path / "r.yaml", {**base, "output_dir": str(killed)})
    proc = run_cli([sys.executable, "-m", "oryx_mllm.cli", "train", str(recipe)])
    deadline = time.time() + 240
    ckpt = killed / "checkpoints" / "step-4" / "trainer_state.json"
    while not ckpt.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint written"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert latest_checkpoint(killed) is not None
    assert not (killed / "final").exists()

    resumed = train(TrainConfig(**{**base, "output_dir": str(killed)}))
    assert resumed.steps == steps
    expected = dict(enumerate(full.losses, start=1))
    got = losses_by_step(killed)
    for step in range(1, steps + 1):
        assert got[step] == pytest.approx(expected[step], abs=1e-5), step


def test_two_processes_equal_one_process_with_accumulation(workspace, tmp_path):
    # a decaying schedule, so a scheduler stepped at the wrong rate under DDP shows in lr and loss
    optim = {"lr": 3e-3, "warmup_ratio": 0.0, "schedule": "cosine"}
    common = dict(max_steps=3, save_steps=3, per_device_batch_size=2, optim=optim)
    single = recipe_dict(
        workspace["model"],
        workspace["json"],
        tmp_path / "single",
        gradient_accumulation_steps=2,
        **common,
    )
    ddp = recipe_dict(workspace["model"], workspace["json"], tmp_path / "ddp", **common)
    one = train(TrainConfig(**single))
    recipe = write_recipe(tmp_path / "ddp.yaml", ddp)
    proc = run_cli(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", "29533", "-m", "oryx_mllm.cli", "train", str(recipe)]
    )  # fmt: skip
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    two = losses_by_step(tmp_path / "ddp")
    for step, loss in enumerate(one.losses, start=1):
        assert two[step] == pytest.approx(loss, abs=1e-5), (step, two, one.losses)
    lr_one, lr_two = (losses_by_step(tmp_path / d, "lr") for d in ("single", "ddp"))
    assert lr_two == pytest.approx(lr_one, abs=1e-12)
    assert lr_one[3] < lr_one[2] < lr_one[1]


def test_interrupted_save_is_ignored_on_resume(workspace, tmp_path):
    out = tmp_path / "out"
    train(TrainConfig(**recipe_dict(workspace["model"], workspace["json"], out, max_steps=2)))
    partial = out / "checkpoints" / ".tmp-step-4"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half written")
    assert latest_checkpoint(out).name == "step-2"


def test_group_lr_gives_a_module_group_its_own_learning_rate(workspace, tmp_path):
    # One AdamW step moves every weight with a gradient by exactly its lr (weight decay 0).
    cfg = TrainConfig(
        **recipe_dict(
            workspace["model"],
            workspace["json"],
            tmp_path / "out",
            max_steps=1,
            stage={"trainable": ["vision_tower", "mm_projector"]},
            optim={"group_lr": {"vision_tower": 1e-6}},
        )
    )
    result = train(cfg)
    from oryx_mllm.model import OryxForConditionalGeneration

    before = OryxForConditionalGeneration.from_pretrained(workspace["model"])
    after = OryxForConditionalGeneration.from_pretrained(result.final_model)

    def max_change(group: str) -> float:
        old = dict(getattr(before, group).named_parameters())
        return max(
            (p - old[n]).abs().max().item() for n, p in getattr(after, group).named_parameters()
        )

    assert max_change("vision_tower") == pytest.approx(1e-6, rel=0.05)
    assert max_change("mm_projector") == pytest.approx(3e-3, rel=0.05)  # the recipe's lr
    assert max_change("language_model") == 0.0


def test_text_only_batches_train_while_the_language_model_is_frozen(workspace, tmp_path):
    # stage-1a style: only the connector trains, so a text-only loss depends on nothing trainable
    text = make_text_dataset(tmp_path)
    recipe = recipe_dict(workspace["model"], text, tmp_path / "out", max_steps=2)
    recipe["stage"]["trainable"] = ["mm_projector"]
    result = train(TrainConfig(**recipe))
    assert result.steps == 2 and all(math.isfinite(loss) for loss in result.losses)
    from oryx_mllm.model import OryxForConditionalGeneration

    before = OryxForConditionalGeneration.from_pretrained(workspace["model"]).state_dict()
    after = OryxForConditionalGeneration.from_pretrained(result.final_model).state_dict()
    # the projector got a zero gradient (AdamW without weight decay: no move), the rest nothing
    assert all(after[name].equal(weight) for name, weight in before.items())


def test_a_non_finite_loss_stops_the_run_naming_the_step_and_the_last_checkpoint(
    workspace, tmp_path
):
    out = tmp_path / "out"
    text = make_text_dataset(tmp_path)
    recipe = recipe_dict(workspace["model"], text, out, max_steps=4, save_steps=1)
    recipe["optim"]["lr"] = 1e30  # finite, so the recipe loads; the first update ruins the weights
    with pytest.raises(TrainingError) as info:
        train(TrainConfig(**recipe))
    ckpt = out / "checkpoints" / "step-1"
    assert str(info.value).startswith("the training loss is nan at step 2: stopped before the")
    assert f"the last checkpoint is {ckpt} (its step's loss was finite)" in str(info.value)
    assert latest_checkpoint(out) == ckpt and not (out / "final").exists()


@pytest.mark.parametrize(
    ("impl", "unavailable", "message"),
    [
        ("flash_attention_2", "is_flash_attn_2_available", "needs the flash-attn package"),
        ("flex_attention", "torch.cuda.is_available", "cannot train without a CUDA GPU"),
    ],
)
def test_an_attention_backend_that_cannot_train_here_stops_the_run_first(
    tmp_path, monkeypatch, impl, unavailable, message
):
    import torch
    import transformers.utils

    if unavailable.startswith("torch."):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    else:
        monkeypatch.setattr(transformers.utils, unavailable, lambda: False)
    cfg = TrainConfig(  # neither the model nor the data exists: the check comes before both
        output_dir=str(tmp_path / "out"),
        model={"path": str(tmp_path / "no-model"), "attn_implementation": impl},
        data={"train": [str(tmp_path / "no-data.json")]},
    )
    with pytest.raises(ConfigError, match=f"model.attn_implementation '{impl}' {message}.*sdpa"):
        train(cfg)


def test_the_divergence_message_says_when_deepspeed_already_applied_the_update(tmp_path):
    from oryx_mllm.train.trainer import _diverged

    cfg = SimpleNamespace(optim=SimpleNamespace(lr=1e-3))
    plain = _diverged(float("nan"), 3, cfg, tmp_path)
    deepspeed = _diverged(float("nan"), 3, cfg, tmp_path, updated=True)
    assert "stopped before the update" in plain
    assert "stopped after the update (DeepSpeed applies it in backward)" in deepspeed
    assert "no checkpoint was saved" in deepspeed
