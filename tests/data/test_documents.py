"""The document tasks need native resolution: the legibility argument, measured.

Text is PIL's bitmap font (6 x 11 px glyphs, 1 px strokes). We render each digit at four
sub-pixel phases (x, y offsets of 0 or 1 native pixel) on a 768 px page and compare glyph
patches with a template matcher that may re-align by whole pixels:

- native: every phase re-aligns exactly (distance 0) and digits are >= 3 ink-pixels apart, so a
  nearest-template reader is 100% correct.
- resized to a fixed 384 x 384 (2x down, antialiased): a one-pixel shift becomes a half-pixel
  shift that no re-alignment can undo, and the change this causes to a digit is larger than
  the difference between the two closest different digits; nearest-template reading drops far
  below 100% (~40% with bilinear). A reader (a model) that only sees the 384 px image cannot
  separate phase from identity, which is why the documents tasks use 448-768 px pages.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from oryx_mllm.data.synthetic import generate
from oryx_mllm.data.synthetic.common import bitmap_font
from oryx_mllm.errors import ConfigError

DIGITS = "0123456789"
PHASES = [(0, 0), (1, 0), (0, 1), (1, 1)]


def _glyph(d: str, size: int, phase: tuple[int, int], method) -> np.ndarray:
    page = Image.new("L", (768, 768), 255)
    ImageDraw.Draw(page).text((100 + phase[0], 100 + phase[1]), d, font=bitmap_font(), fill=0)
    if size != 768:
        page = page.resize((size, size), method)
    s = size / 768
    ink = 1 - np.asarray(page, dtype=np.float32) / 255
    y0, x0 = int(100 * s), int(100 * s)
    return ink[y0 - 2 : y0 + int(11 * s) + 3, x0 - 2 : x0 + int(6 * s) + 3]


def _dist(p: np.ndarray, q: np.ndarray) -> float:
    """L1 distance after the best whole-pixel re-alignment (+-1 px)."""
    return min(
        float(np.abs(np.roll(p, (dy, dx), (0, 1)) - q).sum())
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


def _legibility(size: int, method) -> tuple[float, float, float]:
    glyphs = {ph: {d: _glyph(d, size, ph, method) for d in DIGITS} for ph in PHASES}
    templates = glyphs[(0, 0)]
    intra = max(_dist(glyphs[ph][d], templates[d]) for d in DIGITS for ph in PHASES)
    inter = min(_dist(templates[a], templates[b]) for a in DIGITS for b in DIGITS if a != b)
    hits = [
        min(DIGITS, key=lambda b, g=glyphs[ph][a]: _dist(g, templates[b])) == a
        for a in DIGITS
        for ph in PHASES
    ]
    return intra, inter, float(np.mean(hits))


def test_digits_legible_at_native_resolution():
    intra, inter, acc = _legibility(768, Image.Resampling.BILINEAR)
    assert intra == 0.0
    assert inter >= 3.0
    assert acc == 1.0


@pytest.mark.parametrize("method", [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC])
def test_digits_illegible_after_fixed_384_resize(method):
    intra, inter, acc = _legibility(384, method)
    assert intra > inter  # sub-pixel phase changes a digit more than changing the digit does
    assert acc < 0.7


def test_document_pages_are_high_resolution_with_small_text():
    for task in ("documents/line_code", "documents/key_lookup", "documents/table"):
        for i in range(5):
            s = generate(task, 0, i)
            w, h = s.media.size
            assert 448 <= w <= 768 and 448 <= h <= 768
            assert s.answer.isdigit() or s.answer.isalpha()


def test_line_code_answer_matches_meta():
    for i in range(20):
        s = generate("documents/line_code", 3, i)
        k = s.meta["line"]
        assert f"line {k}" in s.question
        assert s.answer == s.meta["codes"][k - 1] and s.answer.isdigit() and 4 <= len(s.answer) <= 6
        assert s.meta["lines"][k - 1].split()[:2] == [str(k), s.answer]


def _ink_rows(img: Image.Image) -> np.ndarray:
    """Rows of the page that carry ink (the paper is >= 232 in every channel)."""
    return np.flatnonzero((np.asarray(img.convert("L")) < 150).any(axis=1))


def test_line_code_max_lines_one_draws_one_line():
    for i in range(5):
        s = generate("documents/line_code", 3, i, page_sides=(256,), max_lines=1)
        assert s.meta["codes"] == [s.answer] and "line 1" in s.question
        rows = _ink_rows(s.media)
        assert rows.max() - rows.min() < 11  # one line of 6 x 11 px glyphs


def test_line_code_scale_magnifies_the_font():
    s1 = generate("documents/line_code", 3, 0, page_sides=(256,), max_lines=1)
    s3 = generate("documents/line_code", 3, 0, page_sides=(256,), max_lines=1, scale=3)
    assert s3.answer == s1.answer  # the same page drawn larger
    h1, h3 = (np.ptp(_ink_rows(s.media)) + 1 for s in (s1, s3))
    assert h3 == 3 * h1


def test_line_code_on_a_grid_puts_one_character_in_each_cell():
    s = generate("documents/line_code", 3, 0, page_sides=(256,), max_lines=16, pitch=16)
    ink = np.asarray(s.media.convert("L")) < 150
    cells = ink.reshape(16, 16, 16, 16).any(axis=(1, 3))  # [row, col]: any ink in the cell
    want = np.zeros_like(cells)
    for text, (x, y) in zip(s.meta["lines"], s.meta["line_xy"], strict=True):
        assert x % 16 == 0 and y % 16 == 0 and len(text) <= 16 - x // 16
        for j, ch in enumerate(text):
            want[y // 16, x // 16 + j] = ch != " "
    assert (cells == want).all()
    assert s.answer in s.meta["lines"][s.meta["line"] - 1]


def test_line_code_fit_crops_the_page_to_its_text():
    for i in range(5):
        s = generate("documents/line_code", 3, i, page_sides=(256,), max_lines=1, pitch=16, fit=32)
        (x, y), text = s.meta["line_xy"][0], s.meta["lines"][0]
        w, h = s.media.size
        assert s.meta["size"] == (w, h) and w % 32 == 0 and h % 32 == 0
        assert w - 32 < x + 16 * len(text) <= w and h - 32 < y + 16 <= h


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pitch": 8},  # smaller than a glyph
        {"pitch": 32, "page_sides": (256,)},  # 9 cells of code and number do not fit
        {"fit": 32},  # fit needs pitch
        {"pitch": 16, "fit": 0},
    ],
)
def test_line_code_rejects_bad_grid_options(kwargs):
    with pytest.raises(ConfigError, match="line_code"):
        generate("documents/line_code", 3, 0, **{"page_sides": (256,), **kwargs})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_lines": 0},
        {"max_lines": 31},
        {"scale": 0},
        {"scale": 5},
        {"scale": 4, "page_sides": (64,)},
        {"scale": 4, "page_sides": (256,)},  # the codes would run off the page's right edge
        {"page_sides": ()},
    ],
)
def test_line_code_rejects_bad_page_options(kwargs):
    with pytest.raises(ConfigError, match="line_code"):
        generate("documents/line_code", 3, 0, **kwargs)


def test_key_lookup_answer_matches_meta():
    for i in range(20):
        s = generate("documents/key_lookup", 3, i)
        assert f"'{s.meta['key']}'" in s.question or f"{s.meta['key']} number" in s.question
        assert s.answer == s.meta["fields"][s.meta["key"]]["code"]


def test_bar_chart_answers():
    for i in range(30):
        s = generate("documents/bar_chart", 3, i)
        bars = s.meta["bars"]
        if s.meta["kind"] == "tallest":
            assert bars[s.answer] == max(bars.values())
        elif s.meta["kind"] == "shortest":
            assert bars[s.answer] == min(bars.values())
        else:
            assert s.answer in {str(v) for v in bars.values()}


def test_table_answers():
    for i in range(20):
        s = generate("documents/table", 3, i)
        item, qty, code = s.meta["rows"][s.meta["row"]]
        assert s.answer == (qty if s.meta["kind"] == "qty" else item)
        assert (item in s.question) if s.meta["kind"] == "qty" else (code in s.question)
