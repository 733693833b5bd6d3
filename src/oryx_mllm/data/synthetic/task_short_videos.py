"""Short videos: 4-16 frames of 64-128 px with simple temporal events.

What this family tests: **temporal reasoning across frames** that no single frame answers --
motion direction, order of appearance, counting repeated events and aligning two events in time.
Frames share one static background so only the objects change.

Tasks (all ``modality="video"``, ``media`` = list of PIL frames, ``meta["timestamps"]`` in s):

- ``short_videos/direction``: one object moves in a straight line among static distractors;
  "Which direction does the red square move?" -> left/right/up/down.
- ``short_videos/appear_order``: 2-4 objects of distinct colours appear one after another and
  stay; "Which colour appeared first/last?" -> colour.
- ``short_videos/count_appear``: an object flashes on and off (1-4 separate appearances, at a
  new place each time); "How many times does the red square appear?" -> digit.
- ``short_videos/what_when``: a shape changes colour every few frames; a grey cue shape shows up
  during one colour segment; "What colour is the circle when the square appears?" -> colour.

Training only (``TRAIN_TASKS``): ``short_videos/video_session``, one video of any of the four
tasks with its question plus follow-ups on the facts the question rests on.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from oryx_mllm.data.synthetic.common import (
    COLOR_NAMES,
    COLORS,
    SHAPES,
    SyntheticSample,
    choice,
    draw_shape,
    make_question,
    place_circles,
    random_background,
    sample_id,
    sample_without_replacement,
)

FRAME_SIDES: tuple[int, ...] = (64, 80, 96, 112, 128)
FPS = 2.0
CUE_COLOR = (70, 70, 70)  # the cue in what_when is grey: outside the colour vocabulary

DIRECTION_TEMPLATES = (
    "Which direction does the {a} move?",
    "In which direction is the {a} moving?",
    "Where does the {a} move: left, right, up or down?",
)
FIRST_TEMPLATES = (
    "Which colour appeared first?",
    "What is the colour of the first object to appear?",
)
LAST_TEMPLATES = ("Which colour appeared last?", "What is the colour of the last object to appear?")
COUNT_TEMPLATES = (
    "How many times does the {a} appear?",
    "How often does the {a} show up in the video?",
)
WHEN_TEMPLATES = (
    "What colour is the {main} when the {cue} appears?",
    "When the grey {cue} appears, what colour is the {main}?",
)


def _setup(rng: np.random.Generator, t_min: int, t_max: int):
    side = choice(rng, FRAME_SIDES)
    num_frames = int(rng.integers(t_min, t_max + 1))
    return side, num_frames, random_background(rng, (side, side))


def _render(background: Image.Image, per_frame: list[list[tuple]]) -> list[Image.Image]:
    """``per_frame[t]`` = list of ``(shape, cx, cy, r, rgb)`` drawn on a copy of the background."""
    frames = []
    for items in per_frame:
        img = background.copy()
        draw = ImageDraw.Draw(img)
        for shape, cx, cy, r, rgb in items:
            draw_shape(draw, shape, cx, cy, r, rgb)
        frames.append(img)
    return frames


def _sample(task, seed, index, frames, question, answer, **meta) -> SyntheticSample:
    return SyntheticSample(
        id=sample_id(task, seed, index),
        task=task,
        modality="video",
        media=frames,
        question=question,
        answer=answer,
        meta={
            "num_frames": len(frames),
            "timestamps": [t / FPS for t in range(len(frames))],
            "size": frames[0].size,
            **meta,
        },
    )


def direction(rng: np.random.Generator, seed: int, index: int) -> SyntheticSample:
    """A uniquely named object travels 40-60% of the frame side in one direction."""
    task = "short_videos/direction"
    side, T, bg = _setup(rng, 4, 16)
    r = float(rng.uniform(0.08, 0.12)) * side
    way = choice(rng, ("left", "right", "up", "down"))
    travel = float(rng.uniform(0.4, 0.6)) * side
    start = float(rng.uniform(r + 1, side - r - 1 - travel))  # along the axis of motion
    across = float(rng.uniform(r + 1, side - r - 1))
    sign = 1.0 if way in ("right", "down") else -1.0
    if sign < 0:
        start = side - start
    along = [start + sign * travel * t / (T - 1) for t in range(T)]
    path = [(a, across) if way in ("left", "right") else (across, a) for a in along]
    mover = {"shape": choice(rng, SHAPES), "color": choice(rng, COLOR_NAMES)}
    # Static distractors: different colour from the mover, kept off the mover's path.
    distractors = []
    for _ in range(int(rng.integers(0, 3))):
        for _try in range(50):
            dr = float(rng.uniform(0.06, 0.09)) * side
            dx, dy = float(rng.uniform(dr, side - dr)), float(rng.uniform(dr, side - dr))
            if all((dx - x) ** 2 + (dy - y) ** 2 > (dr + r + 2) ** 2 for x, y in path) and all(
                (dx - d["x"]) ** 2 + (dy - d["y"]) ** 2 > (dr + d["r"] + 2) ** 2
                for d in distractors
            ):
                c = choice(rng, [c for c in COLOR_NAMES if c != mover["color"]])
                distractors.append(
                    {"shape": choice(rng, SHAPES), "color": c, "x": dx, "y": dy, "r": dr}
                )
                break
    static = [(d["shape"], d["x"], d["y"], d["r"], COLORS[d["color"]]) for d in distractors]
    per_frame = [[*static, (mover["shape"], x, y, r, COLORS[mover["color"]])] for x, y in path]
    name = f"{mover['color']} {mover['shape']}"
    q = make_question(rng, "<video>", DIRECTION_TEMPLATES, a=name)
    return _sample(
        task,
        seed,
        index,
        _render(bg, per_frame),
        q,
        way,
        mover=mover,
        radius=r,
        path=path,
        distractors=distractors,
    )


def appear_order(rng: np.random.Generator, seed: int, index: int) -> SyntheticSample:
    """Objects of distinct colours appear at strictly increasing frames and stay visible."""
    task = "short_videos/appear_order"
    side, T, bg = _setup(rng, 4, 16)
    k = int(rng.integers(2, min(4, T - 1) + 1))
    colors = sample_without_replacement(rng, COLOR_NAMES, k)
    onsets = sorted(int(t) for t in rng.permutation(np.arange(1, T))[:k])  # frame 0 is empty
    discs = place_circles(rng, k, (side, side), (0.08 * side, 0.12 * side))
    shapes = [choice(rng, SHAPES) for _ in range(k)]
    per_frame = [
        [(shapes[i], *discs[i], COLORS[colors[i]]) for i in range(k) if onsets[i] <= t]
        for t in range(T)
    ]
    kind = choice(rng, ("first", "last"))
    q = make_question(rng, "<video>", FIRST_TEMPLATES if kind == "first" else LAST_TEMPLATES)
    answer = colors[0] if kind == "first" else colors[-1]
    return _sample(
        task,
        seed,
        index,
        _render(bg, per_frame),
        q,
        answer,
        kind=kind,
        colors=colors,
        onsets=onsets,
        shapes=shapes,
    )


def _runs(rng: np.random.Generator, T: int, m: int) -> list[bool]:
    """A presence pattern of length ``T`` with exactly ``m`` runs of True separated by False."""
    # slots: lead gap, run_1, gap_1, ..., run_m, trail gap. Runs and inner gaps need >= 1 frame.
    minimum = np.array([0] + [1, 1] * (m - 1) + [1, 0])
    extra = rng.multinomial(T - int(minimum.sum()), np.ones(len(minimum)) / len(minimum))
    lengths = minimum + extra
    pattern: list[bool] = []
    for i, n in enumerate(lengths):
        pattern += [i % 2 == 1] * int(n)
    return pattern


def count_appear(rng: np.random.Generator, seed: int, index: int) -> SyntheticSample:
    """Count the separate appearances of a flashing object (a new position each appearance)."""
    task = "short_videos/count_appear"
    side, T, bg = _setup(rng, 8, 16)
    m = int(rng.integers(1, min(4, (T + 1) // 2) + 1))
    present = _runs(rng, T, m)
    target = {"shape": choice(rng, SHAPES), "color": choice(rng, COLOR_NAMES)}
    # A static distractor that differs from the target in colour.
    d_color = choice(rng, [c for c in COLOR_NAMES if c != target["color"]])
    r = 0.1 * side
    spots = place_circles(rng, m + 1, (side, side), (r, r + 0.01))
    distractor = (choice(rng, SHAPES), *spots[0], COLORS[d_color])
    per_frame, run = [], -1
    for t in range(T):
        items = [distractor]
        if present[t]:
            if t == 0 or not present[t - 1]:
                run += 1
            items.append((target["shape"], *spots[1 + run], COLORS[target["color"]]))
        per_frame.append(items)
    name = f"{target['color']} {target['shape']}"
    q = make_question(rng, "<video>", COUNT_TEMPLATES, a=name)
    return _sample(
        task,
        seed,
        index,
        _render(bg, per_frame),
        q,
        str(m),
        target=target,
        present=present,
        count=m,
        distractor={"shape": distractor[0], "color": d_color},
    )


def what_when(rng: np.random.Generator, seed: int, index: int) -> SyntheticSample:
    """The main shape changes colour per segment; a grey cue appears within one segment."""
    task = "short_videos/what_when"
    side, T, bg = _setup(rng, 6, 16)
    main_shape, cue_shape = sample_without_replacement(rng, SHAPES, 2)
    # Segment lengths of 2-4 frames, consecutive colours differ.
    seg_colors, colors_t = [], []
    while len(colors_t) < T:
        c = choice(rng, [c for c in COLOR_NAMES if not seg_colors or c != seg_colors[-1]])
        seg_colors.append(c)
        colors_t += [c] * int(rng.integers(2, 5))
    colors_t = colors_t[:T]
    # The cue spans 1-2 frames inside one segment.
    seg_start = [t for t in range(T) if t == 0 or colors_t[t] != colors_t[t - 1]]
    s = choice(rng, seg_start)
    seg_end = next((t for t in seg_start if t > s), T)
    cue_len = int(rng.integers(1, min(2, seg_end - s) + 1))
    cue_t0 = int(rng.integers(s, seg_end - cue_len + 1))
    cue_frames = list(range(cue_t0, cue_t0 + cue_len))
    (mx, my, mr), (cx, cy, cr) = place_circles(rng, 2, (side, side), (0.1 * side, 0.14 * side))
    per_frame = []
    for t in range(T):
        items = [(main_shape, mx, my, mr, COLORS[colors_t[t]])]
        if t in cue_frames:
            items.append((cue_shape, cx, cy, cr, CUE_COLOR))
        per_frame.append(items)
    q = make_question(rng, "<video>", WHEN_TEMPLATES, main=main_shape, cue=cue_shape)
    answer = colors_t[cue_frames[0]]
    return _sample(
        task,
        seed,
        index,
        _render(bg, per_frame),
        q,
        answer,
        colors=colors_t,
        cue_frames=cue_frames,
        main=main_shape,
        cue=cue_shape,
    )


def _half(v: float, side: int, low: str, high: str) -> str:
    return low if v < side / 2 else high


def _video_followups(sample: SyntheticSample) -> list[tuple[str, str]]:
    """Questions about the parts of a short video's story that its one question depends on:
    what moves and where it starts and ends, the whole order of appearance, every frame the
    flashing object is in, the main shape's colour sequence."""
    m, side = sample.meta, sample.meta["size"][0]
    task = sample.task
    if task == "short_videos/direction":
        name = f"{m['mover']['color']} {m['mover']['shape']}"
        halves = []
        for when, (x, y) in (("first", m["path"][0]), ("last", m["path"][-1])):
            for v, low, high in ((x, "left", "right"), (y, "top", "bottom")):
                if abs(v - side / 2) >= m["radius"]:  # wholly in one half: a clear answer
                    q = f"In the {when} frame, is the {name} in the {low} or {high} half?"
                    halves.append((q, _half(v, side, low, high)))
        return [
            ("What colour is the moving object?", m["mover"]["color"]),
            ("What shape is the moving object?", m["mover"]["shape"]),
            *halves,
            ("How many objects do not move?", str(len(m["distractors"]))),
        ]
    if task == "short_videos/appear_order":
        other = "last" if m["kind"] == "first" else "first"
        return [
            ("List the colours in the order they appear.", ", ".join(m["colors"])),
            (f"Which colour appeared {other}?", m["colors"][-1 if other == "last" else 0]),
            ("How many objects appear?", str(len(m["colors"]))),
            *[
                (f"What shape is the {c} object?", s)
                for c, s in zip(m["colors"], m["shapes"], strict=True)
            ],
        ]
    if task == "short_videos/count_appear":
        name = f"{m['target']['color']} {m['target']['shape']}"
        yes = {True: "yes", False: "no"}
        return [
            (f"Is the {name} visible in the first frame?", yes[m["present"][0]]),
            (f"Is the {name} visible in the last frame?", yes[m["present"][-1]]),
            (f"In how many frames is the {name} visible?", str(sum(m["present"]))),
            ("What colour is the object that does not move?", m["distractor"]["color"]),
            ("What shape is the object that does not move?", m["distractor"]["shape"]),
        ]
    if task == "short_videos/what_when":
        colours = m["colors"]
        segments = [c for t, c in enumerate(colours) if t == 0 or c != colours[t - 1]]
        return [
            (f"Which colours does the {m['main']} take, in order?", ", ".join(segments)),
            (f"What colour is the {m['main']} in the first frame?", colours[0]),
            (f"What colour is the {m['main']} in the last frame?", colours[-1]),
            ("What shape is the grey object?", m["cue"]),
            (f"How many times does the {m['main']} change colour?", str(len(segments) - 1)),
        ]
    raise ValueError(f"no follow-up questions for {task!r}")


