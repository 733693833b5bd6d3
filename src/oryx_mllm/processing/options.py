"""Typed knobs for media preprocessing. Every limit lives here, never in environment variables.

The defaults reproduce what the released Oryx checkpoints were trained with (see
``../shared/reference/README.md``): images at native resolution capped at 1536² pixels with sides
floored to a multiple of 32 plus a ~384² low-res view; video frames scaled into [288², 480²]
pixels with sides floored to 64 (128 in long-video mode), 1 frame per second, at most 64 frames
(256 in long-video mode).

The patch size of the encoder is 16 and the dynamic compressor pools ``r x r`` patches, so a
view fed to a compressor with ratio ``r`` must have sides divisible by ``16 * r``. The sizing
functions enforce this by using ``lcm(multiple, 16 * r)`` as the effective multiple.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

from oryx_mllm.checks import check_bool, check_mapping, check_number, check_range
from oryx_mllm.compression_policy import CANDIDATE_RATIOS
from oryx_mllm.errors import ConfigError

PATCH_SIZE = 16

RESAMPLING: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def _check_rgb(name: str, value, integer: bool = False) -> None:
    """Three numbers, one per channel (R, G, B); colours are integers in [0, 255]."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise ConfigError(f"{name} must have 3 values (R, G, B), got {value!r}")
    for v in value:
        check_number(name, v, integer)
        if integer and not 0 <= v <= 255:
            raise ConfigError(f"{name} values must be in [0, 255], got {value!r}")


def _check_mean_std(mean, std) -> None:
    _check_rgb("mean", mean)
    _check_rgb("std", std)
    if any(s <= 0 for s in std):
        raise ConfigError(f"std must be > 0, got {std}")


def _check_holds(options, pixels: str, multiple: str) -> None:
    """A view of ``pixels`` pixels holds at least one ``multiple`` x ``multiple`` square (sides
    are floored to the multiple, never below it); the error names both fields and the numbers."""
    p, m = getattr(options, pixels), getattr(options, multiple)
    if m * m > p:
        raise ConfigError(
            f"{multiple} {m}: {m}² = {m * m} > {pixels} {p}; {pixels} must hold at least one "
            f"{multiple}² (lower {multiple} or raise {pixels})"
        )


@dataclass(frozen=True)
class ImageOptions:
    """How a still image becomes the two views (low-res + native high-res) of the model.

    High-res view: native size; if ``w * h > max_pixels`` scaled down (aspect kept) to
    ``max_pixels``; images with a side under ``min_side`` are first upscaled so that side becomes
    ``upscale_to``; every side is then floored to ``multiple`` (never below one ``multiple``).
    Low-res view: the high-res size scaled to ``lowres_pixels`` and floored to
    ``lowres_multiple``. ``max_input_pixels`` is the decompression-bomb limit checked on the
    *decoded* size before any pixel data is read (``None`` = no limit of ours; Pillow's own hard
    limit ``2 * PIL.Image.MAX_IMAGE_PIXELS`` still applies and maps to the same error).
    """

    max_pixels: int = 1536 * 1536
    multiple: int = 32
    min_side: int = 32  # sides below this are upscaled ...
    upscale_to: int = 64  # ... so that the short side becomes this
    lowres_pixels: int = 384 * 384
    lowres_multiple: int = 32
    max_input_pixels: int | None = 178_956_970  # = Pillow's own hard limit
    resample: Literal["nearest", "bilinear", "bicubic", "lanczos"] = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # Transparent pixels are composited onto this colour; None drops alpha like ``convert("RGB")``.
    alpha_background: tuple[int, int, int] | None = (255, 255, 255)
    apply_exif_orientation: bool = True

    def __post_init__(self) -> None:
        for name in ("max_pixels", "multiple", "min_side", "upscale_to", "lowres_pixels"):
            check_range(name, getattr(self, name), integer=True, above=0)
        check_range("lowres_multiple", self.lowres_multiple, integer=True, above=0)
        _check_holds(self, "max_pixels", "multiple")
        _check_holds(self, "lowres_pixels", "lowres_multiple")
        if self.max_input_pixels is not None:
            check_range("max_input_pixels", self.max_input_pixels, integer=True, above=0)
        if self.resample not in RESAMPLING:
            raise ConfigError(
                f"resample must be one of {sorted(RESAMPLING)}, got {self.resample!r}"
            )
        _check_mean_std(self.mean, self.std)
        if self.alpha_background is not None:
            _check_rgb("alpha_background", self.alpha_background, integer=True)
        check_bool("apply_exif_orientation", self.apply_exif_orientation)


