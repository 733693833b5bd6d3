"""The training loop with ``data.packing`` on a tiny random model (CPU)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from oryx_mllm.errors import PackingUnsupportedError
from oryx_mllm.train.config import TrainConfig
from oryx_mllm.train.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_utils import make_dataset, recipe_dict, save_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer_packing")
    data = root / "data"
    data.mkdir()
    return {"json": make_dataset(data), "model": save_tiny_model(root / "model")}


def run(workspace, out: Path, packing: bool, **over):
    data = {"packing": packing, **over.pop("data", {})}
    return train(
        TrainConfig(**recipe_dict(workspace["model"], workspace["json"], out, data=data, **over))
    )


def test_packed_training_matches_padded_training_and_learns(workspace, tmp_path):
    # 6 samples per step in 2 micro-batches of 3; max_length 240 holds two ~110-token samples,
    # so each micro-batch packs into two rows (2 + 1 samples)
    common = dict(
        max_steps=8,
        save_steps=8,
        per_device_batch_size=3,
        gradient_accumulation_steps=2,
        data={"max_length": 240},
    )
    padded = run(workspace, tmp_path / "padded", False, **common)
    packed = run(workspace, tmp_path / "packed", True, **common)
    assert packed.steps == padded.steps == 8 and packed.skipped == padded.skipped == 0
    # same samples per step, same token-weighted loss: step 1 (same weights) equal to float noise
    assert packed.losses[0] == pytest.approx(padded.losses[0], abs=1e-5)
    assert packed.losses == pytest.approx(padded.losses, abs=1e-3)
    assert max(packed.losses[-3:]) < packed.losses[0] - 1.0, packed.losses  # it learns


def test_packing_with_an_unsupported_backend_stops_before_training(workspace, tmp_path):
    # a backend that can train on CPU (flex_attention without a GPU stops the run even earlier)
    with pytest.raises(PackingUnsupportedError, match=re.escape("'paged|eager' cannot keep")):
        run(
            workspace,
            tmp_path / "out",
            True,
            model={"path": str(workspace["model"]), "attn_implementation": "paged|eager"},
        )
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_packed_micro_batches_hold_the_same_samples():
    from oryx_mllm.processing.chat import Encoded
    from oryx_mllm.train.transform import MicroBatchCollator, TrainExample

    exs = [
        TrainExample(f"s{i}", Encoded([1] * n, [2] * n), [])
        for i, n in enumerate([5, 3, 4, 6, 2, 7])
    ]
    padded = MicroBatchCollator(0, 2)(exs)
    packed = MicroBatchCollator(0, 2, packing=True, max_length=8)(exs)
    assert [mb["ids"] for mb in packed] == [mb["ids"] for mb in padded]
    assert [[r["ids"] for r in mb["rows"]] for mb in packed] == [
        [["s0", "s1"], ["s2"]],
        [["s3", "s4"], ["s5"]],
    ]
    assert all(r["input_ids"].shape[1] <= 8 for mb in packed for r in mb["rows"])
