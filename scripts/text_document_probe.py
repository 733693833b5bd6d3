"""Can the tiny LLM learn to read a document page when the page is given as exact text?

The documents counterpart of ``scripts/text_scene_probe.py`` and ``text_video_probe.py``:
vision is taken out. A ``documents/line_code`` page (numbered lines ``' 3  48213   lot 72'``) is
written as text in one of two forms, followed by the page's questions ("What is the code on
line 3?"):

- ``lines``: the page's lines in order, one text line each (what an OCR engine would hand over);
- ``cells``: the page cut into ``--cell`` px squares, as OryxViT cuts it into patches, written in
  raster order: each square as the characters whose centre falls in it (`` 48``), an empty square
  as `` .``, the end of a row of squares as `` |``. The characters are exact, but a line's code
  is spread over several squares among the empty ones, as over several visual tokens.
- ``fragments``: the ``cells`` form without its empty squares (the row ends stay): the same
  split of a line's characters over squares, without the hundreds of `` .`` around them.

The recipe's 4-layer Qwen2-shaped LLM is trained from scratch on ``documents/line_session``
pages (up to 8 questions per page) and scored by teacher-forced exact match of the answer tokens
on held-out ``documents/line_code`` pages (test seed 1,000,000) of the same kind. If it reads the
page here, the documents' 0% with vision (docs/default_model.md, "Documents on a GPU") is a matter
of what the visual tokens carry; if not, the LLM itself is the limit in this budget.

    OMP_NUM_THREADS=1 python scripts/text_document_probe.py --form cells --steps 1500 --bf16
"""

from __future__ import annotations

import argparse
import json

import torch
from text_scene_probe import add_llm_args, check_llm_args, run  # scripts/ is on sys.path
from tiny_probe import parse_lines_schedule

from oryx_mllm.data.synthetic import TEST_SEED_MIN, generate
from oryx_mllm.data.synthetic.common import GLYPH_H, GLYPH_W
from oryx_mllm.data.tokenizer import build_tokenizer
from oryx_mllm.errors import ConfigError


def lines_text(meta: dict) -> str:
    return "page:" + "".join(f"\n{line}" for line in meta["lines"]) + "\n"


def cells_text(meta: dict, cell: int, empty: bool = True) -> str:
    """The page as raster squares of ``cell`` px (see the module docstring); ``empty=False``
    leaves the empty squares out (the ``fragments`` form)."""
    w, h = meta["size"]
    scale = meta["scale"]
    cols, rows = -(-w // cell), -(-h // cell)
    squares: dict[tuple[int, int], str] = {}
    for text, (x, y) in zip(meta["lines"], meta["line_xy"], strict=True):
        row = (y + GLYPH_H * scale // 2) // cell
        for i, ch in enumerate(text):
            if ch != " ":
                col = (x + i * GLYPH_W * scale + GLYPH_W * scale // 2) // cell
                squares[(row, col)] = squares.get((row, col), "") + ch
    parts = ["page:"]
    for r in range(rows):
        for c in range(cols):
            if (r, c) in squares:
                parts.append(f" {squares[(r, c)]}")
            elif empty:
                parts.append(" .")
        parts.append(" |")
    return "".join(parts) + "\n"


def encode(tok, sample, form: str, cell: int) -> tuple[list[int], list[int], list[int]]:
    """Token ids, labels (-100 except on answers and their newline), no merged ids (all -1)."""
    if form == "lines":
        page = lines_text(sample.meta)
    else:
        page = cells_text(sample.meta, cell, empty=form == "cells")
    ids = tok.encode(page)
    labels = [-100] * len(ids)
    for q, a in [(sample.question, sample.answer), *sample.turns]:
        q_ids = tok.encode(f"Q: {q.removeprefix('<image>').strip()}\nA:")
        a_ids = tok.encode(f" {a}\n")
        ids += q_ids + a_ids
        labels += [-100] * len(q_ids) + a_ids
    return ids, labels, [-1] * len(ids)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_llm_args(p, steps=1500, lr=5e-4)
    p.add_argument("--form", choices=("lines", "cells", "fragments"), default="cells")
    p.add_argument(
        "--cell", type=int, default=16, help="square size of the cells and fragments forms, px"
    )
    p.add_argument(
        "--documents-kwargs",
        default='{"page_sides": [256], "max_lines": 15}',
        help="line_code page kwargs, JSON (the fourteenth session's 256² pages by default)",
    )
    p.add_argument(
        "--lines-schedule",
        default=None,
        help="a curriculum of training pages, 'STEP:MAX_LINES,...' (e.g. '1:1,300:4,800:8,1300:15'):"
        " from each STEP on, pages have that max_lines; held-out pages keep --documents-kwargs",
    )
    a = p.parse_args()
    check_llm_args(p, a)
    if a.cell < 1:
        p.error("--cell must be >= 1")
    try:
        kw = json.loads(a.documents_kwargs)
        generate("documents/line_code", a.seed, 0, **kw)
    except (json.JSONDecodeError, ConfigError, TypeError) as e:
        p.error(f"--documents-kwargs: {e}")
    schedule: list[tuple[int, int]] = []
    if a.lines_schedule:
        try:
            schedule = parse_lines_schedule(a.lines_schedule, kw)
        except (ValueError, ConfigError) as e:
            p.error(f"--lines-schedule: {e}")

    def train_kwargs(step: int) -> dict:
        lines = [n for s, n in schedule if s <= step]
        return {**kw, "max_lines": lines[-1]} if lines else kw

    torch.manual_seed(a.seed)
    tok = build_tokenizer()
    held = [
        ("documents/line_code", encode(tok, generate("documents/line_code", TEST_SEED_MIN, i, **kw),
                                       a.form, a.cell))
        for i in range(a.eval_per_task)
    ]  # fmt: skip
    lengths = [len(r[0]) for _, r in held]
    print(f"held-out sequences: {min(lengths)}-{max(lengths)} tokens", flush=True)
    run(
        a,
        tok.pad_token_id,
        held,
        lambda index, step: encode(
            tok,
            generate("documents/line_session", a.seed, index, **train_kwargs(step)),
            a.form,
            a.cell,
        ),
    )


if __name__ == "__main__":
    main()
