"""Multi-view scenes and coarse-correspondence marks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from oryx_mllm.errors import (
    ImageDecodeError,
    InvalidInputError,
    UnsupportedModalityError,
    ViewDecodeError,
    ViewModalityError,
)
from oryx_mllm.processing import (
    MultiViewOptions,
    draw_correspondence_marks,
    mark_color,
    mark_locations,
    preprocess_views,
)
from oryx_mllm.processing.multiview import mark_radius

H, W = 240, 320


def _scene(num_views: int = 3):
    """Grey views with two objects (ids 3 and 12) that move between views; object 12 is
    hidden in the last view. Returns views, masks and the centroids per view."""
    views, masks, centroids = [], [], []
    for v in range(num_views):
        m = np.zeros((H, W), np.int32)
        m[40:100, 30 + 50 * v : 110 + 50 * v] = 3  # a box moving right
        c = {3: (70 + 50 * v - 0.5, 69.5)}
        if v < num_views - 1:
            m[150:210, 250 - 40 * v : 300 - 40 * v] = 12
            c[12] = (275 - 40 * v - 0.5, 179.5)
        rng = np.random.default_rng(v)
        views.append(rng.integers(90, 110, (H, W, 3), dtype=np.uint8))
        masks.append(m)
        centroids.append(c)
    return views, masks, centroids


def _disc_pixels(im: Image.Image, x: float, y: float, r: int) -> np.ndarray:
    """Pixels on a ring inside the disc (away from the centred text)."""
    a = np.asarray(im)
    pts = []
    for ang in np.linspace(0, 2 * np.pi, 16, endpoint=False):
        px, py = x + 0.8 * r * np.cos(ang), y + 0.8 * r * np.sin(ang)
        pts.append(a[int(round(py)), int(round(px))])
    return np.array(pts)


def test_same_id_same_object_across_views():
    views, masks, centroids = _scene()
    marked = draw_correspondence_marks(views, instance_masks=masks)
    r = mark_radius(W, H)
    assert len(marked) == 3
    for im, cents in zip(marked, centroids, strict=True):
        for k, (x, y) in cents.items():
            ring = _disc_pixels(im, x, y, r)
            assert (np.abs(ring.astype(int) - mark_color(k)).max(axis=1) <= 1).mean() > 0.9, k
    # object 12 is absent in the last view: no mark there
    x, y = 275 - 0.5, 179.5
    assert not (
        np.abs(_disc_pixels(marked[2], x, y, r).astype(int) - mark_color(12)).max(axis=1) <= 1
    ).any()
    assert mark_locations(masks) == [{k: pytest.approx(v) for k, v in c.items()} for c in centroids]


def test_points_give_the_same_marks_as_masks():
    views, masks, centroids = _scene()
    points = [[(x, y, k) for k, (x, y) in c.items()] for c in centroids]
    a = draw_correspondence_marks(views, instance_masks=masks)
    b = draw_correspondence_marks(views, points=points)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))


def test_colours_differ_and_mark_on_nonconvex_object():
    assert len({mark_color(k) for k in range(1, 40)}) == 39
    m = np.zeros((100, 100), np.int32)
    m[10:90, 10:20] = 5  # an L shape: its centroid is off the object
    m[80:90, 10:90] = 5
    (loc,) = mark_locations([m])
    x, y = loc[5]
    assert m[int(round(y)), int(round(x))] == 5


def test_preprocess_views_common_size_and_marks():
    views, masks, centroids = _scene(4)
    views[1] = np.asarray(Image.fromarray(views[1]).resize((160, 120)))  # a smaller view
    masks[1] = masks[1][::2, ::2]
    v = preprocess_views(views, compression=2, marks=masks)
    assert v.modality == "multiview" and v.compression == 2 and len(v.frames) == 4
    assert {tuple(f.shape) for f in v.frames} == {(3, 192, 320)}  # 320x240 -> video policy
    assert v.num_tokens() == 2 + 4 * (6 * 11 + 1)
    assert v.meta["mark_locations"][0].keys() == {3, 12}
    plain = preprocess_views(views[:2], MultiViewOptions(max_views=1))
    assert len(plain.frames) == 1 and plain.meta["mark_locations"] is None


def test_bad_marks_are_typed():
    views, masks, _ = _scene()
    with pytest.raises(InvalidInputError):
        draw_correspondence_marks(views, instance_masks=masks[:2])
    with pytest.raises(InvalidInputError):
        draw_correspondence_marks(views)
    with pytest.raises(InvalidInputError):
        draw_correspondence_marks(views, instance_masks=[m[:10] for m in masks])
    with pytest.raises(InvalidInputError):
        draw_correspondence_marks(views, points=[[(1, 2)]] * 3)
    with pytest.raises(InvalidInputError):
        preprocess_views([])


@pytest.mark.parametrize("x, y", [(1e30, 10), (-1, 10), (10, H), (W, 0)])
def test_points_outside_their_view_are_refused_and_named(x, y):
    views, _, _ = _scene(2)
    with pytest.raises(
        InvalidInputError, match=r"view 1: the point of object 7 .* outside the 320x240"
    ):
        draw_correspondence_marks(views, points=[[(5, 5, 7)], [(x, y, 7)]])


@pytest.mark.parametrize("mode", ["L", "I;16", "P"])
def test_instance_mask_files_load_as_ids(tmp_path, mode):
    from oryx_mllm.processing.multiview import load_instance_mask

    _, masks, _ = _scene(1)
    im = Image.fromarray(masks[0].astype(np.uint8), "L")
    if mode == "I;16":
        im = Image.fromarray(masks[0].astype(np.uint16))
    elif mode == "P":
        im = im.convert("P")
    path = tmp_path / "mask.png"
    im.save(path)
    got = load_instance_mask(path)
    assert got.dtype == np.int32 and np.array_equal(got, masks[0])


def test_bad_instance_mask_files_are_typed_and_named(tmp_path):
    from oryx_mllm.errors import ImageDecodeError, ImageNotFoundError
    from oryx_mllm.processing.multiview import load_instance_mask

    rgb = tmp_path / "colour.png"
    Image.new("RGB", (8, 8), (3, 3, 3)).save(rgb)
    with pytest.raises(ImageDecodeError, match="colour.png.*single-channel"):
        load_instance_mask(rgb)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageDecodeError, match="broken.png"):
        load_instance_mask(broken)
    with pytest.raises(ImageNotFoundError, match="missing.png"):
        load_instance_mask(tmp_path / "missing.png")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ImageDecodeError) as info:
        load_instance_mask(text)
    assert str(info.value) == f"{text}: cannot decode instance mask: not a recognised image format"


def test_negative_instance_ids_are_refused(tmp_path):
    from oryx_mllm.errors import InvalidInputError
    from oryx_mllm.processing.multiview import load_instance_mask, mask_locations

    ids = np.zeros((8, 8), np.int32)
    ids[2:4, 2:4] = -5
    path = tmp_path / "negative.tiff"
    Image.fromarray(ids).save(path)  # mode "I": 32-bit signed ids
    with pytest.raises(InvalidInputError, match="negative.tiff: instance ids must be >= 0.*-5"):
        load_instance_mask(path)
    with pytest.raises(InvalidInputError, match="instance ids must be >= 0"):
        mask_locations(ids)


def test_an_unreadable_view_is_named_by_its_index():
    good = Image.new("RGB", (32, 32), (200, 50, 50))
    with pytest.raises(ViewDecodeError, match=r"^view 2: <12 bytes>: not a recognised") as info:
        preprocess_views([good, good, b"not an image"])
    assert info.value.view == 2
    assert isinstance(info.value, ImageDecodeError)  # callers catching image errors still do


def test_a_video_given_as_a_view_names_the_view(make_video):
    good = Image.new("RGB", (64, 64), (90, 90, 90))
    with pytest.raises(UnsupportedModalityError, match=r"^view 1: .*clip\.mp4: a video") as info:
        preprocess_views([good, make_video("clip.mp4")])
    assert isinstance(info.value, ViewModalityError) and info.value.view == 1