@dataclass(frozen=True)
class VideoOptions:
    """How a video (file, list of frames or directory of images) becomes frames.

    Sampling: frames are taken at ``fps`` frames per second of video time; when that gives more
    than ``max_frames`` (``long_max_frames`` in long-video mode), ``max_frames`` timestamps are
    spread uniformly from the first to the last frame instead.

    Long-video mode (``long_video``): ``True``/``False`` force it; ``"auto"`` turns it on when the
    video is longer than ``long_threshold_s`` seconds (``None`` = ``max_frames / fps``, i.e. as
    soon as the short mode would have to drop frames). Long mode pools 4x4 instead of 2x2, keeps up
    to ``long_max_frames`` frames and floors sides to ``long_multiple``.

    Frame size: scaled (aspect kept) into ``[min_pixels, max_pixels]`` pixels, sides floored to
    the mode's multiple (never below one multiple; if that raise pushes a frame over
    ``max_pixels``, its long side is shortened).

    Lists of frames and image directories carry no time: frame ``i`` is put at ``i / list_fps``
    seconds and then sampled like a file.
    """

    fps: float = 1.0
    max_frames: int = 64
    long_max_frames: int = 256
    long_video: bool | Literal["auto"] = "auto"
    long_threshold_s: float | None = None
    compression: int = 2  # pooling ratio of the short mode when preprocess_video(compression=None)
    long_compression: int = 4
    min_pixels: int = 288 * 288
    max_pixels: int = 480 * 480
    multiple: int = 64
    long_multiple: int = 128
    list_fps: float = 1.0
    # Decode strategy: when sampled frames are on average at least this many seconds apart, seek
    # to the keyframe before each target instead of decoding every frame (same frames, much
    # faster on long videos). None = always decode sequentially.
    seek_min_gap_s: float | None = 4.0
    max_input_pixels: int | None = 178_956_970  # per decoded frame
    resample: Literal["nearest", "bilinear", "bicubic", "lanczos"] = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_extensions: tuple[str, ...] = (
        ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif",
    )  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("fps", "list_fps"):
            check_range(name, getattr(self, name), above=0)
        for name in ("max_frames", "long_max_frames"):
            check_range(name, getattr(self, name), integer=True, above=0)
        for name in ("compression", "long_compression"):
            if getattr(self, name) not in CANDIDATE_RATIOS or isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"{name} must be one of {CANDIDATE_RATIOS}, got {getattr(self, name)!r}"
                )
        for name in ("min_pixels", "max_pixels", "multiple", "long_multiple"):
            check_range(name, getattr(self, name), integer=True, above=0)
        if self.min_pixels > self.max_pixels:
            raise ConfigError("min_pixels must be <= max_pixels")
        for multiple in ("multiple", "long_multiple"):
            _check_holds(self, "max_pixels", multiple)
        if self.long_video not in (True, False, "auto"):
            raise ConfigError(f"long_video must be True, False or 'auto', got {self.long_video!r}")
        if self.long_threshold_s is not None:
            check_range("long_threshold_s", self.long_threshold_s, above=0)
        if self.seek_min_gap_s is not None:
            check_number("seek_min_gap_s", self.seek_min_gap_s)
        if self.max_input_pixels is not None:
            check_range("max_input_pixels", self.max_input_pixels, integer=True, above=0)
        if self.resample not in RESAMPLING:
            raise ConfigError(
                f"resample must be one of {sorted(RESAMPLING)}, got {self.resample!r}"
            )
        _check_mean_std(self.mean, self.std)
        if not isinstance(self.image_extensions, (tuple, list)) or not all(
            isinstance(e, str) for e in self.image_extensions
        ):
            raise ConfigError(
                f"image_extensions must be a list of strings, got {self.image_extensions!r}"
            )

    @property
    def threshold_s(self) -> float:
        """Length in seconds above which ``long_video="auto"`` switches to long mode."""
        if self.long_threshold_s is not None:
            return self.long_threshold_s
        return self.max_frames / self.fps


