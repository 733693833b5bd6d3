"""Fuzz: random or damaged bytes and random sizes raise only the library's typed errors."""

from __future__ import annotations

import io
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from media_helpers import write_video
from PIL import Image

from oryx_mllm.errors import OryxError
from oryx_mllm.processing import (
    ImageOptions,
    VideoOptions,
    preprocess_image,
    preprocess_video,
    resize_highres,
    resize_lowres,
    resize_video_frame,
)

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL = ImageOptions(max_input_pixels=4096 * 4096)


@cache
def _valid_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    out = {}
    im = Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8))
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"):
        buf = io.BytesIO()
        im.save(buf, format=fmt)
        out[fmt] = buf.getvalue()
    with tempfile.TemporaryDirectory() as d:
        for name, codec in (("v.mp4", "mpeg4"), ("v.mkv", "libx264"), ("v.gif", "gif")):
            out[name] = write_video(Path(d) / name, num_frames=12, fps=4, codec=codec).read_bytes()
    return out


def _mutate(data: bytes, positions: list[int], values: list[int], cut: int) -> bytes:
    b = bytearray(data)
    for p, v in zip(positions, values, strict=False):
        b[p % len(b)] = v
    return bytes(b[: max(1, len(b) - cut)])


def _typed_only(fn, *args, **kw) -> None:
    try:
        fn(*args, **kw)
    except OryxError:
        pass


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_as_image(data):
    _typed_only(preprocess_image, data, SMALL)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_as_video(data):
    _typed_only(preprocess_video, data, VideoOptions(max_frames=4))


@FUZZ
@given(
    st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "v.mp4", "v.mkv", "v.gif"]),
    st.lists(st.integers(0, 1 << 30), max_size=8),
    st.lists(st.integers(0, 255), max_size=8),
    st.integers(0, 4096),
)
def test_damaged_files(kind, positions, values, cut):
    data = _mutate(_valid_files()[kind], positions, values, cut)
    if kind.startswith("v."):
        with tempfile.NamedTemporaryFile(suffix=kind[1:]) as f:
            f.write(data)
            f.flush()
            _typed_only(preprocess_video, f.name, VideoOptions(max_frames=4))
    else:
        _typed_only(preprocess_image, data, SMALL)


@FUZZ
@given(
    st.integers(-5, 1 << 45),
    st.integers(-5, 1 << 45),
    st.sampled_from([1, 2, 4, 8]),
    st.booleans(),
)
def test_random_sizes(w, h, r, long):
    for fn in (
        lambda: resize_highres(w, h, compression=r),
        lambda: resize_lowres(w, h, compression=r),
        lambda: resize_video_frame(w, h, long=long, compression=r),
    ):
        try:
            H, W = fn()
        except OryxError:
            assert w < 1 or h < 1 or max(w, h) > 1 << 40
            continue
        assert H > 0 and W > 0 and H % (16 * r) == 0 and W % (16 * r) == 0
        assert H * W <= max(1536 * 1536, (16 * r * 8) ** 2)
