"""Checkpoints: pruning keeps what it must, saves are flushed before they are marked complete, and
resuming from a corrupt or incompatible checkpoint is a CheckpointError (``resume: auto`` falls
back to the newest one that loads)."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest

from oryx_mllm.errors import CheckpointError
from oryx_mllm.train import trainer
from oryx_mllm.train.config import TrainConfig
from oryx_mllm.train.trainer import (
    STATE_FILE,
    build_model,
    latest_checkpoint,
    save_checkpoint,
    tied_parameter_names,
    train,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_utils import make_dataset, recipe_dict, save_tiny_model  # noqa: E402


class FakeAccelerator:
    """One process; ``save_state`` writes two small files."""

    is_main_process = True

    def wait_for_everyone(self) -> None:
        pass

    def save_state(self, folder: str) -> None:
        (Path(folder) / "model.safetensors").write_bytes(b"weights")
        (Path(folder) / "optimizer.bin").write_bytes(b"optimizer")


def save_steps(out: Path, steps: list[int], limit: int | None) -> list[str]:
    cfg = TrainConfig(output_dir=str(out), save_total_limit=limit)
    for step in steps:
        save_checkpoint(FakeAccelerator(), out, {"step": step, "epoch": 0, "consumed": 0}, cfg)
    return sorted(p.name for p in (out / "checkpoints").iterdir())


def test_save_total_limit_zero_keeps_every_checkpoint(tmp_path):
    assert save_steps(tmp_path, [1, 2, 3], limit=0) == ["step-1", "step-2", "step-3"]


def test_pruning_never_removes_the_checkpoint_just_saved(tmp_path):
    # step-6 was left by an earlier, longer run; the new run's step-2 must survive its own prune
    assert save_steps(tmp_path, [6, 2], limit=1) == ["step-2", "step-6"]


def test_checkpoint_files_are_flushed_before_it_is_marked_complete(tmp_path, monkeypatch):
    tmp, final = (tmp_path / "checkpoints" / name for name in (".tmp-step-1", "step-1"))

    def marked() -> bool:  # is the completion marker written yet?
        return (tmp / STATE_FILE).exists() or (final / STATE_FILE).exists()

    synced = []
    monkeypatch.setattr(trainer, "fsync_path", lambda p: synced.append((Path(p).name, marked())))
    save_steps(tmp_path, [1], limit=None)
    before_marker = {name for name, done in synced if not done}
    assert {"model.safetensors", "optimizer.bin", "recipe.yaml", tmp.name} <= before_marker
    # then the marker, its folder entry, and the rename
    assert synced[-3:] == [(STATE_FILE, True), (tmp.name, True), ("checkpoints", True)]


def test_latest_checkpoint_ignores_folders_not_named_step_int(tmp_path):
    for name in ("step-2", "step-old", "step-3x"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / STATE_FILE).write_text("{}")
    assert latest_checkpoint(tmp_path).name == "step-2"


def test_build_model_names_a_missing_model_folder(tmp_path):
    cfg = TrainConfig(model={"path": str(tmp_path / "nonexistent")})
    with pytest.raises(CheckpointError, match=r"model\.path: .*nonexistent does not exist"):
        build_model(cfg)


# Resuming a real run -----------------------------------------------------------------------------


def test_tied_parameter_names_are_the_llm_head_and_its_embeddings(tmp_path):
    model, _ = build_model(TrainConfig(model={"path": str(save_tiny_model(tmp_path / "m"))}))
    assert tied_parameter_names(model) == {
        "language_model.lm_head.weight",
        "language_model.model.embed_tokens.weight",
    }


class AliasingAccelerator(FakeAccelerator):
    """Logs what accelerate's save_state logs when it drops one of two aliased tensors."""

    def save_state(self, folder: str) -> None:
        logging.getLogger("accelerate.utils.other").warning(
            "Removed shared tensor {'language_model.lm_head.weight'} while saving. This should "
            "be OK, but check by verifying that you don't receive any warning while reloading"
        )
        super().save_state(folder)