@dataclass(frozen=True)
class MarkStyle:
    """Look of a coarse-correspondence mark: a filled disc with the object id written on it.

    The radius scales with the view (``radius_frac`` of its short side, at least ``min_radius``
    pixels) so the mark survives the resize to ~480² pixels.
    """

    radius_frac: float = 0.04
    min_radius: int = 8
    outline: tuple[int, int, int] | None = (0, 0, 0)
    outline_width: int = 1
    draw_text: bool = True

    def __post_init__(self) -> None:
        check_range("marks.radius_frac", self.radius_frac, above=0)
        check_range("marks.min_radius", self.min_radius, integer=True, above=0)
        check_number("marks.outline_width", self.outline_width, integer=True)
        if self.outline_width < 0:
            raise ConfigError(f"marks.outline_width must be >= 0, got {self.outline_width!r}")
        if self.outline is not None:
            _check_rgb("marks.outline", self.outline, integer=True)
        check_bool("marks.draw_text", self.draw_text)


@dataclass(frozen=True)
class MultiViewOptions:
    """Multi-view 3D scenes: views are sized like video frames (one common size for all views)."""

    frame: VideoOptions = field(default_factory=VideoOptions)
    max_views: int = 64  # uniformly subsampled beyond
    marks: MarkStyle = field(default_factory=MarkStyle)
    min_mask_area: int = 1  # objects covering fewer pixels in a view get no mark there

    def __post_init__(self) -> None:
        for name, cls in (("frame", VideoOptions), ("marks", MarkStyle)):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(
                    f"{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__} "
                    "(multiview_options_from_dict builds one from a dict)"
                )
        check_range("max_views", self.max_views, integer=True, above=0)
        check_number("min_mask_area", self.min_mask_area, integer=True)


# Serialisation (processor_config.json next to the model's weights) -----------------------------


def options_to_dict(options) -> dict:
    """A frozen options dataclass -> plain JSON-able dict (tuples become lists)."""
    import dataclasses

    return dataclasses.asdict(options)


def _tuples(cls, data: dict) -> dict:
    import dataclasses

    out = dict(data)
    for f in dataclasses.fields(cls):
        if f.name in out and isinstance(out[f.name], list):
            out[f.name] = tuple(out[f.name])
    return out


def _from_dict(cls, data: dict | None):
    import dataclasses

    if data is None:
        return None
    check_mapping(cls.__name__, data)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {unknown}")
    return cls(**_tuples(cls, data))


def image_options_from_dict(data: dict | None) -> ImageOptions | None:
    return _from_dict(ImageOptions, data)


def video_options_from_dict(data: dict | None) -> VideoOptions | None:
    return _from_dict(VideoOptions, data)


def multiview_options_from_dict(data: dict | None) -> MultiViewOptions | None:
    if data is None:
        return None
    check_mapping("MultiViewOptions", data)
    data = dict(data)
    frame = video_options_from_dict(data.pop("frame", None)) or VideoOptions()
    marks = _from_dict(MarkStyle, data.pop("marks", None)) or MarkStyle()
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(MultiViewOptions)})
    if unknown:
        raise ConfigError(f"unknown MultiViewOptions keys: {unknown}")
    return MultiViewOptions(frame=frame, marks=marks, **data)
