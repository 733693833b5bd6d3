"""The package's public names: imported on first use, so ``import oryx_mllm`` and the command
line start without torch."""

import subprocess
import sys

import pytest

import oryx_mllm


@pytest.mark.parametrize("module", ["oryx_mllm", "oryx_mllm.cli", "oryx_mllm.eval.paired"])
def test_light_imports_do_not_load_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_public_name_resolves_to_its_module_object():
    from oryx_mllm.pipeline import OryxPipeline
    from oryx_mllm.vision import OryxViT

    assert oryx_mllm.OryxPipeline is OryxPipeline
    assert oryx_mllm.OryxViT is OryxViT
    for name in oryx_mllm.__all__:
        assert getattr(oryx_mllm, name) is not None
    assert set(oryx_mllm.__all__) <= set(dir(oryx_mllm))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'OryxVit'"):
        oryx_mllm.OryxVit  # noqa: B018
