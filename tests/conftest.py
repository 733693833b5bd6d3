"""Shared fixtures: the reference tensors produced by the original Oryx code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def _find_reference_dir() -> Path | None:
    for candidate in (
        REFERENCE_DIR,
        Path(__file__).resolve().parents[1] / "shared" / "reference",
        Path.cwd().parent / "shared" / "reference",
    ):
        if (candidate / "oryx_reference_fixtures.safetensors").exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    found = _find_reference_dir()
    if found is None:
        pytest.fail("../shared/reference/oryx_reference_fixtures.safetensors not found")
    return found


@pytest.fixture(scope="session")
def fixtures(reference_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(reference_dir / "oryx_reference_fixtures.safetensors"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
