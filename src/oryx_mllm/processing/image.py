"""Still images: decoding any user input into an RGB picture, the size policy of the released
checkpoints, and the two views (low-res + native high-res) the model consumes.

Size policy (reproduces ``../shared/reference/oryx_reference_resize.json``):

- high-res view: native size. A side under ``min_side`` (32) first scales the image so that
  side becomes ``upscale_to`` (64); more than ``max_pixels`` (1536²) scales it down to
  ``max_pixels`` (aspect kept); each side is then floored to ``multiple`` (32).
- low-res view: the *high-res size* scaled (up or down) to ``lowres_pixels`` (384²), sides
  floored to ``lowres_multiple`` (32).

Where the original floors a side to 0 and crashes (extreme aspect ratios), a side is never
smaller than one multiple; if that raise pushes the view over its pixel budget, the long side is
shortened to fit. Nothing changes for sizes where the original worked.

Decoding policy (:func:`load_image`): EXIF orientation applied; alpha composited onto a
background colour (white by default); palette, greyscale, 1-bit, CMYK, YCbCr converted to RGB;
16-bit and float greyscale rescaled to 8 bits (not clipped). Everything that goes wrong raises
:class:`~oryx_mllm.errors.ImageDecodeError` (or a subclass) naming the source and the problem.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from oryx_mllm.compression_policy import check_ratio
from oryx_mllm.errors import (
    ImageDecodeError,
    ImageNotFoundError,
    ImageTooLargeError,
    InvalidInputError,
    OryxError,
    UnsupportedModalityError,
)
from oryx_mllm.processing.options import PATCH_SIZE, RESAMPLING, ImageOptions
from oryx_mllm.processing.types import VisualInput

ImageLike = str | Path | bytes | bytearray | Image.Image | np.ndarray | torch.Tensor

_MAX_SIDE = 1 << 40  # sizes beyond this are nonsense, not images


# ----------------------------------------------------------------------------------------------
# Sizing (pure functions of the input size)


def effective_multiple(multiple: int, compression: int = 1) -> int:
    """Side multiple honouring both the policy and the compressor: ``lcm(multiple, 16 * r)``."""
    return math.lcm(multiple, PATCH_SIZE * check_ratio(compression))


def _check_size(w: int, h: int, limit: int = _MAX_SIDE) -> tuple[int, int]:
    try:
        w, h = int(w), int(h)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidInputError(f"image size must be two integers, got ({w!r}, {h!r})") from e
    if not (1 <= w <= limit and 1 <= h <= limit):
        raise InvalidInputError(f"image size must be positive (and sane), got {w}x{h}")
    return w, h


def _scale(w: int, h: int, target_pixels: int) -> tuple[int, int]:
    """Scale ``w x h`` (aspect kept) to about ``target_pixels`` pixels, truncating like int()."""
    s = math.sqrt(target_pixels / (w * h))
    return int(w * s), int(h * s)


def floor_to_multiple(w: int, h: int, multiple: int, max_pixels: int) -> tuple[int, int]:
    """Floor both sides to ``multiple`` but never below one ``multiple``; returns ``(H, W)``.

    Only when the floor is raised (a side below one multiple, where the original crashed) can
    the result exceed ``max_pixels``; then the long side is shortened to fit.
    """
    W = max(multiple, w // multiple * multiple)
    H = max(multiple, h // multiple * multiple)
    if W * H > max_pixels:
        if W >= H:
            W = max(multiple, max_pixels // H // multiple * multiple)
        else:
            H = max(multiple, max_pixels // W // multiple * multiple)
    return H, W


def fit_pixels(w: int, h: int, min_pixels: int, max_pixels: int, multiple: int) -> tuple[int, int]:
    """Scale ``w x h`` into ``[min_pixels, max_pixels]`` (aspect kept), then floor to
    ``multiple`` (see :func:`floor_to_multiple`). Returns ``(H, W)``."""
    w, h = _check_size(w, h, limit=_MAX_SIDE * 1024)  # room for the tiny-side upscale
    if w * h > max_pixels:
        w, h = _scale(w, h, max_pixels)
    elif w * h < min_pixels:
        w, h = _scale(w, h, min_pixels)
    return floor_to_multiple(w, h, multiple, max_pixels)


def resize_highres(
    w: int, h: int, options: ImageOptions | None = None, compression: int = 1
) -> tuple[int, int]:
    """``(H, W)`` of the native-resolution view of a ``w x h`` image."""
    opt = options or ImageOptions()
    w, h = _check_size(w, h)
    if min(w, h) < opt.min_side:  # tiny side: upscale so it becomes `upscale_to`
        ratio = opt.upscale_to / min(w, h)
        w, h = max(1, int(w * ratio)), max(1, int(h * ratio))
    multiple = effective_multiple(opt.multiple, compression)
    return fit_pixels(w, h, 0, max(opt.max_pixels, multiple**2), multiple)


def resize_lowres(
    w: int, h: int, options: ImageOptions | None = None, compression: int = 1
) -> tuple[int, int]:
    """``(H, W)`` of the ~384² overview of a ``w x h`` image (computed from the high-res size,
    as the original does)."""
    opt = options or ImageOptions()
    H, W = resize_highres(w, h, opt, compression)
    multiple = effective_multiple(opt.lowres_multiple, compression)
    budget = max(opt.lowres_pixels, multiple**2)
    return fit_pixels(W, H, budget, budget, multiple)


# ----------------------------------------------------------------------------------------------
# Decoding


def _describe(image: object) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    if isinstance(image, (bytes, bytearray)):
        return f"<{len(image)} bytes>"
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return f"<{type(image).__name__} {tuple(image.shape)}>"
    return f"<{type(image).__name__}>"


def _to_uint8(a: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    """8-bit version of an integer/float/bool pixel array, rescaling (not clipping) wide ranges.

    bool -> {0, 255}; floats with max <= 1 are taken as [0, 1]; data above 255 (or any data when
    ``sixteen_bit``) is taken as 16-bit and divided by 257; negatives clip to 0."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    is_float = a.dtype.kind == "f"
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    hi = float(a.max()) if a.size else 0.0
    if sixteen_bit or hi > 255.0:
        a = a / 257.0
    elif is_float and hi <= 1.0:
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def array_to_pil(a: np.ndarray | torch.Tensor, source: str = "<array>") -> Image.Image:
    """Pixel array -> PIL image. Shapes: ``[H, W]``, ``[H, W, C]`` or (unambiguous) ``[C, H, W]``
    with C in 1, 3, 4. Float arrays in [0, 1] or [0, 255]; 16-bit arrays rescaled."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        a = a.float().numpy() if a.is_floating_point() else a.numpy()
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise ImageDecodeError(f"{source}: unsupported pixel dtype {a.dtype}")
    if a.ndim == 3 and a.shape[-1] not in (1, 3, 4) and a.shape[0] in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # [C, H, W] -> [H, W, C]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ImageDecodeError(f"{source}: array of shape {a.shape} is not an image")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageDecodeError(f"{source}: empty image of shape {a.shape}")
    a = np.ascontiguousarray(_to_uint8(a))
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[a.ndim if a.ndim == 2 else a.shape[-1]]
    return Image.fromarray(a, mode=mode)


def to_rgb(
    im: Image.Image, background: tuple[int, int, int] | None = (255, 255, 255)
) -> Image.Image:
    """Convert any Pillow mode to RGB (see the module docstring for the policy)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":  # 16/32-bit integer or float greyscale
        a = _to_uint8(np.asarray(im), sixteen_bit=mode.startswith("I;16"))
        return Image.fromarray(a, mode="L").convert("RGB")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("PA", "LA", "La", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        if background is None:
            return im.convert("RGB")
        canvas = Image.new("RGBA", im.size, (*background, 255))
        return Image.alpha_composite(canvas, im).convert("RGB")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, HSV ...


def _video_container(head: bytes) -> str | None:
    """The video container that ``head`` (a file's first bytes) starts like, if any."""
    if head[4:8] == b"ftyp":
        return "MP4/MOV"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM/Matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    return None


def _open_file(image: str | Path | bytes | bytearray, source: str) -> Image.Image:
    if isinstance(image, (bytes, bytearray)):
        if len(image) == 0:
            raise ImageDecodeError(f"{source}: zero-byte image data")
        data = bytes(image)
    else:
        path = Path(image)
        if not path.exists():
            raise ImageNotFoundError(f"{source}: no such image file")
        if not path.is_file():
            raise ImageDecodeError(f"{source}: not a regular file")
        if path.stat().st_size == 0:
            raise ImageDecodeError(f"{source}: zero-byte file")
        data = path.read_bytes()  # read once so no file handle outlives this call
    try:
        return Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        if container := _video_container(data[:12]):
            raise UnsupportedModalityError(
                f"{source}: a video ({container}), not an image; pass it as a video "
                "(`--video`, a `video_url` part)"
            ) from None
        raise


def _check_pixels(w: int, h: int, limit: int | None, source: str) -> None:
    if w <= 0 or h <= 0:
        raise ImageDecodeError(f"{source}: image has no pixels ({w}x{h})")
    if limit is not None and w * h > limit:
        raise ImageTooLargeError(
            f"{source}: {w}x{h} = {w * h} pixels exceeds the limit of {limit} "
            "(ImageOptions.max_input_pixels; possible decompression bomb)"
        )


def load_image(image: ImageLike, options: ImageOptions | None = None) -> Image.Image:
    """Decode ``image`` (path, encoded bytes, PIL image, numpy array / tensor) to an RGB image.

    The pixel limit is checked on the header size before pixel data is decoded. Truncated files
    are errors, not silently grey-filled. Multi-frame files (GIF, TIFF pages) give their first
    frame. Raises :class:`ImageDecodeError` (subclasses :class:`ImageNotFoundError`,
    :class:`ImageTooLargeError`) with the source in the message.
    """
    opt = options or ImageOptions()
    source = _describe(image)
    try:
        if isinstance(image, Image.Image):
            im = image
        elif isinstance(image, (np.ndarray, torch.Tensor)):
            if image.ndim >= 2:
                _check_pixels(image.shape[-1], image.shape[-2], opt.max_input_pixels, source)
            im = array_to_pil(image, source)
        elif isinstance(image, (str, Path, bytes, bytearray)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = _open_file(image, source)
        else:
            raise InvalidInputError(f"{source}: not an image (expected path, bytes, PIL, array)")
        _check_pixels(im.width, im.height, opt.max_input_pixels, source)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
            if opt.apply_exif_orientation:
                try:
                    im = ImageOps.exif_transpose(im)
                except Exception:  # a broken EXIF block is not worth rejecting the pixels
                    pass
            rgb = to_rgb(im, opt.alpha_background)
            rgb.load()
    except OryxError:
        raise
    except Exception as e:  # decoders raise OSError, SyntaxError, struct.error, ...
        raise decode_error(e, source) from e
    return rgb


def decode_error(exc: Exception, source: str, what: str | None = None) -> ImageDecodeError:
    """The typed error for PIL failing to decode ``source`` (``what``: the kind of picture
    named in the message, e.g. "instance mask"; an image by default)."""
    if isinstance(exc, Image.DecompressionBombError):
        return ImageTooLargeError(f"{source}: decompression bomb: {exc}")
    prefix = f"{source}: cannot decode {what}: " if what else f"{source}: "
    if isinstance(exc, Image.UnidentifiedImageError):
        return ImageDecodeError(prefix + "not a recognised image format")
    msg = str(exc) or type(exc).__name__
    if "truncated" in msg:
        msg = f"truncated file ({msg})"
    return ImageDecodeError(prefix + (msg if what else f"cannot decode image: {msg}"))


# ----------------------------------------------------------------------------------------------
# Views


def normalize(
    image: Image.Image,
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
    std: tuple[float, float, float] = (0.5, 0.5, 0.5),
) -> torch.Tensor:
    """RGB PIL image -> float32 ``[3, H, W]``, ``(x / 255 - mean) / std``."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())  # [H, W, 3]
    x = x.permute(2, 0, 1).float().div_(255.0)  # [3, H, W]
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - m) / s


def resize(image: Image.Image, hw: tuple[int, int], resample: str = "bicubic") -> Image.Image:
    """Resize to ``(H, W)`` with the named Pillow filter (no-op when already that size)."""
    H, W = hw
    if image.size == (W, H):
        return image
    return image.resize((W, H), RESAMPLING[resample])


def preprocess_image(
    image: ImageLike, options: ImageOptions | None = None, compression: int = 1
) -> VisualInput:
    """One image -> ``VisualInput(modality="image", frames=[low [3,Hl,Wl], high [3,H,W]])``.

    ``compression`` is the compressor's pooling ratio for this image (1 for the released
    models); sides become multiples of ``lcm(32, 16 * compression)``.
    """
    opt = options or ImageOptions()
    source = _describe(image)
    im = load_image(image, opt)
    w, h = im.size
    high_hw = resize_highres(w, h, opt, compression)
    low_hw = resize_lowres(w, h, opt, compression)
    frames = [
        normalize(resize(im, low_hw, opt.resample), opt.mean, opt.std),
        normalize(resize(im, high_hw, opt.resample), opt.mean, opt.std),
    ]
    return VisualInput(
        modality="image",
        frames=frames,
        compression=compression,
        source=source,
        original_size=(w, h),
        meta={"lowres_hw": low_hw, "highres_hw": high_hw},
    )
