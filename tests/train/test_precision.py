"""``mixed_precision: auto`` and the warning for bf16 on a CPU without native bf16."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from oryx_mllm.errors import ConfigError
from oryx_mllm.train import precision
from oryx_mllm.train.config import TrainConfig
from oryx_mllm.train.trainer import train
from oryx_mllm.train.vision_pretrain import VisionPretrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_utils import make_dataset, recipe_dict, save_tiny_model  # noqa: E402


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to run on a CPU with (``cpu(True)``) or without native bf16, and no GPU."""

    def set_cpu(fast_bf16: bool, gflops: tuple[float, float] = (1.0, 60.0)):
        monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast_bf16)
        monkeypatch.setattr(precision, "_cpu_speeds", lambda: gflops)
        monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)

    return set_cpu


@pytest.mark.parametrize("fast_bf16, expected", [(True, "bf16"), (False, "no")])
def test_auto_picks_bf16_only_on_a_cpu_with_native_bf16(cpu, fast_bf16, expected):
    cpu(fast_bf16)
    assert precision.resolve_mixed_precision("auto") == expected


@pytest.mark.parametrize("value", ["no", "bf16", "fp16"])
def test_an_explicit_value_is_kept(cpu, value):
    cpu(False)
    assert precision.resolve_mixed_precision(value) == value


def test_bf16_on_a_slow_cpu_is_a_warning_that_names_the_cause(cpu, caplog):
    cpu(False, gflops=(0.9, 58.0))
    with caplog.at_level(logging.WARNING, logger=precision.__name__):
        message = precision.warn_if_slow_bf16("bf16")
    assert "no native bf16" in message and "0.9 GFLOP/s" in message and "58.0" in message
    assert message in caplog.text


@pytest.mark.parametrize(
    "fast_bf16, gflops, value",
    [
        (True, (1.0, 60.0), "bf16"),  # native bf16: nothing to say
        (False, (50.0, 60.0), "bf16"),  # no flags, but the bf16 path measures fast
        (False, (1.0, 60.0), "no"),  # fp32 asked for
    ],
)
def test_no_warning_where_bf16_is_fast_or_not_used(cpu, fast_bf16, gflops, value):
    cpu(fast_bf16, gflops)
    assert precision.warn_if_slow_bf16(value) is None


def test_the_configs_take_auto_and_name_the_choices(tmp_path):
    assert TrainConfig(output_dir=str(tmp_path), mixed_precision="auto").mixed_precision == "auto"
    assert VisionPretrainConfig(output_dir=str(tmp_path), mixed_precision="auto")
    with pytest.raises(ConfigError, match="'fp8' not in no/bf16/fp16/auto"):
        TrainConfig(output_dir=str(tmp_path), mixed_precision="fp8")


@pytest.fixture
def fresh_accelerate():
    """Accelerate keeps one mixed precision per process; reset it around a test that changes it,
    so no later test inherits bf16."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("fast_bf16, same_as", [(True, "bf16"), (False, "no")])
def test_a_run_with_auto_trains_exactly_as_its_resolved_value(
    cpu, fresh_accelerate, tmp_path, fast_bf16, same_as
):
    cpu(fast_bf16, gflops=(60.0, 60.0))  # the warning's timing is not under test here
    (tmp_path / "data").mkdir()
    model, data = save_tiny_model(tmp_path / "model"), make_dataset(tmp_path / "data")

    from accelerate.state import AcceleratorState

    def losses(value: str, name: str) -> list[float]:
        recipe = recipe_dict(model, data, tmp_path / name, max_steps=3, mixed_precision=value)
        result = train(TrainConfig(**recipe)).losses
        AcceleratorState._reset_state(reset_partial_state=True)
        return result

    assert losses("auto", "auto") == losses(same_as, same_as)
