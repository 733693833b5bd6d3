"""Videos: streaming decode with PyAV, time-based frame sampling, the released frame-size policy.

Sampling policy (matches the original "every ``round(fps_video / fps)``-th frame, at most N
frames, else ``linspace`` over all frames", but in seconds so variable frame rate is safe):

1. Target times are ``start + k / fps`` within the video's duration. If that is more than
   ``max_frames`` (``long_max_frames`` in long-video mode), ``max_frames`` targets are spread
   uniformly from the first to the last frame instead.
2. Each target takes the decoded frame whose presentation time is nearest; a frame is used at
   most once, so a slideshow with 5 s frames does not repeat pictures.
3. Decoding is a single forward pass that holds one pending frame, resizes each selected frame as
   soon as it is chosen and stops once the last target is served: memory is O(selected frames at
   ~480² pixels), never O(video).

Reported timestamps are the selected frames' own presentation times, in seconds from the first
frame. The stream length comes from the container/stream header; when neither knows it, the
packets are scanned once (demux only, no decoding) to find it.

Long-video mode: ``VideoOptions.long_video="auto"`` switches it on for videos longer than
``VideoOptions.threshold_s`` (default ``max_frames / fps`` = 64 s, i.e. exactly when the short
mode would have to drop frames). Long mode keeps up to 256 frames with 4x4 pooling and floors
frame sides to 128 (as the released models do); see :func:`resize_video_frame`.

A video can also be a list of frames (PIL images, arrays, tensors, paths), a ``[T, H, W, C]`` /
``[T, C, H, W]`` array or tensor, or a directory of images (natural name order); frame ``i``
then sits at ``i / list_fps`` seconds and the same sampling applies (only selected images are
loaded).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from PIL import Image

from oryx_mllm.errors import (
    ImageDecodeError,
    InvalidInputError,
    OryxError,
    UnsupportedModalityError,
    VideoDecodeError,
    VideoNotFoundError,
)
from oryx_mllm.processing.image import (
    ImageLike,
    effective_multiple,
    fit_pixels,
    load_image,
    normalize,
    resize,
)
from oryx_mllm.processing.options import ImageOptions, VideoOptions
from oryx_mllm.processing.types import VisualInput

if TYPE_CHECKING:
    import av

VideoLike = str | Path | bytes | bytearray | Sequence[ImageLike] | np.ndarray | torch.Tensor
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------
# Sizing and sampling (pure)


def resize_video_frame(
    w: int,
    h: int,
    options: VideoOptions | None = None,
    long: bool = False,
    compression: int | None = None,
) -> tuple[int, int]:
    """``(H, W)`` of a ``w x h`` video frame: scaled into ``[min_pixels, max_pixels]``, sides
    floored to ``multiple`` (``long_multiple`` in long mode) and to ``16 * compression``.

    ``compression=None`` uses the mode's default ratio (2, or 4 in long mode). Where the original
    floors a side to 0 and crashes (e.g. 2048x64 in long mode) the side becomes one multiple and
    the long side is shortened to stay within ``max_pixels``.
    """
    opt = options or VideoOptions()
    r = (
        compression
        if compression is not None
        else (opt.long_compression if long else opt.compression)
    )
    multiple = effective_multiple(opt.long_multiple if long else opt.multiple, r)
    return fit_pixels(w, h, opt.min_pixels, max(opt.max_pixels, multiple**2), multiple)


def sample_times(
    start: float, duration: float, fps: float, max_frames: int, frame_dt: float = 0.0
) -> list[float]:
    """Target times: every ``1 / fps`` s from ``start`` while inside ``duration`` (so 10 s at
    1 fps gives 0..9 s, like taking every ``fps_video / fps``-th of the 10 s worth of frames), or
    ``max_frames`` times spread uniformly from the first to the last frame (``start + duration -
    frame_dt``) when that would be more."""
    n = max(1, math.ceil(duration * fps - 1e-6))
    if n <= max_frames:
        return [start + k / fps for k in range(n)]
    if max_frames == 1:
        return [start]
    span = max(0.0, duration - frame_dt)
    return [start + span * k / (max_frames - 1) for k in range(max_frames)]


def select_nearest(
    items: Iterable[tuple[float, T]], targets: Sequence[float]
) -> Iterator[tuple[float, T]]:
    """Stream ``(time, item)`` pairs (increasing time) and yield, once each and in order, the
    item nearest to every target. Holds one pending item; stops pulling once targets run out."""
    i, prev, last = 0, None, None
    for t, item in items:
        if i >= len(targets):
            return
        cur = (t, item)
        while i < len(targets) and targets[i] <= t:
            chosen = prev if prev is not None and targets[i] - prev[0] < t - targets[i] else cur
            if chosen is not last:
                last = chosen
                yield chosen
            i += 1
        prev = cur
    if i < len(targets) and prev is not None and prev is not last:
        yield prev


# ----------------------------------------------------------------------------------------------
# Frame sources: each gives (start, last, duration) and a lazy stream of (time, loader)


@dataclass
class _Source:
    name: str
    start: float  # time of the first frame, s
    frame_dt: float  # typical frame duration, s
    duration: float  # length, s (last frame time - start + one frame)
    frames: Callable[..., Iterator[tuple[float, Callable[[], Image.Image]]]]  # (targets=None)
    meta: dict[str, Any] = field(default_factory=dict)


def _natural_key(p: Path) -> list:
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", p.name)]


def _list_source(items: Sequence[Any], name: str, opt: VideoOptions) -> _Source:
    if len(items) == 0:
        raise VideoDecodeError(f"{name}: no frames")
    img_opt = ImageOptions(max_input_pixels=opt.max_input_pixels)

    def loader(x: Any) -> Callable[[], Image.Image]:
        def load() -> Image.Image:
            try:
                return load_image(x, img_opt)
            except ImageDecodeError as e:
                raise VideoDecodeError(f"{name}: bad frame: {e}") from e

        return load

    def frames(
        targets: Sequence[float] | None = None,
    ) -> Iterator[tuple[float, Callable[[], Image.Image]]]:
        for i, x in enumerate(items):
            yield i / opt.list_fps, loader(x)

    dt = 1.0 / opt.list_fps
    return _Source(name, 0.0, dt, len(items) * dt, frames, {"num_frames": len(items)})


def _directory_source(path: Path, opt: VideoOptions) -> _Source:
    exts = {e.lower() for e in opt.image_extensions}
    files = sorted((p for p in path.iterdir() if p.suffix.lower() in exts), key=_natural_key)
    if not files:
        raise VideoDecodeError(
            f"{path}: directory holds no image files ({', '.join(sorted(exts))})"
        )
    return _list_source(files, str(path), opt)


_DAMAGED = "truncated or corrupt"


def _pyav():
    """PyAV, imported when a video file is first opened: frame lists, arrays and directories of
    images do not need it (and neither does ``import oryx_mllm``)."""
    try:
        import av
    except ImportError as e:
        raise VideoDecodeError(f"decoding video files needs PyAV (pip install av): {e}") from e
    return av


def _open_container(data: Path | bytes, name: str) -> av.container.InputContainer:
    av = _pyav()
    try:
        return av.open(io.BytesIO(data) if isinstance(data, bytes) else str(data), mode="r")
    except (EOFError, av.error.InvalidDataError) as e:  # what a cut-off container gives
        raise VideoDecodeError(
            f"{name}: cannot open video: {e} (not a video, or the file is {_DAMAGED})"
        ) from e
    except Exception as e:
        raise VideoDecodeError(f"{name}: cannot open video: {e or type(e).__name__}") from e


def _scan_last_time(data: Path | bytes, name: str) -> tuple[float | None, float | None]:
    """Demux (no decoding) to find the first and last packet times of the video stream."""
    first = last = None
    with _open_container(data, name) as c:
        s = c.streams.video[0]
        for pkt in c.demux(s):
            if pkt.pts is None or pkt.time_base is None:
                continue
            t = float(pkt.pts * pkt.time_base)
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
    return first, last


def _file_source(data: Path | bytes, name: str, opt: VideoOptions) -> _Source:
    try:
        with _open_container(data, name) as c:
            fmt = c.format.name
            if fmt in ("image2", "image2pipe") or fmt.endswith("_pipe"):  # a still, 1 frame
                still = fmt.removesuffix("_pipe").upper() if fmt.endswith("_pipe") else "image"
                raise UnsupportedModalityError(
                    f"{name}: a still {still}, not a video; pass it as an image (`--image`, an "
                    "`image_url` part), or several images as a video's list or folder of frames"
                )
            if not c.streams.video:
                kinds = sorted({s.type for s in c.streams}) or ["none"]
                # a container cut inside its header lists no streams, or codec-less "data" ones
                hint = f"; the file may be {_DAMAGED}" if kinds in (["none"], ["data"]) else ""
                raise VideoDecodeError(
                    f"{name}: no video stream (streams: {', '.join(kinds)}{hint})"
                )
            s = c.streams.video[0]
            if s.codec_context is None:  # PyAV's "Decoder not found" once decoding starts
                raise VideoDecodeError(
                    f"{name}: cannot decode video: the video stream names no codec that can be "
                    f"decoded (the file is {_DAMAGED}, or its codec is unsupported)"
                )
            rate = s.average_rate or s.guessed_rate or s.base_rate
            dt = float(1 / rate) if rate else 0.0
            tb = s.time_base
            start = float(s.start_time * tb) if s.start_time is not None and tb else 0.0
            if s.duration is not None and tb and s.duration > 0:
                duration = float(s.duration * tb)
            elif c.duration is not None and c.duration > 0:
                duration = c.duration / _pyav().time_base
            else:
                duration = None
        if duration is None:  # header does not know: scan packets once
            first, last_pkt = _scan_last_time(data, name)
            if first is None:
                raise VideoDecodeError(f"{name}: video stream has no packets")
            start, duration = first, last_pkt - first + dt
    except OryxError:
        raise
    except Exception as e:
        raise VideoDecodeError(f"{name}: cannot read video: {e or type(e).__name__}") from e
    meta = {"fps_video": float(rate) if rate else None}

    def sequential(c: av.container.InputContainer) -> Iterator[tuple[float, Any]]:
        s = c.streams.video[0]
        for i, frame in enumerate(c.decode(s)):
            t = frame.time if frame.time is not None else start + i * dt
            yield float(t), frame

    def seeking(
        c: av.container.InputContainer, targets: Sequence[float]
    ) -> Iterator[tuple[float, Any]]:
        """For each target: seek to the keyframe before it and decode up to the first frame at
        or after it, yielding the frames around it (times strictly increasing)."""
        s = c.streams.video[0]
        last_t = -math.inf
        for target in targets:
            if target <= last_t:
                continue
            c.seek(int(target / s.time_base), stream=s, backward=True, any_frame=False)
            before = None
            for frame in c.decode(s):
                if frame.time is None:
                    raise VideoDecodeError(f"{name}: frames without timestamps, cannot seek")
                t = float(frame.time)
                if t < target:
                    before = (t, frame)
                    continue
                if before is not None and before[0] > last_t:
                    yield before
                if t > last_t:
                    yield t, frame
                    last_t = t
                break
            else:  # ran off the end: the last frame serves the remaining targets
                if before is not None and before[0] > last_t:
                    yield before
                return

    def frames(
        targets: Sequence[float] | None = None,
    ) -> Iterator[tuple[float, Callable[[], Image.Image]]]:
        """Decoded frames in time order; with sparse ``targets`` (mean gap of at least
        ``opt.seek_min_gap_s``) only the frames around each target are decoded."""
        with _open_container(data, name) as c:
            c.streams.video[0].thread_type = "AUTO"
            gaps = np.diff(targets) if targets is not None and len(targets) > 1 else None
            use_seek = (
                opt.seek_min_gap_s is not None
                and gaps is not None
                and float(gaps.mean()) >= opt.seek_min_gap_s
            )
            it = seeking(c, targets) if use_seek else sequential(c)
            first = next(it, None)
            if first is None and use_seek:  # seeking found nothing: decode from the start
                c.seek(0)
                it = sequential(c)
                first = next(it, None)
            if first is None:
                return
            meta["seek"] = use_seek
            yield first[0], _frame_loader(first[1], name, opt)
            for t, frame in it:
                yield t, _frame_loader(frame, name, opt)

    return _Source(name, start, dt, duration, frames, meta)


def _frame_loader(frame: av.VideoFrame, name: str, opt: VideoOptions) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        w, h = frame.width, frame.height
        if w <= 0 or h <= 0:
            raise VideoDecodeError(f"{name}: frame without pixels ({w}x{h})")
        if opt.max_input_pixels is not None and w * h > opt.max_input_pixels:
            raise VideoDecodeError(
                f"{name}: {w}x{h} frames exceed the pixel limit {opt.max_input_pixels} "
                "(VideoOptions.max_input_pixels)"
            )
        return frame.to_image().convert("RGB")

    return load


def _as_source(video: VideoLike, opt: VideoOptions) -> _Source:
    if isinstance(video, (str, Path)):
        path = Path(video)
        if not path.exists():
            raise VideoNotFoundError(f"{path}: no such video file or directory")
        if path.is_dir():
            return _directory_source(path, opt)
        if not path.is_file():  # a device, a FIFO, a socket: would read forever or block
            raise VideoDecodeError(f"{path}: not a regular file")
        if path.stat().st_size == 0:
            raise VideoDecodeError(f"{path}: zero-byte file")
        return _file_source(path, str(path), opt)
    if isinstance(video, (bytes, bytearray)):
        if len(video) == 0:
            raise VideoDecodeError("<0 bytes>: zero-byte video data")
        return _file_source(bytes(video), f"<{len(video)} bytes>", opt)
    if isinstance(video, (np.ndarray, torch.Tensor)):
        if video.ndim != 4:
            raise InvalidInputError(
                f"video array must be [T, H, W, C] or [T, C, H, W], got {tuple(video.shape)}"
            )
        return _list_source(list(video), f"<{type(video).__name__} {tuple(video.shape)}>", opt)
    if isinstance(video, Sequence):
        return _list_source(video, f"<list of {len(video)} frames>", opt)
    raise InvalidInputError(f"<{type(video).__name__}>: not a video (path, bytes, list of frames)")


# ----------------------------------------------------------------------------------------------
# Public entry points


@dataclass
class SampledFrames:
    """Frames chosen from a video, already resized to one common ``(H, W)``."""

    frames: list[Image.Image]
    timestamps: list[float]  # seconds from the first frame
    long_video: bool
    duration: float
    original_size: tuple[int, int]  # (width, height) of the first selected frame
    source: str
    meta: dict[str, Any]


def is_long_video(duration: float, options: VideoOptions | None = None) -> bool:
    """Long-video mode for a video of ``duration`` seconds under ``options.long_video``."""
    opt = options or VideoOptions()
    if isinstance(opt.long_video, bool):
        return opt.long_video
    return duration > opt.threshold_s + 1e-6


def sample_video(
    video: VideoLike, options: VideoOptions | None = None, compression: int | None = None
) -> SampledFrames:
    """Decode and sample ``video`` (streaming), resizing each chosen frame as it is picked."""
    opt = options or VideoOptions()
    src = _as_source(video, opt)
    long = is_long_video(src.duration, opt)
    max_frames = opt.long_max_frames if long else opt.max_frames
    targets = sample_times(src.start, src.duration, opt.fps, max_frames, src.frame_dt)

    frames: list[Image.Image] = []
    times: list[float] = []
    hw: tuple[int, int] | None = None
    original: tuple[int, int] | None = None
    decode_error: str | None = None
    try:
        for t, load in select_nearest(src.frames(targets), targets):
            im = load()
            if hw is None:  # the first frame fixes the common size
                original = im.size
                hw = resize_video_frame(im.width, im.height, opt, long, compression)
            frames.append(resize(im, hw, opt.resample))
            times.append(max(0.0, t - src.start))
    except OryxError:
        raise
    except Exception as e:  # a decoder error mid-stream
        if not frames:
            raise VideoDecodeError(
                f"{src.name}: cannot decode video: {e or type(e).__name__}"
            ) from e
        decode_error = str(e) or type(e).__name__  # keep what decoded before the damage
    if not frames:
        raise VideoDecodeError(f"{src.name}: no decodable video frames")
    assert original is not None
    meta = dict(src.meta, num_targets=len(targets))
    if decode_error is not None:
        meta["decode_error"] = decode_error
    # The frames stop well before the last target: the file is shorter than its header says
    # (truncated) or damaged. What decoded is used; callers can tell the user.
    last = times[-1] + src.start
    if targets[-1] - last > max(2 * src.frame_dt, 1.0 / opt.fps):
        meta["frames_end_s"] = round(times[-1], 3)
    return SampledFrames(frames, times, long, src.duration, original, src.name, meta)


def preprocess_video(
    video: VideoLike, options: VideoOptions | None = None, compression: int | None = None
) -> VisualInput:
    """A video -> ``VisualInput(modality="video", frames=[[3, H, W] x T], timestamps=[T])``.

    ``compression=None`` picks the mode's ratio (2x2, or 4x4 in long-video mode, which is chosen
    by ``options.long_video``); an explicit ratio is honoured and the frame sides are made
    multiples of ``16 * compression``.
    """
    opt = options or VideoOptions()
    sampled = sample_video(video, opt, compression)
    r = (
        compression
        if compression is not None
        else (opt.long_compression if sampled.long_video else opt.compression)
    )
    return VisualInput(
        modality="video",
        frames=[normalize(f, opt.mean, opt.std) for f in sampled.frames],
        compression=r,
        timestamps=sampled.timestamps,
        source=sampled.source,
        original_size=sampled.original_size,
        meta=dict(sampled.meta, long_video=sampled.long_video, duration=sampled.duration),
    )


def decode_frames_at(
    video: VideoLike, indices: Sequence[int], options: VideoOptions | None = None
) -> list[Image.Image]:
    """The frames at the given 0-based decode-order ``indices`` (in that order, repeats allowed).

    For records that name their frames explicitly (e.g. needle-in-a-haystack samples, whose target
    frames were re-inserted after subsampling). Streaming: one pass, only the wanted frames kept.
    """
    opt = options or VideoOptions()
    if len(indices) == 0:
        raise InvalidInputError("decode_frames_at: no frame indices given")
    if min(indices) < 0:
        raise InvalidInputError(f"decode_frames_at: negative frame index {min(indices)}")
    src = _as_source(video, opt)
    wanted = set(indices)
    last = max(wanted)
    found: dict[int, Image.Image] = {}
    decoded = 0
    try:
        for i, (_, load) in enumerate(src.frames()):
            decoded = i + 1
            if i in wanted:
                found[i] = load()
            if i >= last:
                break
    except OryxError:
        raise
    except Exception as e:
        raise VideoDecodeError(f"{src.name}: cannot decode video: {e or type(e).__name__}") from e
    missing = sorted(wanted - set(found))
    if missing:
        raise VideoDecodeError(
            f"{src.name}: frame indices {missing[:8]} are beyond the video's {decoded} frames"
        )
    return [found[i] for i in indices]
