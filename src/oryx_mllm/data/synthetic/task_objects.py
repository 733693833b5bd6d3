"""Objects: 1-6 coloured shapes on a plain or noisy background, 128-256 px.

What this family tests: basic **low-resolution perception** -- colour, shape, counting and coarse
position -- that must survive the smallest images and the strongest pooling. Shapes have a
radius of at least ~6% of the image side, so they remain identifiable at 128 px.

Tasks (all ``modality="image"``):

- ``objects/color``: "What colour is the triangle?" (the asked shape occurs exactly once) -> colour.
- ``objects/count``: "How many red objects / circles / red circles are there?" -> digit (may be 0).
- ``objects/position``: "Is the red circle left or right of the blue square?" -> left/right;
  "... above or below ..." -> above/below; "In which half of the image is ...?" -> left/right/
  top/bottom. Compared objects are separated by at least one radius along the asked axis.
- ``objects/exists``: "Is there a green square?" -> yes/no.

``meta["objects"]`` lists every drawn object as ``{"shape", "color", "x", "y", "r"}`` (pixels).
"""

from __future__ import annotations

import numpy as np
from PIL import ImageDraw

from oryx_mllm.checks import check_range
from oryx_mllm.data.synthetic.common import (
    COLOR_NAMES,
    COLORS,
    SHAPES,
    SyntheticSample,
    choice,
    draw_shape,
    make_question,
    place_circles,
    plural,
    random_background,
    sample_id,
)
from oryx_mllm.errors import ConfigError

IMAGE_SIDES: tuple[int, ...] = (128, 160, 192, 224, 256)
# The most objects a scene may hold: scenes of exactly 12 discs (radius 6.5-12% of the side) were
# placed in 200 of 200 tries; at 16, 6 of 200 could not be.
MAX_OBJECTS = 12

COLOR_TEMPLATES = (
    "What colour is the {shape}?",
    "What is the colour of the {shape}?",
    "Which colour does the {shape} have?",
)
COUNT_COLOR_TEMPLATES = ("How many {color} objects are there?", "Count the {color} objects.")
COUNT_SHAPE_TEMPLATES = ("How many {shapes} are there?", "Count the {shapes} in the image.")
COUNT_BOTH_TEMPLATES = ("How many {color} {shapes} are there?", "Count the {color} {shapes}.")
LR_TEMPLATES = (
    "Is the {a} left or right of the {b}?",
    "Is the {a} on the left or the right of the {b}?",
)
UD_TEMPLATES = (
    "Is the {a} above or below the {b}?",
    "Is the {a} higher or lower than the {b}? Answer above or below.",
)
HALF_TEMPLATES = (
    "In which half of the image is the {a}, {h1} or {h2}?",
    "Is the {a} in the {h1} or the {h2} half?",
)
DESCRIBE_TEMPLATES = ("List the objects from left to right.", "Which objects are there?")
EXISTS_TEMPLATES = ("Is there a {color} {shape}?", "Does the image contain a {color} {shape}?")