@pytest.mark.parametrize(
    ("tied", "warned"),
    [
        ({"language_model.lm_head.weight", "language_model.model.embed_tokens.weight"}, False),
        (set(), True),
    ],
)
def test_the_shared_tensor_warning_is_dropped_for_tied_weights_only(tmp_path, caplog, tied, warned):
    cfg = TrainConfig(output_dir=str(tmp_path))
    state = {"step": 1, "epoch": 0, "consumed": 0}
    with caplog.at_level(logging.WARNING):
        save_checkpoint(AliasingAccelerator(), tmp_path, state, cfg, frozenset(tied))
    assert ("Removed shared tensor" in caplog.text) is warned


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 4-step run with checkpoints step-2 and step-4: the recipe that made it and the warnings
    accelerate logged."""
    root = tmp_path_factory.mktemp("resume")
    (root / "data").mkdir()
    recipe = recipe_dict(
        save_tiny_model(root / "model"),
        make_dataset(root / "data", n=8),
        root / "run",
        max_steps=4,
        save_steps=2,
    )
    handler, accelerate_log = ListHandler(), logging.getLogger("accelerate")
    accelerate_log.addHandler(handler)
    try:
        train(TrainConfig(**recipe))
    finally:
        accelerate_log.removeHandler(handler)
    return recipe, [r.getMessage() for r in handler.records]


@pytest.fixture(scope="module")
def finished(finished_run):
    return finished_run[0]


def test_a_real_run_saves_its_tied_weights_without_a_shared_tensor_warning(finished_run):
    assert not [m for m in finished_run[1] if "shared tensor" in m]


def copy_run(finished: dict, tmp_path: Path) -> tuple[dict, Path]:
    out = tmp_path / "run"
    shutil.copytree(finished["output_dir"], out)
    return {**finished, "output_dir": str(out)}, out / "checkpoints"


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


CORRUPTIONS = {
    "truncated weights": lambda ckpt: truncate(ckpt / "model.safetensors"),
    "no optimizer state": lambda ckpt: (ckpt / "optimizer.bin").unlink(),
    "state not json": lambda ckpt: (ckpt / STATE_FILE).write_text("{"),
    "state without step": lambda ckpt: (ckpt / STATE_FILE).write_text("{}"),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_resume_auto_falls_back_to_the_newest_checkpoint_that_loads(
    finished, tmp_path, caplog, corrupt
):
    recipe, ckpts = copy_run(finished, tmp_path)
    corrupt(ckpts / "step-4")
    with caplog.at_level(logging.WARNING, logger="oryx_mllm.train.trainer"):
        result = train(TrainConfig(**recipe))
    assert result.steps == 4 and len(result.losses) == 2  # steps 3 and 4 again, from step-2
    assert "skips step-4" in caplog.text


def test_explicit_resume_of_a_corrupt_checkpoint_is_a_checkpoint_error(finished, tmp_path):
    recipe, ckpts = copy_run(finished, tmp_path)
    truncate(ckpts / "step-2" / "model.safetensors")
    with pytest.raises(CheckpointError, match="step-2 cannot be loaded: SafetensorError"):
        train(TrainConfig(**{**recipe, "resume": str(ckpts / "step-2")}))


def test_resume_auto_when_no_checkpoint_loads_is_a_checkpoint_error(finished, tmp_path):
    recipe, ckpts = copy_run(finished, tmp_path)
    for step in (2, 4):
        (ckpts / f"step-{step}" / "optimizer.bin").unlink()
    with pytest.raises(CheckpointError, match="no checkpoint in .* loads"):
        train(TrainConfig(**recipe))


def test_resume_with_other_trainable_groups_is_a_checkpoint_error(finished, tmp_path):
    recipe, _ = copy_run(finished, tmp_path)
    recipe["stage"] = {**recipe["stage"], "trainable": ["mm_projector"]}
    with pytest.raises(CheckpointError, match="stage.trainable"):
        train(
            TrainConfig(
                **{**recipe, "resume": str(Path(recipe["output_dir"]) / "checkpoints" / "step-4")}
            )
        )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{", "trainer_state.json is not valid JSON"),
        ("[1]", "trainer_state.json must hold a JSON object, not a list"),
        ('{"step": 4, "epoch": 0}', "trainer_state.json consumed must be an integer"),
    ],
)
def test_read_trainer_state_names_the_bad_file(tmp_path, text, match):
    ckpt = tmp_path / "step-4"
    ckpt.mkdir()
    (ckpt / STATE_FILE).write_text(text)
    with pytest.raises(CheckpointError, match=match) as info:
        trainer.read_trainer_state(ckpt)
    assert str(ckpt) in str(info.value)
