"""Multi-view 3D scenes (paper 3.2.1): several views of one scene, processed like video frames,
optionally with *coarse correspondences* drawn on them.

Coarse correspondences: an object tracked across views (by a tracker, or from a dataset's
instance masks such as ScanNet) gets the same numbered mark in every view where it is visible,
so the model can tell that "3" in view 1 and "3" in view 4 are the same chair. A mark is a
filled disc in a colour derived from the object id, with the id written on it, centred on the
object's location in that view:

- from an instance mask (``[H, W]`` ints, 0 = background, k = object k): the mask centroid when
  it lies on the object, otherwise the object pixel nearest to the centroid (so non-convex
  objects such as an L-shaped sofa get the mark *on* them); objects smaller than ``min_area``
  pixels in a view are left unmarked there;
- from points ``(x, y, object_id)`` in pixel coordinates of that view (first point wins when an
  id repeats).

:func:`draw_correspondence_marks` works on full-resolution views and is meant for building
training data as well as inference; :func:`preprocess_views` draws the marks (if given), then
resizes every view to one common size (the video-frame policy applied to the first view).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from oryx_mllm.errors import (
    ImageDecodeError,
    InvalidInputError,
    UnsupportedModalityError,
    ViewDecodeError,
    ViewModalityError,
)
from oryx_mllm.processing.image import (
    ImageLike,
    _check_pixels,
    _describe,
    _open_file,
    decode_error,
    load_image,
    normalize,
    resize,
)
from oryx_mllm.processing.options import ImageOptions, MarkStyle, MultiViewOptions
from oryx_mllm.processing.types import VisualInput
from oryx_mllm.processing.video import resize_video_frame

Point = tuple[float, float, int]  # (x, y, object_id), pixels of the view
Locations = dict[int, tuple[float, float]]  # object_id -> (x, y)
Marks = Sequence[np.ndarray] | Sequence[Sequence[Point]]

_GOLDEN = 0.618033988749895


def mark_color(object_id: int) -> tuple[int, int, int]:
    """The mark colour of an object id: golden-ratio hue steps, so nearby ids differ strongly."""
    hue = (int(object_id) * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def _text_color(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


# ----------------------------------------------------------------------------------------------
# Where marks go


# single-channel PIL modes whose pixel values are instance ids (P: palette indices)
_MASK_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")


def load_instance_mask(mask: str | Path | bytes, options: ImageOptions | None = None) -> np.ndarray:
    """An instance-mask image file (PNG/TIFF, single channel: 0 = background, k = object k; 8 or
    16 bit, or a palette image) -> ``[H, W]`` int32 array for :func:`draw_correspondence_marks`.

    Raises :class:`ImageDecodeError` (missing, empty or corrupt file, or a colour image: ids must
    be single-channel values) naming the file.
    """
    opt = options or ImageOptions()
    source = _describe(mask)
    try:
        im = _open_file(mask, source)
        _check_pixels(im.width, im.height, opt.max_input_pixels, source)
        im.load()
    except InvalidInputError:
        raise
    except Exception as e:  # PIL raises many types for bad data
        raise decode_error(e, source, "instance mask") from e
    if im.mode not in _MASK_MODES:
        raise ImageDecodeError(
            f"{source}: an instance mask must be a single-channel image of object ids "
            f"(0 = background), got mode {im.mode}"
        )
    ids = np.asarray(im, dtype=np.int32)
    _check_ids(ids, source)
    return ids


def _check_ids(mask: np.ndarray, source: str) -> None:
    if mask.size and mask.min() < 0:
        raise InvalidInputError(
            f"{source}: instance ids must be >= 0 (0 = background), found {int(mask.min())}"
        )


def mask_locations(mask: np.ndarray | torch.Tensor, min_area: int = 1) -> Locations:
    """Mark location of every object in one instance mask ``[H, W]`` (0 = background)."""
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.ndim != 2 or m.dtype.kind not in "biu":
        raise InvalidInputError(
            f"instance mask must be an [H, W] integer array, got {m.dtype} {m.shape}"
        )
    _check_ids(m, "instance mask")
    out: Locations = {}
    for k in np.unique(m):
        if k == 0:
            continue
        ys, xs = np.nonzero(m == k)
        if len(xs) < max(1, min_area):
            continue
        cx, cy = float(xs.mean()), float(ys.mean())
        if m[int(round(cy)), int(round(cx))] != k:  # centroid off the object: nearest pixel on it
            j = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
            cx, cy = float(xs[j]), float(ys[j])
        out[int(k)] = (cx, cy)
    return out


def point_locations(points: Sequence[Point]) -> Locations:
    """Mark locations from ``(x, y, object_id)`` points (first point of an id wins)."""
    out: Locations = {}
    for p in points:
        try:
            x, y, k = p
            x, y, k = float(x), float(y), int(k)
        except (TypeError, ValueError) as e:
            raise InvalidInputError(f"a point must be (x, y, object_id), got {p!r}") from e
        if not (np.isfinite(x) and np.isfinite(y)):
            raise InvalidInputError(f"point coordinates must be finite, got {p!r}")
        out.setdefault(k, (x, y))
    return out


def _is_mask(item: object) -> bool:
    """An ``[H, W]`` integer array/tensor is a mask; anything else is a list of points."""
    if isinstance(item, torch.Tensor):
        return item.ndim == 2 and not item.is_floating_point()
    return isinstance(item, np.ndarray) and item.ndim == 2 and item.dtype.kind in "biu"


def mark_locations(
    instance_masks: Sequence[np.ndarray] | None = None,
    points: Sequence[Sequence[Point]] | None = None,
    min_area: int = 1,
) -> list[Locations]:
    """Per-view ``{object_id: (x, y)}`` from instance masks *or* points (exactly one)."""
    if (instance_masks is None) == (points is None):
        raise InvalidInputError("give exactly one of instance_masks or points")
    if instance_masks is not None:
        return [mask_locations(m, min_area) for m in instance_masks]
    return [point_locations(p) for p in points]


# ----------------------------------------------------------------------------------------------
# Drawing


def mark_radius(width: int, height: int, style: MarkStyle | None = None) -> int:
    """Disc radius in pixels for a view of this size."""
    style = style or MarkStyle()
    return max(style.min_radius, round(style.radius_frac * min(width, height)))


def draw_marks(
    image: Image.Image, locations: Locations, style: MarkStyle | None = None
) -> Image.Image:
    """A copy of ``image`` with one numbered disc per object (see the module docstring)."""
    style = style or MarkStyle()
    out = image.convert("RGB")  # convert() always copies
    draw = ImageDraw.Draw(out)
    r = mark_radius(out.width, out.height, style)
    for k, (x, y) in sorted(locations.items()):
        fill = mark_color(k)
        box = (x - r, y - r, x + r, y + r)
        draw.ellipse(
            box, fill=fill, outline=style.outline, width=style.outline_width if style.outline else 0
        )
        if not style.draw_text:
            continue
        text, size = str(k), max(6, int(1.2 * r))
        while True:  # shrink the text until it fits inside the disc
            font = _font(size)
            left, top, right, bottom = draw.textbbox((x, y), text, font=font, anchor="mm")
            if (right - left) <= 1.5 * r and (bottom - top) <= 1.5 * r or size <= 6:
                break
            size = max(6, int(size * 0.8))
        draw.text((x, y), text, fill=_text_color(fill), font=font, anchor="mm")
    return out


def draw_correspondence_marks(
    views: Sequence[ImageLike],
    instance_masks: Sequence[np.ndarray] | None = None,
    points: Sequence[Sequence[Point]] | None = None,
    style: MarkStyle | None = None,
    min_area: int = 1,
    image_options: ImageOptions | None = None,
) -> list[Image.Image]:
    """Draw coarse correspondences: the same numbered mark on the same object in every view.

    Args:
        views: the scene's views (anything :func:`load_image` accepts).
        instance_masks: per view an ``[H, W]`` integer mask the size of that view, 0 =
            background, k = object k (object ids must be consistent across views).
        points: per view a list of ``(x, y, object_id)`` in that view's pixels.
        style: disc size / outline / text (:class:`MarkStyle`).
        min_area: objects covering fewer mask pixels in a view are not marked in that view.

    Returns one RGB image per view, full resolution, marks drawn.
    """
    if (instance_masks is None) == (points is None):
        raise InvalidInputError("give exactly one of instance_masks or points")
    per_view = instance_masks if instance_masks is not None else points
    if len(per_view) != len(views):
        raise InvalidInputError(f"{len(views)} views but marks for {len(per_view)} views")
    out = []
    for i, (view, item) in enumerate(zip(views, per_view, strict=True)):
        im = load_image(view, image_options)
        locs = _view_locations(i, im, item, instance_masks is not None, min_area)
        out.append(draw_marks(im, locs, style))
    return out


def _view_locations(i: int, im: Image.Image, item, is_mask: bool, min_area: int) -> Locations:
    """View ``i``'s mark locations from its instance mask or its points, checked against the
    view: a mask must have the view's size and every point must lie inside it."""
    if is_mask:
        if tuple(item.shape) != (im.height, im.width):
            raise InvalidInputError(
                f"view {i}: mask shape {tuple(item.shape)} != image (H, W) {(im.height, im.width)}"
            )
        return mask_locations(item, min_area)
    locs = point_locations(item)
    for k, (x, y) in sorted(locs.items()):
        if not (0 <= x < im.width and 0 <= y < im.height):
            raise InvalidInputError(
                f"view {i}: the point of object {k} at ({x:g}, {y:g}) lies outside the "
                f"{im.width}x{im.height} view (points are pixel coordinates in their view)"
            )
    return locs


