"""Images: reference size policy, decoding of every mode, typed errors for bad files."""

from __future__ import annotations

import io
import json
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from oryx_mllm.errors import (
    ImageDecodeError,
    ImageNotFoundError,
    ImageTooLargeError,
    InvalidInputError,
    OryxError,
    UnsupportedModalityError,
)
from oryx_mllm.processing import (
    ImageOptions,
    VideoOptions,
    load_image,
    normalize,
    preprocess_image,
    resize_highres,
    resize_lowres,
    resize_video_frame,
)


@pytest.fixture(scope="module")
def reference(reference_dir):
    return json.loads((reference_dir / "oryx_reference_resize.json").read_text())


SIZERS = {
    "image_highres_hw": lambda w, h: resize_highres(w, h),
    "image_lowres_hw": lambda w, h: resize_lowres(w, h),
    "video_frame_hw": lambda w, h: resize_video_frame(w, h, VideoOptions(), long=False),
    "video_long_frame_hw": lambda w, h: resize_video_frame(w, h, VideoOptions(), long=True),
}
MULTIPLE = {
    "image_highres_hw": 32,
    "image_lowres_hw": 32,
    "video_frame_hw": 64,
    "video_long_frame_hw": 128,
}


@pytest.mark.parametrize("column", list(SIZERS))
def test_resize_matches_reference(reference, column):
    checked = 0
    for entry in reference:
        w, h = entry["input_wh"]
        got = SIZERS[column](w, h)
        want = entry[column]
        if isinstance(want, str):  # the original crashed: we give a valid size instead
            assert want.startswith("error")
            H, W = got
            m = MULTIPLE[column]
            assert H > 0 and W > 0 and H % m == 0 and W % m == 0, (w, h, got)
            if column.startswith("video"):
                assert H * W <= 480 * 480
        else:
            assert got == tuple(want), (column, w, h, got, want)
            checked += 1
    assert checked >= 8


def test_error_entries_are_handled_as_documented():
    # 2048x64 in long mode: the short side becomes one multiple (128), the long side is cut to
    # stay within 480² pixels.
    assert resize_video_frame(2048, 64, long=True) == (128, 1792)
    assert resize_video_frame(20, 300, long=True) == (1024, 128)


@pytest.mark.parametrize("r", [1, 2, 4, 8])
@pytest.mark.parametrize("wh", [(1, 1), (333, 517), (1920, 1080), (2048, 64), (10, 100000)])
def test_compression_makes_sides_divisible(r, wh):
    for H, W in (resize_highres(*wh, compression=r), resize_lowres(*wh, compression=r)):
        assert H % (16 * r) == 0 and W % (16 * r) == 0 and H % 32 == 0
    for long in (False, True):
        H, W = resize_video_frame(*wh, long=long, compression=r)
        assert H % (16 * r) == 0 and W % (16 * r) == 0


@pytest.mark.parametrize("bad", [(0, 10), (10, -1), ("a", 3)])
def test_bad_sizes_are_typed(bad):
    with pytest.raises(InvalidInputError):
        resize_highres(*bad)


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)  # left half red, right half blue
    a[:, 20:] = (0, 0, 255)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (20, 40)  # portrait after rotation
    top, bottom = np.asarray(out)[2, 10], np.asarray(out)[-3, 10]
    assert top[0] > 200 and top[2] < 60  # red on top after a CW turn
    assert bottom[2] > 200 and bottom[0] < 60


def test_rgba_composited_on_white():
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., 0] = 255  # red, fully transparent
    out = load_image(_png(Image.fromarray(a, "RGBA")))
    assert out.mode == "RGB" and np.asarray(out)[0, 0].tolist() == [255, 255, 255]
    dropped = load_image(_png(Image.fromarray(a, "RGBA")), ImageOptions(alpha_background=None))
    assert np.asarray(dropped)[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: Image.new("L", (5, 4), 77), [77, 77, 77]),
        (lambda: Image.new("1", (5, 4), 1), [255, 255, 255]),
        (lambda: Image.new("LA", (5, 4), (10, 255)), [10, 10, 10]),
        (lambda: Image.new("CMYK", (5, 4), (0, 255, 255, 0)), [255, 0, 0]),
        (lambda: Image.new("YCbCr", (5, 4), (76, 85, 255)), None),
        (lambda: Image.new("RGB", (5, 4), (51, 102, 153)).convert("P"), [51, 102, 153]),
        (lambda: Image.fromarray(np.full((4, 5), 65535, np.uint16)), [255, 255, 255]),
        (lambda: Image.fromarray(np.full((4, 5), 0.5, np.float32), "F"), [128, 128, 128]),
    ],
)
def test_modes_convert_to_rgb(make, expected):
    im = make()
    for source in (im, _png(im) if im.mode not in ("CMYK", "YCbCr", "F") else im):
        out = load_image(source)
        assert out.mode == "RGB" and out.size == (5, 4)
        if expected is not None:
            assert np.abs(np.asarray(out)[1, 1].astype(int) - expected).max() <= 2


