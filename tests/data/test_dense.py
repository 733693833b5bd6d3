"""Dense labelled pictures (oryx_mllm.data.synthetic.dense) used to pretrain the tiny OryxViT."""

import numpy as np
import pytest

from oryx_mllm.data.synthetic.common import COLORS
from oryx_mllm.data.synthetic.dense import (
    CLASS_ID,
    DENSE_CLASSES,
    DENSE_KINDS,
    dense_picture,
    dense_stream,
)


@pytest.mark.parametrize("kind", DENSE_KINDS)
def test_pictures_are_deterministic(kind):
    a, b = dense_picture(kind, 3, 7), dense_picture(kind, 3, 7)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, dense_picture(kind, 3, 8).labels) or not np.array_equal(
        np.asarray(a.image), np.asarray(dense_picture(kind, 3, 8).image)
    )


@pytest.mark.parametrize("kind", ["objects", "small_objects"])
def test_shape_labels_mark_exactly_the_pixels_painted_in_that_colour(kind):
    for i in range(5):
        pic = dense_picture(kind, 0, i)
        rgb = np.asarray(pic.image)
        assert pic.labels.shape == rgb.shape[:2]
        for cls in np.unique(pic.labels):
            if cls == 0:
                continue
            color = DENSE_CLASSES[cls].split()[0]
            painted = (rgb == np.array(COLORS[color], dtype=np.uint8)).all(-1)
            assert np.array_equal(painted & (pic.labels == cls), pic.labels == cls)
        # every painted object pixel is labelled (backgrounds are light, never a shape colour)
        for color, value in COLORS.items():
            painted = (rgb == np.array(value, dtype=np.uint8)).all(-1)
            names = {DENSE_CLASSES[c].split()[0] for c in np.unique(pic.labels[painted])}
            assert names <= {color}


def test_needle_digit_labels_cover_the_dark_glyph_pixels():
    found = 0
    for i in range(20):
        pic = dense_picture("needles", 0, i)
        digits = [c for c in np.unique(pic.labels) if DENSE_CLASSES[c].isdigit()]
        if not digits:
            continue
        found += 1
        dark = (np.asarray(pic.image) == 10).all(-1)
        assert np.array_equal(dark, pic.labels == digits[0])
    assert found > 0


def test_page_labels_are_digits_on_ink_pixels():
    ink_pixels = labelled = 0
    for i in range(8):
        pic = dense_picture("pages", 0, i)
        rgb = np.asarray(pic.image).astype(int)
        ink = rgb.max(-1) < 110  # ink is at most (59, 59, 98); the paper at least 232
        names = {DENSE_CLASSES[c] for c in np.unique(pic.labels)} - {"background"}
        assert names and all(n.isdigit() for n in names)
        assert (ink[pic.labels > 0]).all()
        ink_pixels, labelled = ink_pixels + ink.sum(), labelled + (pic.labels > 0).sum()
    assert ink_pixels > labelled  # letters are ink too, and stay background


def test_views_label_only_solids():
    for i in range(5):
        names = {DENSE_CLASSES[c] for c in np.unique(dense_picture("views", 0, i).labels)}
        assert names - {"background"}
        assert all(n == "background" or n.split()[1] in ("sphere", "cube") for n in names)


def test_stream_follows_the_weights_and_rejects_bad_ones():
    s = dense_stream({"needles": 1.0, "objects": 0.0}, seed=0)
    sizes = {next(s).image.size for _ in range(10)}
    assert sizes == {(64, 64)}
    with pytest.raises(ValueError, match="positive"):
        next(dense_stream({"needles": 0.0}, seed=0))
    with pytest.raises(ValueError, match="unknown dense picture kind"):
        dense_picture("faces", 0, 0)


def test_class_table():
    assert DENSE_CLASSES[0] == "background"
    assert CLASS_ID["orange cube"] == DENSE_CLASSES.index("orange cube")
    assert len(DENSE_CLASSES) == 1 + 6 * 5 + 10


def test_shards_together_are_the_stream():
    kinds = {"needles": 1.0, "small_objects": 1.0}
    whole = dense_stream(kinds, seed=5)
    shards = [dense_stream(kinds, seed=5, shard=(k, 2)) for k in range(2)]
    for i in range(6):
        a, b = next(whole), next(shards[i % 2])
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