# ----------------------------------------------------------------------------------------------
# Model input


def _uniform_indices(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return [round(i * (n - 1) / (k - 1)) for i in range(k)] if k > 1 else [0]


def preprocess_views(
    views: Sequence[ImageLike],
    options: MultiViewOptions | None = None,
    compression: int = 2,
    marks: Marks | None = None,
) -> VisualInput:
    """A multi-view scene -> ``VisualInput(modality="multiview", frames=[[3, H, W] x V])``.

    Views are loaded one at a time, marked (``marks``: per view an instance mask ``[H, W]`` or a
    list of ``(x, y, object_id)`` points, see :func:`draw_correspondence_marks`), and resized to
    the common size that the video-frame policy gives the first view, with sides multiples of
    ``16 * compression``. More than ``options.max_views`` views are uniformly subsampled.
    """
    opt = options or MultiViewOptions()
    if isinstance(views, (str, bytes)) or not isinstance(views, Sequence) or len(views) == 0:
        raise InvalidInputError("views must be a non-empty list of images")
    if marks is not None and len(marks) != len(views):
        raise InvalidInputError(f"{len(views)} views but marks for {len(marks)} views")
    keep = _uniform_indices(len(views), opt.max_views)
    img_opt = ImageOptions(max_input_pixels=opt.frame.max_input_pixels)

    frames: list[torch.Tensor] = []
    locations: list[Locations] = []
    hw: tuple[int, int] | None = None
    original: tuple[int, int] | None = None
    for i in keep:
        try:
            im = load_image(views[i], img_opt)
        except ImageDecodeError as e:
            raise ViewDecodeError(f"view {i}: {e}", view=i) from e
        except UnsupportedModalityError as e:  # e.g. a video file given as a view
            raise ViewModalityError(f"view {i}: {e}", view=i) from e
        if marks is not None:
            locs = _view_locations(i, im, marks[i], _is_mask(marks[i]), opt.min_mask_area)
            im = draw_marks(im, locs, opt.marks)
            locations.append(locs)
        if hw is None:
            original = im.size
            hw = resize_video_frame(
                im.width, im.height, opt.frame, long=False, compression=compression
            )
        frames.append(normalize(resize(im, hw, opt.frame.resample), opt.frame.mean, opt.frame.std))
    return VisualInput(
        modality="multiview",
        frames=frames,
        compression=compression,
        source=f"<scene of {len(views)} views>",
        original_size=original,
        meta={
            "view_indices": keep,
            "num_views": len(views),
            "max_views": opt.max_views,
            "mark_locations": locations if marks is not None else None,
        },
    )
