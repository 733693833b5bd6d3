"""Helpers of the media-processing tests: synthetic videos with known frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

MARKER = (255, 0, 0)


def frame_value(i: int) -> int:
    """Grey level of frame ``i`` in :func:`write_video` (recoverable after lossy coding)."""
    return 40 + 4 * (i % 50)


def write_video(
    path: Path,
    num_frames: int = 50,
    fps: int = 10,
    codec: str = "mpeg4",
    size: tuple[int, int] = (64, 48),
    marker: int | None = None,
    pts_ms: list[int] | None = None,
    fmt: str | None = None,
    gop: int | None = None,
) -> Path:
    """Frame ``i`` is uniform grey ``frame_value(i)``; frame ``marker`` is pure red.

    ``pts_ms`` gives explicit presentation times in milliseconds (variable frame rate)."""
    w, h = size
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = w, h
        s.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        s.bit_rate = 20_000_000  # near-lossless grey levels
        if gop is not None:
            s.codec_context.gop_size = gop
        if pts_ms is not None:
            s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for i in range(num_frames):
            a = np.full((h, w, 3), frame_value(i), np.uint8)
            if i == marker:
                a[:] = MARKER
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            if pts_ms is not None:
                f.pts, f.time_base = pts_ms[i], Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        n = int(16000 * seconds)
        samples = (0.1 * np.sin(np.arange(n) / 10)).astype(np.float32)[None]
        for start in range(0, n, 1024):
            f = av.AudioFrame.from_ndarray(
                samples[:, start : start + 1024], format="fltp", layout="mono"
            )
            f.sample_rate, f.pts = 16000, start
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def mean_rgb(frame) -> np.ndarray:
    """Mean 0..255 colour of a normalised [3, H, W] frame."""
    return (frame.mean(dim=(1, 2)) * 127.5 + 127.5).numpy()
