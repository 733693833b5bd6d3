"""Documents: pages, forms, bar charts and tables with small text at high resolution.

What this family tests: **native-resolution reading** (paper Sec. 3.1.1). All text uses PIL's
bitmap font (glyphs 6 x 11 px, strokes 1 px wide) on pages of 448-768 px. A model that resizes
every image to a fixed 384 x 384 shrinks a 768 px page by 2x: each glyph becomes ~3 x 5.5 px,
the 1 px strokes become half-intensity smudges whose look depends on the glyph's sub-pixel
phase, and digits such as 3/8, 5/6 or 1/7 are no longer reliably distinguishable
(``tests/data/test_documents.py`` measures this). OryxViT at native resolution sees every stroke.

Tasks (all ``modality="image"``):

- ``documents/line_code``: numbered lines of 4-6 digit codes; "What is the code on line 3?" -> code.
- ``documents/key_lookup``: a form with ``KEY: 12345`` fields scattered over the page;
  "What number follows 'ID'?" -> code.
- ``documents/bar_chart``: labelled bars with their values printed on top; "Which bar is
  tallest/shortest?" -> label, "What value is written above the kiwi bar?" -> value.
- ``documents/table``: a ruled table item | qty | code; "What is the qty of grape?" -> number,
  "Which item has code 4821?" -> label.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from oryx_mllm.data.synthetic.common import (
    COLORS,
    GLYPH_H,
    GLYPH_W,
    LABELS,
    SyntheticSample,
    big_text,
    choice,
    draw_text,
    make_question,
    sample_id,
    sample_without_replacement,
    text_size,
)
from oryx_mllm.errors import ConfigError

PAGE_SIDES: tuple[int, ...] = (448, 512, 576, 640, 704, 768)
FORM_KEYS: tuple[str, ...] = ("ID", "REF", "NO", "PIN", "ZIP", "TEL", "ACC", "INV")
FILLER_WORDS: tuple[str, ...] = (
    "ref",
    "qty",
    "lot",
    "box",
    "bin",
    "row",
    "set",
    "tag",
    "cell",
    "unit",
)

LINE_TEMPLATES = (
    "What is the code on line {k}?",
    "Read the code on line {k}.",
    "Which code is written on line {k}?",
)
KEY_TEMPLATES = (
    "What number follows '{key}'?",
    "What is the {key} number?",
    "Read the number after '{key}'.",
)
TALLEST_TEMPLATES = ("Which bar is tallest?", "Which bar has the largest value?")
SHORTEST_TEMPLATES = ("Which bar is shortest?", "Which bar has the smallest value?")
BAR_VALUE_TEMPLATES = (
    "What value is written above the {label} bar?",
    "What is the value of the {label} bar?",
)
TABLE_QTY_TEMPLATES = ("What is the qty of {label}?", "What quantity is listed for {label}?")
TABLE_ITEM_TEMPLATES = ("Which item has code {code}?", "Which item is listed with code {code}?")


def _code(rng: np.random.Generator, min_len: int = 4, max_len: int = 6) -> str:
    n = int(rng.integers(min_len, max_len + 1))
    first = str(int(rng.integers(1, 10)))  # no leading zero: the answer reads like a number
    return first + "".join(str(int(d)) for d in rng.integers(0, 10, size=n - 1))


def _distinct_codes(
    rng: np.random.Generator, n: int, min_len: int = 4, max_len: int = 6
) -> list[str]:
    codes: list[str] = []
    while len(codes) < n:
        c = _code(rng, min_len, max_len)
        if c not in codes:
            codes.append(c)
    return codes


@lru_cache(maxsize=1)
def _grain_tile() -> np.ndarray:
    """A fixed 256 x 256 tile of paper grain (values 0..12), shared by all pages."""
    return np.random.default_rng(0x9A9E).integers(0, 13, size=(256, 256), dtype=np.uint8)


def paper(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Off-white paper with a faint per-pixel grain (keeps the page from being trivially flat).
    The grain is the shared tile at a random offset: much cheaper than fresh noise per page."""
    w, h = size
    base = rng.integers(232, 244, size=3)  # + grain 0..12 stays <= 255
    tile = np.roll(_grain_tile(), tuple(int(v) for v in rng.integers(0, 256, size=2)), axis=(0, 1))
    grain = Image.fromarray(np.tile(tile, (-(-h // 256), -(-w // 256)))[:h, :w])
    # Per-channel offset via a lookup table (much faster than numpy broadcasting to RGB).
    return Image.merge(
        "RGB", [grain.point([min(255, v + int(b)) for v in range(256)]) for b in base]
    )


def ink_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    v = int(rng.integers(0, 60))
    return (v, v, v + int(rng.integers(0, 40)))


def numbered_line(rng: np.random.Generator, k: int, code: str) -> str:
    """Line ``k`` of a ``line_code`` page: ``' 3  48213   lot 72'`` (number, code, filler)."""
    return f"{k:>2}  {code:<6}  {choice(rng, FILLER_WORDS)} {int(rng.integers(1, 1000))}"


def _page_size(rng: np.random.Generator, sides: tuple[int, ...] = PAGE_SIDES) -> tuple[int, int]:
    return choice(rng, sides), choice(rng, sides)


def line_code(
    rng: np.random.Generator,
    seed: int,
    index: int,
    page_sides=PAGE_SIDES,
    max_lines: int = 30,
    scale: int = 1,
    pitch: int | None = None,
    fit: int | None = None,
) -> SyntheticSample:
    """Numbered lines ``' 3  48213  lot 72'``; ask for the code on one line.

    ``max_lines`` (1-30) and ``scale`` (the font magnified 1-4 times, nearest neighbour) make
    easier pages for learning probes; the defaults are the family's small-text pages.
    ``pitch`` (px) sets the text on a grid instead, like a typewriter page: every character in
    its own ``pitch`` x ``pitch`` cell (glyph centred), lines one cell apart, the text's origin
    on a multiple of ``pitch`` and each line cut to the columns that fit. With ``pitch=16`` and
    page sides that are multiples of 32, each OryxViT patch holds exactly one character.
    ``fit`` (px, with ``pitch``) then crops the page to its text, each side rounded up to a
    multiple of ``fit``: a one-line page is one line tall, as native resolution allows."""
    if not 1 <= max_lines <= 30:
        raise ConfigError(f"line_code max_lines must be 1..30, got {max_lines}")
    if not 1 <= scale <= 4:
        raise ConfigError(f"line_code scale must be 1..4, got {scale}")
    if not page_sides:
        raise ConfigError("line_code page_sides must list at least one side")
    if fit is not None and (pitch is None or fit < 1):
        raise ConfigError(f"line_code fit must be a positive number of px with pitch, got {fit}")
    if pitch is not None:
        return _line_code_on_grid(rng, seed, index, page_sides, max_lines, scale, pitch, fit)
    # the page must hold, wherever the text starts (x0 < 60, y0 < 50), the code column (' 3  '
    # and up to 6 digits) and one line; checked on the smallest side, so no seed fails alone
    need = max(59 + 10 * GLYPH_W * scale, 61 + (GLYPH_H + 10) * scale)
    if min(page_sides) < need:
        raise ConfigError(
            f"line_code: pages of {min(page_sides)} px are too small for the text at scale {scale}"
            f" (at least {need} px)"
        )
    w, h = _page_size(rng, page_sides)
    img = paper(rng, (w, h))
    draw = ImageDraw.Draw(img)
    ink = ink_colour(rng)
    spacing = int(rng.integers(GLYPH_H + 4, GLYPH_H + 11)) * scale
    x0, y0 = int(rng.integers(12, 60)), int(rng.integers(12, 50))
    fit = (h - y0 - 12) // spacing  # >= 1 by the check above
    n_lines = int(min(max_lines, fit, rng.integers(min(8, max_lines), max_lines + 1)))
    codes = _distinct_codes(rng, n_lines)
    lines, line_xy = [], []
    for k, code in enumerate(codes, start=1):
        text = numbered_line(rng, k, code)
        xy = (x0, y0 + (k - 1) * spacing)
        if scale == 1:
            draw_text(draw, xy, text, ink)
        else:
            glyphs = big_text(text, scale, ink)
            img.paste(glyphs, xy, glyphs)
        lines.append(text)
        line_xy.append(xy)
    return _ask_for_a_line(rng, seed, index, img, codes, lines, line_xy, scale=scale)


def _line_code_on_grid(
    rng: np.random.Generator,
    seed: int,
    index: int,
    page_sides: tuple[int, ...],
    max_lines: int,
    scale: int,
    pitch: int,
    fit: int | None,
) -> SyntheticSample:
    """``line_code`` with one character per ``pitch`` x ``pitch`` cell (see ``line_code``)."""
    gw, gh = GLYPH_W * scale, GLYPH_H * scale
    if pitch < max(gw, gh):
        raise ConfigError(f"line_code pitch {pitch} px is smaller than a glyph ({gw} x {gh} px)")
    # the smallest page must hold, from the furthest origin (one cell in), a line number, a
    # space and a 6-digit code (9 cells) and one line
    if min(page_sides) < 10 * pitch:
        raise ConfigError(
            f"line_code: pages of {min(page_sides)} px are too small for pitch {pitch}"
            f" (at least {10 * pitch} px)"
        )
    w, h = _page_size(rng, page_sides)
    img = paper(rng, (w, h))
    ink = ink_colour(rng)
    col0, row0 = int(rng.integers(0, 2)), int(rng.integers(0, 2))
    cols, rows = w // pitch - col0, h // pitch - row0
    n_lines = int(min(max_lines, rows, rng.integers(min(8, max_lines), max_lines + 1)))
    codes = _distinct_codes(rng, n_lines)
    glyphs = {}
    lines, line_xy = [], []
    for k, code in enumerate(codes, start=1):
        text = f"{k:>2} {code:<6} {choice(rng, FILLER_WORDS)} {int(rng.integers(1, 1000))}"[:cols]
        xy = (col0 * pitch, (row0 + k - 1) * pitch)  # the line's first cell
        for j, ch in enumerate(text):
            if ch == " ":
                continue
            if ch not in glyphs:
                glyphs[ch] = big_text(ch, scale, ink)
            cell = (xy[0] + j * pitch + (pitch - gw) // 2, xy[1] + (pitch - gh) // 2)
            img.paste(glyphs[ch], cell, glyphs[ch])
        lines.append(text)
        line_xy.append(xy)
    if fit is not None:  # the text's extent, from the page's corner, rounded up to ``fit``
        right = (col0 + max(len(t) for t in lines)) * pitch
        bottom = (row0 + n_lines) * pitch
        w, h = min(w, -(-right // fit) * fit), min(h, -(-bottom // fit) * fit)
        img = img.crop((0, 0, w, h))
    return _ask_for_a_line(rng, seed, index, img, codes, lines, line_xy, scale=scale, pitch=pitch)


def _ask_for_a_line(
    rng: np.random.Generator,
    seed: int,
    index: int,
    page: Image.Image,
    codes: list[str],
    lines: list[str],
    line_xy: list[tuple[int, int]],
    **meta,
) -> SyntheticSample:
    """The ``line_code`` sample of a drawn page: ask for the code on one of its lines.
    ``line_xy``: each line's top-left corner (on a grid: its first cell's) in pixels."""
    k = int(rng.integers(1, len(codes) + 1))
    return SyntheticSample(
        id=sample_id("documents/line_code", seed, index),
        task="documents/line_code",
        modality="image",
        media=page,
        question=make_question(rng, "<image>", LINE_TEMPLATES, k=k),
        answer=codes[k - 1],
        meta={
            "line": k,
            "codes": codes,
            "lines": lines,
            "line_xy": line_xy,
            **meta,
            "size": page.size,
            "digits": codes[k - 1],
        },
    )


def key_lookup(
    rng: np.random.Generator, seed: int, index: int, page_sides=PAGE_SIDES
) -> SyntheticSample:
    """A form with ``KEY: code`` fields in a jittered grid, plus distractor words; ask for a key."""
    task = "documents/key_lookup"
    w, h = _page_size(rng, page_sides)
    img = paper(rng, (w, h))
    draw = ImageDraw.Draw(img)
    ink = ink_colour(rng)
    keys = sample_without_replacement(rng, FORM_KEYS, int(rng.integers(4, len(FORM_KEYS) + 1)))
    codes = _distinct_codes(rng, len(keys))
    cell_w, cell_h = 120, 28  # a field is at most "INV: 123456" = 66 px wide
    cols, rows = max(1, (w - 24) // cell_w), max(1, (h - 24) // cell_h)
    cells = sample_without_replacement(rng, list(range(cols * rows)), len(keys) + 6)
    fields = {}
    for i, cell in enumerate(cells):
        cx = 12 + (cell % cols) * cell_w + int(rng.integers(0, 40))
        cy = 12 + (cell // cols) * cell_h + int(rng.integers(0, cell_h - GLYPH_H))
        if i < len(keys):
            text = f"{keys[i]}: {codes[i]}"
            fields[keys[i]] = {"code": codes[i], "xy": (cx, cy)}
        else:  # distractor: a word and a number with no key
            text = f"{choice(rng, FILLER_WORDS)} {int(rng.integers(1, 100))}"
        draw_text(draw, (cx, cy), text, ink)
    key = choice(rng, keys)
    return SyntheticSample(
        id=sample_id(task, seed, index),
        task=task,
        modality="image",
        media=img,
        question=make_question(rng, "<image>", KEY_TEMPLATES, key=key),
        answer=fields[key]["code"],
        meta={"key": key, "fields": fields, "size": (w, h), "digits": fields[key]["code"]},
    )


def bar_chart(rng: np.random.Generator, seed: int, index: int) -> SyntheticSample:
    """3-6 labelled bars with their values printed on top. The tallest and shortest bars beat
    the runner-up by at least 5 units so the comparison is visible, not a pixel-level tie."""
    task = "documents/bar_chart"
    w, h = _page_size(rng, (448, 512, 576, 640))
    img = paper(rng, (w, h))
    draw = ImageDraw.Draw(img)
    ink = ink_colour(rng)
    n = int(rng.integers(3, 7))
    labels = sample_without_replacement(rng, LABELS, n)
    while True:
        values = [int(v) for v in rng.integers(10, 100, size=n)]
        s = sorted(values)
        if s[-1] - s[-2] >= 5 and s[1] - s[0] >= 5:
            break
    left, right, top, bottom = 40, w - 20, 40, h - 40
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=ink, width=1)
    slot = (right - left) / n
    bar_w = slot * float(rng.uniform(0.4, 0.7))
    scale = (bottom - top - 2 * GLYPH_H) / 100.0
    same_color = rng.random() < 0.5
    color = choice(rng, list(COLORS.values()))
    bars = {}
    for i, (label, v) in enumerate(zip(labels, values)):
        cx = left + slot * (i + 0.5)
        y = bottom - v * scale
        fill = color if same_color else choice(rng, list(COLORS.values()))
        draw.rectangle([cx - bar_w / 2, y, cx + bar_w / 2, bottom - 1], fill=fill)
        vw, _ = text_size(str(v))
        draw_text(draw, (int(cx - vw / 2), int(y - GLYPH_H - 3)), str(v), ink)
        lw, _ = text_size(label)
        draw_text(draw, (int(cx - lw / 2), bottom + 6), label, ink)
        bars[label] = v
    kind = choice(rng, ("tallest", "shortest", "value"))
    if kind == "tallest":
        question = make_question(rng, "<image>", TALLEST_TEMPLATES)
        answer = max(bars, key=bars.get)
    elif kind == "shortest":
        question = make_question(rng, "<image>", SHORTEST_TEMPLATES)
        answer = min(bars, key=bars.get)
    else:
        label = choice(rng, labels)
        question = make_question(rng, "<image>", BAR_VALUE_TEMPLATES, label=label)
        answer = str(bars[label])
    return SyntheticSample(
        id=sample_id(task, seed, index),
        task=task,
        modality="image",
        media=img,
        question=question,
        answer=answer,
        meta={"kind": kind, "bars": bars, "order": labels, "size": (w, h)},
    )


def table(rng: np.random.Generator, seed: int, index: int) -> SyntheticSample:
    """A ruled three-column table (item | qty | code); look a cell up by row or by code."""
    task = "documents/table"
    w, h = _page_size(rng, (448, 512, 576, 640, 704, 768))
    img = paper(rng, (w, h))
    draw = ImageDraw.Draw(img)
    ink = ink_colour(rng)
    row_h = int(rng.integers(GLYPH_H + 6, GLYPH_H + 12))
    n = int(min(len(LABELS), (h - 60) // row_h - 1, rng.integers(4, 11)))
    items = sample_without_replacement(rng, LABELS, n)
    qtys = [str(int(q)) for q in rng.integers(1, 1000, size=n)]
    codes = _distinct_codes(rng, n, 4, 5)
    x0, y0 = int(rng.integers(16, max(17, w - 300))), int(rng.integers(16, 40))
    col_x = [x0, x0 + 70, x0 + 130, x0 + 200]
    rows = [("item", "qty", "code"), *zip(items, qtys, codes)]
    for r, row in enumerate(rows):
        y = y0 + r * row_h
        for c, cell in enumerate(row):
            draw_text(draw, (col_x[c] + 4, y + (row_h - GLYPH_H) // 2), cell, ink)
        draw.line([(col_x[0], y), (col_x[-1], y)], fill=ink)
    y_end = y0 + len(rows) * row_h
    draw.line([(col_x[0], y_end), (col_x[-1], y_end)], fill=ink)
    for x in col_x:
        draw.line([(x, y0), (x, y_end)], fill=ink)
    i = int(rng.integers(n))
    kind = choice(rng, ("qty", "item"))
    if kind == "qty":
        question = make_question(rng, "<image>", TABLE_QTY_TEMPLATES, label=items[i])
        answer = qtys[i]
    else:
        question = make_question(rng, "<image>", TABLE_ITEM_TEMPLATES, code=codes[i])
        answer = items[i]
    return SyntheticSample(
        id=sample_id(task, seed, index),
        task=task,
        modality="image",
        media=img,
        question=question,
        answer=answer,
        meta={"kind": kind, "row": i, "rows": rows[1:], "size": (w, h)},
    )


def _session(sample: SyntheticSample, task: str, followups: list[tuple[str, str]], turns: int):
    """The sample's question plus up to ``turns - 1`` follow-ups (no image placeholder)."""
    sample.id = sample.id.replace(sample.task, task, 1)
    sample.task = task
    sample.turns = followups[: max(0, turns - 1)]
    return sample


def line_session(
    rng: np.random.Generator,
    seed: int,
    index: int,
    page_sides=PAGE_SIDES,
    turns: int = 8,
    max_lines: int = 30,
    scale: int = 1,
    pitch: int | None = None,
    fit: int | None = None,
) -> SyntheticSample:
    """Training only: one ``line_code`` page read line after line in a multi-turn conversation
    (the code of ``turns`` different lines), so a page is encoded once and supervised many times.
    """
    sample = line_code(
        rng,
        seed,
        index,
        page_sides=page_sides,
        max_lines=max_lines,
        scale=scale,
        pitch=pitch,
        fit=fit,
    )
    codes, asked = sample.meta["codes"], sample.meta["line"]
    order = [int(k) + 1 for k in rng.permutation(len(codes)) if int(k) + 1 != asked]
    followups = [(choice(rng, LINE_TEMPLATES).format(k=k), codes[k - 1]) for k in order]
    return _session(sample, "documents/line_session", followups, turns)


def key_session(
    rng: np.random.Generator,
    seed: int,
    index: int,
    page_sides=PAGE_SIDES,
    turns: int = 8,
) -> SyntheticSample:
    """Training only: one ``key_lookup`` form with every key asked in turn."""
    sample = key_lookup(rng, seed, index, page_sides=page_sides)
    fields, asked = sample.meta["fields"], sample.meta["key"]
    keys = [k for k in sample_without_replacement(rng, list(fields), len(fields)) if k != asked]
    followups = [(choice(rng, KEY_TEMPLATES).format(key=k), fields[k]["code"]) for k in keys]
    return _session(sample, "documents/key_session", followups, turns)


TASKS = {
    "documents/line_code": line_code,
    "documents/key_lookup": key_lookup,
    "documents/bar_chart": bar_chart,
    "documents/table": table,
}
# Training-only tasks: not part of the family (held-out evaluation asks single questions).
TRAIN_TASKS = {"documents/line_session": line_session, "documents/key_session": key_session}

__all__ = [
    "GLYPH_W",
    "PAGE_SIDES",
    "TASKS",
    "TRAIN_TASKS",
    "bar_chart",
    "ink_colour",
    "key_lookup",
    "line_code",
    "numbered_line",
    "paper",
    "table",
]