def scene(
    rng: np.random.Generator,
    n_min: int = 1,
    n_max: int = 6,
    sides=IMAGE_SIDES,
    cell: int | None = None,
):
    """Draw a random scene; returns ``(image, objects)``.

    ``cell``: place every object in its own ``cell`` x ``cell`` square of a grid over the image
    (centred, +-6% jitter, radius 36-44% of the cell) instead of anywhere; with ``cell`` equal to
    a model's patch size each object fills one patch.
    """
    check_range("n_min", n_min, integer=True, at_least=1)
    check_range("n_max", n_max, integer=True, at_least=n_min, at_most=MAX_OBJECTS)
    if cell is not None:
        check_range("cell", cell, integer=True, at_least=1)
        if any(side // cell < 2 for side in sides):
            raise ConfigError(f"cell {cell} leaves fewer than 2 x 2 cells in a side of {sides}")
    side = choice(rng, sides)
    img = random_background(rng, (side, side))
    draw = ImageDraw.Draw(img)
    n = int(rng.integers(n_min, n_max + 1))
    if cell is None:
        discs = place_circles(rng, n, (side, side), (side * 0.065, side * 0.12))
    else:
        per_row = side // cell
        cells = rng.choice(per_row * per_row, size=min(n, per_row * per_row), replace=False)
        discs = []
        for c in cells.tolist():
            jx, jy = rng.uniform(-0.06, 0.06, size=2) * cell
            cx = (c % per_row + 0.5) * cell + jx
            cy = (c // per_row + 0.5) * cell + jy
            r = rng.uniform(0.36, 0.44) * cell
            discs.append((round(float(cx), 1), round(float(cy), 1), round(float(r), 1)))
    objects = []
    for cx, cy, r in discs:
        obj = {
            "shape": choice(rng, SHAPES),
            "color": choice(rng, COLOR_NAMES),
            "x": cx,
            "y": cy,
            "r": r,
        }
        draw_shape(draw, obj["shape"], cx, cy, r, COLORS[obj["color"]])
        objects.append(obj)
    return img, objects


def _sample(task, seed, index, img, question, answer, objects, **meta) -> SyntheticSample:
    return SyntheticSample(
        id=sample_id(task, seed, index),
        task=task,
        modality="image",
        media=img,
        question=question,
        answer=answer,
        meta={"objects": objects, "size": img.size, **meta},
    )


def _ask_color(rng: np.random.Generator, objects: list[dict]):
    """``(question, answer, meta)`` about the colour of a shape that occurs once, or None."""
    unique = [s for s in SHAPES if sum(o["shape"] == s for o in objects) == 1]
    if not unique:
        return None
    shape = choice(rng, unique)
    target = next(o for o in objects if o["shape"] == shape)
    q = make_question(rng, "<image>", COLOR_TEMPLATES, shape=shape)
    return q, target["color"], {"shape": shape}


def color(
    rng: np.random.Generator,
    seed: int,
    index: int,
    n_max: int = 6,
    sides=IMAGE_SIDES,
    cell: int | None = None,
) -> SyntheticSample:
    """Colour of the shape that occurs exactly once in the scene (of 1 to ``n_max`` objects)."""
    while True:
        img, objects = scene(rng, n_max=n_max, sides=sides, cell=cell)
        asked = _ask_color(rng, objects)
        if asked:
            q, answer, meta = asked
            return _sample("objects/color", seed, index, img, q, answer, objects, **meta)


def _ask_count(rng: np.random.Generator, objects: list[dict]):
    """Count objects of a colour, of a shape, or of both (the answer may be 0)."""
    kind = choice(rng, ("color", "shape", "both"))
    # Ask about an attribute present in the scene 80% of the time, a random one otherwise.
    ref = choice(rng, objects)
    c = ref["color"] if rng.random() < 0.8 else choice(rng, COLOR_NAMES)
    s = ref["shape"] if rng.random() < 0.8 else choice(rng, SHAPES)
    if kind == "color":
        q = make_question(rng, "<image>", COUNT_COLOR_TEMPLATES, color=c)
        n = sum(o["color"] == c for o in objects)
    elif kind == "shape":
        q = make_question(rng, "<image>", COUNT_SHAPE_TEMPLATES, shapes=plural(s))
        n = sum(o["shape"] == s for o in objects)
    else:
        q = make_question(rng, "<image>", COUNT_BOTH_TEMPLATES, color=c, shapes=plural(s))
        n = sum(o["color"] == c and o["shape"] == s for o in objects)
    query = {"color": c if kind != "shape" else None, "shape": s if kind != "color" else None}
    return q, str(n), {"kind": kind, "query": query, "count": n}


def count(
    rng: np.random.Generator, seed: int, index: int, sides=IMAGE_SIDES, cell: int | None = None
) -> SyntheticSample:
    """Count objects of a colour, of a shape, or of both (the answer may be 0)."""
    img, objects = scene(rng, sides=sides, cell=cell)
    q, answer, meta = _ask_count(rng, objects)
    return _sample("objects/count", seed, index, img, q, answer, objects, **meta)


def _name(o: dict) -> str:
    return f"{o['color']} {o['shape']}"


def _ask_position(rng: np.random.Generator, objects: list[dict], side: int, kind: str):
    """Relative (``kind`` "lr"/"ud") or absolute ("half") position question, or None when the
    scene has no object (pair) that can be asked about unambiguously."""
    names = [_name(o) for o in objects]
    nameable = [o for o in objects if names.count(_name(o)) == 1]
    if kind == "half":
        axis = choice(rng, ("x", "y"))
        ok = [o for o in nameable if abs(o[axis] - side / 2) >= o["r"]]
        if not ok:
            return None
        a = choice(rng, ok)
        h1, h2 = ("left", "right") if axis == "x" else ("top", "bottom")
        if rng.random() < 0.5:
            h1, h2 = h2, h1
        q = make_question(rng, "<image>", HALF_TEMPLATES, a=_name(a), h1=h1, h2=h2)
        first = a[axis] < side / 2
        answer = ("left" if first else "right") if axis == "x" else ("top" if first else "bottom")
        return q, answer, {"kind": kind, "a": _name(a), "axis": axis}
    axis = "x" if kind == "lr" else "y"
    pairs = [
        (a, b)
        for a in nameable
        for b in nameable
        if a is not b and abs(a[axis] - b[axis]) >= max(a["r"], b["r"])
    ]
    if not pairs:
        return None
    a, b = choice(rng, pairs)
    templates = LR_TEMPLATES if kind == "lr" else UD_TEMPLATES
    q = make_question(rng, "<image>", templates, a=_name(a), b=_name(b))
    if kind == "lr":
        answer = "left" if a["x"] < b["x"] else "right"
    else:
        answer = "above" if a["y"] < b["y"] else "below"
    return q, answer, {"kind": kind, "a": _name(a), "b": _name(b), "axis": axis}


def position(
    rng: np.random.Generator, seed: int, index: int, sides=IMAGE_SIDES, cell: int | None = None
) -> SyntheticSample:
    """Relative (left/right, above/below) or absolute (which half) position of named objects."""
    kind = choice(rng, ("lr", "ud", "half"))
    while True:
        img, objects = scene(rng, n_min=1 if kind == "half" else 2, sides=sides, cell=cell)
        asked = _ask_position(rng, objects, img.size[0], kind)
        if asked:
            q, answer, meta = asked
            return _sample("objects/position", seed, index, img, q, answer, objects, **meta)


def _ask_exists(rng: np.random.Generator, objects: list[dict]):
    """Is a given colour+shape combination present? Balanced yes/no."""
    present = {(o["color"], o["shape"]) for o in objects}
    if rng.random() < 0.5:
        c, s = sorted(present)[int(rng.integers(len(present)))]
    else:
        absent = [(c, s) for c in COLOR_NAMES for s in SHAPES if (c, s) not in present]
        c, s = absent[int(rng.integers(len(absent)))]
    q = make_question(rng, "<image>", EXISTS_TEMPLATES, color=c, shape=s)
    return q, "yes" if (c, s) in present else "no", {"query": {"color": c, "shape": s}}


def exists(
    rng: np.random.Generator, seed: int, index: int, sides=IMAGE_SIDES, cell: int | None = None
) -> SyntheticSample:
    """Is a given colour+shape combination present? Balanced yes/no."""
    img, objects = scene(rng, sides=sides, cell=cell)
    q, answer, meta = _ask_exists(rng, objects)
    return _sample("objects/exists", seed, index, img, q, answer, objects, **meta)


def describe_objects(objects: list[dict]) -> str:
    """Every object as "colour shape", left to right: ``"red triangle, blue square"``."""
    return ", ".join(_name(o) for o in sorted(objects, key=lambda o: o["x"]))


def qa_session(
    rng: np.random.Generator,
    seed: int,
    index: int,
    turns: int = 6,
    describe: bool = True,
    sides=IMAGE_SIDES,
    cell: int | None = None,
    n_max: int = 6,
) -> SyntheticSample:
    """Training only: ONE scene with several questions of every kind, as a multi-turn
    conversation (``SyntheticSample.turns``).

    A sample then carries many answers per encoded image instead of one: the visual tokens are
    computed once and supervised ``turns`` times, which made a model trained from scratch on a
    CPU learn object questions much faster (docs/default_model.md). With ``describe`` one of the turns asks for the list of objects
    (left to right), the densest supervision a scene offers. ``n_max`` caps the number of objects
    (a curriculum can start with small scenes).
    """
    if turns < 1:
        raise ValueError(f"qa_session needs turns >= 1, got {turns}")
    img, objects = scene(rng, n_max=n_max, sides=sides, cell=cell)
    side = img.size[0]
    qas: list[tuple[str, str]] = []
    if describe:
        qas.append((choice(rng, DESCRIBE_TEMPLATES), describe_objects(objects)))
    for _ in range(8 * turns):
        if len(qas) >= turns:
            break
        kind = choice(rng, ("color", "count", "position", "exists"))
        if kind == "color":
            asked = _ask_color(rng, objects)
        elif kind == "count":
            asked = _ask_count(rng, objects)
        elif kind == "position":
            asked = _ask_position(rng, objects, side, choice(rng, ("lr", "ud", "half")))
        else:
            asked = _ask_exists(rng, objects)
        if asked and all(asked[0] != q for q, _ in qas):
            qas.append(asked[:2])
    # random order (the list question is no more often first than any other), and only the
    # first question carries the image placeholder
    qas = [qas[int(i)] for i in rng.permutation(len(qas))]
    qas = [(q.removeprefix("<image>\n"), a) for q, a in qas]
    qas[0] = (f"<image>\n{qas[0][0]}", qas[0][1])
    sample = _sample("objects/qa_session", seed, index, img, qas[0][0], qas[0][1], objects)
    sample.turns = qas[1:]
    return sample


def scene_text(objects: list[dict], side: int, cell: int) -> str:
    """A grid scene as text: row-major cells, `` colour shape`` or `` .``, rows ended by `` |``.

    ``scene(cell=16, sides=(64,))`` becomes ``"scene: . red square . . | ... |\n"`` (4 x 4 cells).
    """
    per_row = side // cell
    cells = [" ."] * (per_row * per_row)
    for o in objects:
        cells[int(o["y"] // cell) * per_row + int(o["x"] // cell)] = f" {o['color']} {o['shape']}"
    rows = ["".join(cells[r * per_row : (r + 1) * per_row]) + " |" for r in range(per_row)]
    return "scene:" + "".join(rows) + "\n"


def text_session(
    rng: np.random.Generator,
    seed: int,
    index: int,
    turns: int = 6,
    describe: bool = True,
    cell: int = 16,
    side: int = 64,
    n_max: int = 6,
) -> SyntheticSample:
    """Training only: :func:`qa_session` on a grid scene (one object per ``cell``), with the
    scene written out as text (:func:`scene_text`) in place of the picture: a text-only sample.

    For a text stage: a real MLLM's LLM has learned to reason from text before it sees a
    picture, and the tiny one is trained from scratch. In probes the objects questions learned
    on these text scenes carried over to the pictures (docs/default_model.md, "Text first"); in
    the full recipe they did not, so ``recipes/tiny.yaml`` does not use this task ("Text first
    in the full recipe").
    """
    s = qa_session(rng, seed, index, turns, describe, sides=(side,), cell=cell, n_max=n_max)
    question = scene_text(s.meta["objects"], side, cell) + s.question.removeprefix("<image>\n")
    return SyntheticSample(
        id=sample_id("objects/text_session", seed, index),
        task="objects/text_session",
        modality="text",
        media=None,
        question=question,
        answer=s.answer,
        meta={**s.meta, "cell": cell},
        turns=s.turns,
    )


TASKS = {
    "objects/color": color,
    "objects/count": count,
    "objects/position": position,
    "objects/exists": exists,
}
# Training-only tasks: not part of the family (held-out evaluation asks single questions).
TRAIN_TASKS = {"objects/qa_session": qa_session, "objects/text_session": text_session}

__all__ = [
    "IMAGE_SIDES",
    "MAX_OBJECTS",
    "TASKS",
    "TRAIN_TASKS",
    "describe_objects",
    "qa_session",
    "scene_text",
    "text_session",
    "color",
    "count",
    "exists",
    "position",
    "scene",
]
