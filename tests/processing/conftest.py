"""Fixtures of the media-processing tests (helpers in ``media_helpers.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from media_helpers import write_video  # noqa: E402


@pytest.fixture
def make_video(tmp_path):
    def make(name: str = "clip.mp4", **kw) -> Path:
        return write_video(tmp_path / name, **kw)

    return make