def video_session(
    rng: np.random.Generator, seed: int, index: int, turns: int = 5
) -> SyntheticSample:
    """Training only: one short video of a random task with its question and up to
    ``turns - 1`` follow-ups about the same video (``SyntheticSample.turns``), in random order.

    The follow-ups supervise the intermediate facts the task's question rests on (which object
    moves and where it is in the first and last frame, the full order of appearance, the main
    shape's colour sequence), so one encoded video is supervised several times, as
    ``objects/qa_session`` does for pictures.
    """
    if turns < 1:
        raise ValueError(f"video_session needs turns >= 1, got {turns}")
    kind = choice(rng, tuple(TASKS))
    sample = TASKS[kind](rng, seed, index)
    followups = _video_followups(sample)
    picked = [followups[int(i)] for i in rng.permutation(len(followups))[: turns - 1]]
    qas = [(sample.question.removeprefix("<video>\n"), sample.answer), *picked]
    qas = [qas[int(i)] for i in rng.permutation(len(qas))]
    sample.id = sample_id("short_videos/video_session", seed, index)
    sample.meta["asked_task"] = sample.task
    sample.task = "short_videos/video_session"
    sample.question, sample.answer = f"<video>\n{qas[0][0]}", qas[0][1]
    sample.turns = qas[1:]
    return sample


TASKS = {
    "short_videos/direction": direction,
    "short_videos/appear_order": appear_order,
    "short_videos/count_appear": count_appear,
    "short_videos/what_when": what_when,
}
# Training-only tasks: not part of the family (held-out evaluation asks single questions).
TRAIN_TASKS = {"short_videos/video_session": video_session}

__all__ = [
    "FPS",
    "FRAME_SIDES",
    "TASKS",
    "TRAIN_TASKS",
    "appear_order",
    "count_appear",
    "direction",
    "video_session",
    "what_when",
]