def test_16bit_png_is_rescaled_not_clipped(tmp_path):
    a = np.full((4, 4), 32896, np.uint16)  # 128 * 257: mid grey in 16 bits
    path = tmp_path / "g16.png"
    Image.fromarray(a).save(path)
    assert np.asarray(load_image(path))[0, 0].tolist() == [128, 128, 128]


def test_palette_with_transparency():
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 255, 0] * 256)
    out = load_image(_png(im, transparency=0))
    assert np.asarray(out)[0, 0].tolist() == [255, 255, 255]


def test_arrays_and_tensors():
    hwc = np.zeros((6, 7, 3), np.uint8)
    assert load_image(hwc).size == (7, 6)
    chw = torch.rand(3, 6, 7)
    assert load_image(chw).size == (7, 6)
    assert load_image(np.ones((6, 7), bool)).size == (7, 6)
    with pytest.raises(ImageDecodeError):
        load_image(np.zeros((6, 7, 5)))
    with pytest.raises(ImageDecodeError):
        load_image(np.zeros((0, 7, 3)))


@pytest.mark.parametrize("wh", [(1, 1), (100000, 10), (10, 100000), (37, 2000)])
def test_extreme_sizes_give_valid_inputs(wh):
    v = preprocess_image(Image.new("RGB", wh, (9, 99, 199)))
    low, high = v.frames
    for f in (low, high):
        assert f.dtype == torch.float32 and f.shape[0] == 3
        assert f.shape[1] % 32 == 0 and f.shape[2] % 32 == 0 and f.shape[1] > 0
    assert high.shape[1] * high.shape[2] <= 1536 * 1536
    assert v.num_tokens() > 3 and v.original_size == wh


def test_pixel_limit_is_typed(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    with pytest.raises(ImageTooLargeError, match="big.png"):
        load_image(path, ImageOptions(max_input_pixels=300 * 200 - 1))
    assert load_image(path, ImageOptions(max_input_pixels=300 * 200)).size == (300, 200)
    with pytest.raises(ImageTooLargeError):
        load_image(np.zeros((100, 100, 3), np.uint8), ImageOptions(max_input_pixels=99))


def _bomb(side: int) -> bytes:
    """A PNG whose header claims ``side x side`` pixels, with almost no data behind it."""
    data = bytearray(_png(Image.new("L", (1, 1))))
    data[16:24] = side.to_bytes(4, "big") * 2  # IHDR width, height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def test_decompression_bomb_header_is_rejected_before_decoding():
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        load_image(_bomb(100000))  # beyond Pillow's own hard limit
    with pytest.raises(ImageTooLargeError, match="10000x10000"):
        load_image(_bomb(10000), ImageOptions(max_input_pixels=10**7))  # our configured limit


def test_bad_files_name_the_file(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"this is not an image at all" * 10)
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        good, format="JPEG"
    )
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    for path, problem in [
        (empty, "zero-byte"),
        (corrupt, "not a recognised"),
        (truncated, "truncated"),
    ]:
        with pytest.raises(ImageDecodeError) as info:
            load_image(path)
        assert path.name in str(info.value) and problem in str(info.value)
    with pytest.raises(ImageNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageDecodeError, match="zero-byte"):
        load_image(b"")
    with pytest.raises(OryxError):
        load_image(12345)  # type: ignore[arg-type]


def test_preprocess_image_views_and_normalisation():
    im = Image.new("RGB", (640, 480), (255, 0, 128))
    v = preprocess_image(im)
    assert v.modality == "image" and [tuple(f.shape) for f in v.frames] == [
        (3, 320, 416),
        (3, 480, 640),
    ]
    assert torch.allclose(
        v.frames[1][:, 0, 0], torch.tensor([1.0, -1.0, 128 / 127.5 - 1]), atol=1e-6
    )
    assert v.num_tokens() == 3 + 20 * 27 + 30 * 41
    v2 = preprocess_image(im, compression=2)
    assert v2.compression == 2 and all(f.shape[1] % 32 == 0 for f in v2.frames)
    x = normalize(Image.new("RGB", (2, 3), (0, 0, 0)))
    assert x.shape == (3, 3, 2) and x.dtype == torch.float32 and float(x.max()) == -1.0


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv"])
def test_a_video_given_as_an_image_is_a_modality_error(make_video, name):
    path = make_video(name)
    kind = "MP4/MOV" if name.endswith(".mp4") else "WebM/Matroska"
    for source in (path, path.read_bytes()):  # a path and the same file's bytes
        with pytest.raises(UnsupportedModalityError, match=f"a video \\({kind}\\), not an image"):
            load_image(source)


def test_unrecognised_bytes_are_still_a_decode_error():
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        load_image(b"RIFF\x00\x00\x00\x00WAVEfmt ")  # a RIFF file, but audio, not AVI
