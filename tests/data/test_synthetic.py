"""Synthetic curriculum: determinism, answers consistent with the drawn content, splits, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from oryx_mllm.data.synthetic import (
    COLORS,
    FAMILIES,
    TASKS,
    TRAIN_TASKS,
    NeedleVideo,
    SyntheticSample,
    documents,
    generate,
    iter_task,
    iter_tasks,
    long_videos,
    make_split,
    multiview_scenes,
    objects,
    short_videos,
    split_seed,
)
from oryx_mllm.data.synthetic.task_multiview import _shade
from oryx_mllm.errors import ConfigError


def media_bytes(s: SyntheticSample) -> bytes:
    if s.media is None:  # a text-only sample: the scene is in the question
        return s.question.encode()
    if isinstance(s.media, Image.Image):
        return s.media.tobytes()
    if isinstance(s.media, NeedleVideo):
        idx = sorted({0, s.media.needle_index, len(s.media) - 1})
        return b"".join(s.media.frame(i).tobytes() for i in idx)
    return b"".join(f.tobytes() for f in s.media)


def color_mask(img: Image.Image, name: str) -> np.ndarray:
    return (np.asarray(img) == np.array(COLORS[name], dtype=np.uint8)).all(-1)


@pytest.mark.parametrize("task", list(TASKS))
def test_same_seed_same_sample_different_seed_different(task):
    for i in range(3):
        a, b = generate(task, 11, i), generate(task, 11, i)
        assert a.id == b.id and a.question == b.question and a.answer == b.answer
        assert media_bytes(a) == media_bytes(b)
    c, d = generate(task, 11, 0), generate(task, 12, 0)
    assert media_bytes(c) != media_bytes(d)


@pytest.mark.parametrize("task", [t for t in TASKS if t not in TRAIN_TASKS])
def test_sample_format(task):
    s = generate(task, 0, 5)
    assert s.task == task and s.modality in ("image", "video", "video_long", "multiview")
    assert s.question.startswith(s.placeholder + "\n")
    assert s.question.count("<image>") + s.question.count("<video>") == 1
    assert 0 < len(s.answer) <= 8 and "\n" not in s.answer
    if s.modality == "image":
        assert isinstance(s.media, Image.Image) and s.media.mode == "RGB"
    elif s.modality == "video_long":
        assert len(s.media) == len(s.media.timestamps) >= 100
    else:
        assert isinstance(s.media, list) and len({f.size for f in s.media}) == 1


def test_family_generators():
    for gen, family in [
        (documents, "documents"),
        (objects, "objects"),
        (short_videos, "short_videos"),
        (long_videos, "long_videos"),
        (multiview_scenes, "multiview_scenes"),
    ]:
        samples = list(gen(seed=1, n=len(FAMILIES[family])))
        assert [s.task for s in samples] == list(FAMILIES[family])


# ----------------------------------------------------------------------------- objects


def test_objects_drawn_as_in_meta():
    for i in range(30):
        s = generate("objects/count", 2, i)
        arr = np.asarray(s.media)
        for o in s.meta["objects"]:  # every object's centre pixel has its colour
            assert tuple(arr[int(o["y"]), int(o["x"])]) == COLORS[o["color"]]


def test_objects_count_answer_equals_meta_count():
    for i in range(50):
        s = generate("objects/count", 2, i)
        q = s.meta["query"]
        n = sum(
            (q["color"] is None or o["color"] == q["color"])
            and (q["shape"] is None or o["shape"] == q["shape"])
            for o in s.meta["objects"]
        )
        assert s.answer == str(n)
        if q["shape"] is None:  # colour-only count: the colour is visible iff counted
            assert color_mask(s.media, q["color"]).any() == (n > 0)


def test_objects_color_position_exists():
    for i in range(30):
        s = generate("objects/color", 4, i)
        target = [o for o in s.meta["objects"] if o["shape"] == s.meta["shape"]]
        assert len(target) == 1 and s.answer == target[0]["color"]

        s = generate("objects/exists", 4, i)
        q = s.meta["query"]
        present = any(
            o["color"] == q["color"] and o["shape"] == q["shape"] for o in s.meta["objects"]
        )
        assert s.answer == ("yes" if present else "no")

        s = generate("objects/position", 4, i)
        byname = {f"{o['color']} {o['shape']}": o for o in s.meta["objects"]}
        a = byname[s.meta["a"]]
        if s.meta["kind"] == "lr":
            assert s.answer == ("left" if a["x"] < byname[s.meta["b"]]["x"] else "right")
        elif s.meta["kind"] == "ud":
            assert s.answer == ("above" if a["y"] < byname[s.meta["b"]]["y"] else "below")
        else:
            half = s.media.size[0] / 2
            expect = {"x": ("left", "right"), "y": ("top", "bottom")}[s.meta["axis"]]
            assert s.answer == expect[0 if a[s.meta["axis"]] < half else 1]


# ----------------------------------------------------------------------------- short videos


def test_short_video_shapes():
    for task in FAMILIES["short_videos"]:
        for i in range(5):
            s = generate(task, 0, i)
            assert 4 <= len(s.media) <= 16 and 64 <= s.media[0].size[0] <= 128
            assert len(s.meta["timestamps"]) == len(s.media)


def test_direction_matches_motion():
    for i in range(20):
        s = generate("short_videos/direction", 5, i)
        c = s.meta["mover"]["color"]
        first, last = (np.argwhere(color_mask(f, c)).mean(0) for f in (s.media[0], s.media[-1]))
        dy, dx = last - first
        expect = (
            ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
        )
        assert s.answer == expect


def test_count_appear_matches_frames():
    for i in range(20):
        s = generate("short_videos/count_appear", 5, i)
        c = s.meta["target"]["color"]
        visible = [bool(color_mask(f, c).any()) for f in s.media]
        assert visible == s.meta["present"]
        runs = sum(v and (t == 0 or not visible[t - 1]) for t, v in enumerate(visible))
        assert s.answer == str(runs)


def test_appear_order_and_what_when():
    for i in range(20):
        s = generate("short_videos/appear_order", 5, i)
        onset = {
            c: next(t for t, f in enumerate(s.media) if color_mask(f, c).any())
            for c in s.meta["colors"]
        }
        order = sorted(onset, key=onset.get)
        assert s.answer == (order[0] if s.meta["kind"] == "first" else order[-1])

        s = generate("short_videos/what_when", 5, i)
        cue_t = s.meta["cue_frames"][0]
        assert color_mask(s.media[cue_t], s.answer).any()


# ----------------------------------------------------------------------------- long videos


@pytest.mark.parametrize("num_frames,depth", [(100, 0.0), (400, 0.5), (1600, 1.0), (2000, 0.37)])
def test_needle_at_stated_depth(num_frames, depth):
    s = generate("long_videos/digit", 0, 0, num_frames=num_frames, depth=depth)
    v = s.media
    assert len(v) == num_frames and s.meta["depth"] == depth
    k = s.meta["needle_index"]
    assert k == round(depth * (num_frames - 1)) and s.meta["needle_frames"] == [k]

    def diff(i, j):
        return np.abs(np.asarray(v.frame(i), np.int16) - np.asarray(v.frame(j), np.int16)).mean()

    hay = [i for i in (k - 2, k - 1, k + 1, k + 2) if 0 <= i < num_frames]
    needle_vs_hay = min(diff(k, i) for i in hay)
    hay_vs_hay = max(diff(hay[0], i) for i in hay[1:])
    assert needle_vs_hay > 5 * hay_vs_hay and needle_vs_hay > 30
    assert np.array_equal(np.asarray(v.frame(hay[0])), np.asarray(v.haystack(hay[0])))
    with pytest.raises(IndexError):
        v.frame(num_frames)


def test_needle_answer_and_span():
    s = generate("long_videos/color", 3, 1, num_frames=300, depth=0.5, needle_span=4)
    assert s.meta["needle_frames"] == list(
        range(s.meta["needle_index"], s.meta["needle_index"] + 4)
    )
    assert color_mask(s.media.frame(s.meta["needle_index"] + 3), s.answer).any()
    assert not color_mask(s.media.frame(s.meta["needle_index"] + 4), s.answer).any()
    d = generate("long_videos/digit", 3, 2)
    assert d.answer == d.meta["needle"]["digit"] and 100 <= len(d.media) <= 1600


# ----------------------------------------------------------------------------- multi-view


def test_multiview_masks_and_points():
    for task in FAMILIES["multiview_scenes"]:
        for i in range(10):
            s = generate(task, 6, i)
            m = s.meta
            assert len(m["masks"]) == len(s.media) == len(m["points"]) == m["num_views"]
            for view, mask, pts, vis in zip(s.media, m["masks"], m["points"], m["visible"]):
                assert mask.shape == (view.size[1], view.size[0])
                assert sorted(set(np.unique(mask)) - {0}) == vis
                depth = {p["id"]: p["depth"] for p in pts}
                for p in pts:
                    k, r = p["id"], p["radius_px"]
                    if p["inside"]:  # centre in frame: visible there, or hidden by a nearer object
                        owner = int(mask[int(p["v"]), int(p["u"])])
                        assert owner == k or (owner != 0 and depth[owner] < depth[k])
                    fully_out = (
                        p["u"] + r < 0
                        or p["u"] - r >= mask.shape[1]
                        or p["v"] + r < 0
                        or p["v"] - r >= mask.shape[0]
                    )
                    if fully_out:
                        assert k not in vis
                    if k in vis:  # mask and painting agree: every k pixel has k's colour or shade
                        rgb = COLORS[m["objects"][k - 1]["color"]]
                        shades = {_shade(rgb, f) for f in (1.0, 0.6, 1.25, 1.3)}
                        pixels = {tuple(px) for px in np.asarray(view)[mask == k]}
                        assert pixels <= shades


def test_multiview_mark_points_and_marks():
    s = generate("multiview/count", 6, 3)
    for mask, marks, vis in zip(s.meta["masks"], s.meta["mark_points"], s.meta["visible"]):
        assert sorted(k for _, _, k in marks) == vis
        for x, y, k in marks:
            assert mask[int(y), int(x)] == k
    from oryx_mllm.processing.multiview import draw_correspondence_marks

    marked = draw_correspondence_marks(s.media, instance_masks=s.meta["masks"])
    assert len(marked) == len(s.media) and marked[0].size == s.media[0].size
    marked = draw_correspondence_marks(s.media, points=s.meta["mark_points"])
    assert len(marked) == len(s.media)


def test_mark_point_of_a_centre_just_outside_the_view_moves_onto_the_object():
    from oryx_mllm.data.synthetic.task_multiview import mark_points

    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[3:6, 0:3] = 1  # object 1 visible at the left edge; its centre projects to u = -0.31
    ((x, y, k),) = mark_points(mask, [{"id": 1, "u": -0.31, "v": 4.2}])
    assert k == 1 and 0 <= x < 8 and mask[int(y), int(x)] == 1


def test_multiview_answers():
    for i in range(20):
        s = generate("multiview/count", 6, i)
        assert s.answer == str(len(s.meta["objects"]))
        assert set().union(*map(set, s.meta["visible"])) == {o["id"] for o in s.meta["objects"]}

        s = generate("multiview/left_right", 6, i)
        pts = {p["id"]: p for p in s.meta["points"][0]}
        left = pts[s.meta["a"]]["u"] < pts[s.meta["b"]]["u"]
        assert s.answer in (("yes", "left") if left else ("no", "right"))

        s = generate("multiview/closer", 6, i)
        pts = {p["id"]: p for p in s.meta["points"][0]}
        near = min((s.meta["a"], s.meta["b"]), key=lambda k: pts[k]["depth"])
        assert s.answer == s.meta["objects"][near - 1]["color"]


# ----------------------------------------------------------------------------- splits


def test_make_split_counts_and_determinism():
    counts = {"objects": 10, "documents/table": 3, "long_videos/digit": 2}
    a = make_split(counts, seed=0, split="train")
    b = make_split(counts, seed=0, split="train")
    assert [s.id for s in a] == [s.id for s in b]
    assert [s.id for s in a] == [s.id for s in iter_tasks(counts, seed=0)]
    tasks = [s.task for s in a]
    assert (
        len(a) == 15
        and tasks.count("documents/table") == 3
        and tasks.count("long_videos/digit") == 2
    )
    assert sorted(tasks.count(t) for t in FAMILIES["objects"]) == [2, 2, 3, 3]
    assert len({s.id for s in a}) == 15


def test_train_and_test_disjoint():
    test_seed = split_seed("test")
    assert test_seed >= 1_000_000 > split_seed("train", 5)
    with pytest.raises(ValueError):
        make_split({"objects": 1}, seed=0, split="test")
    with pytest.raises(ValueError):
        make_split({"objects": 1}, seed=test_seed, split="train")
    train = make_split({"objects": 20, "documents": 8}, seed=0, split="train")
    test = make_split({"objects": 20, "documents": 8}, seed=test_seed, split="test")
    assert not {s.id for s in train} & {s.id for s in test}
    assert not {media_bytes(s) for s in train} & {media_bytes(s) for s in test}


def test_family_stream_equals_task_streams():
    fam = list(iter_task("objects", seed=9, n=8))
    assert fam[5].id == generate(fam[5].task, 9, 1).id
    assert media_bytes(fam[5]) == media_bytes(generate(fam[5].task, 9, 1))


def test_image_generation_speed():
    t0 = time.perf_counter()
    samples = make_split({"objects": 150, "documents": 50}, seed=0)
    dt = time.perf_counter() - t0
    assert len(samples) == 200
    assert dt < 10.0, f"200 image samples took {dt:.1f}s"


# ----------------------------------------------------------------------------- multi-turn sessions


def _turns(s: SyntheticSample) -> list[tuple[str, str]]:
    return [(s.question, s.answer), *s.turns]


@pytest.mark.parametrize("task", list(TRAIN_TASKS))
def test_session_format(task):
    for i in range(4):
        s = generate(task, 0, i)
        turns = _turns(s)
        assert len(turns) >= 2 and s.task == task
        if s.modality == "text":  # the scene written out takes the placeholder's place
            assert s.placeholder is None and s.media is None
            assert s.question.startswith("scene:") and "<image>" not in s.question
        else:
            assert s.question.startswith(s.placeholder + "\n")
        assert all("<image>" not in q and "<video>" not in q for q, _ in turns[1:])
        assert len({q for q, _ in turns}) == len(turns)  # no question asked twice
        assert all(a and "\n" not in a for _, a in turns)


def test_sessions_belong_to_no_family():
    in_families = {t for tasks in FAMILIES.values() for t in tasks}
    assert not in_families & set(TRAIN_TASKS)


@pytest.mark.parametrize("task", ["objects/qa_session", "objects/text_session"])
def test_objects_session_answers_match_the_scene(task):
    from oryx_mllm.data.synthetic.task_objects import describe_objects

    for i in range(10):
        s = generate(task, 0, i)
        objs = s.meta["objects"]
        for q, a in _turns(s):
            q = q.removeprefix("<image>\n").split("\n")[-1]  # text_session: after the scene
            if q.startswith(("List the objects", "Which objects")):
                assert a == describe_objects(objs)
                assert a.count(",") == len(objs) - 1
            elif q.startswith(("Is there a", "Does the image contain")):
                words = q.rstrip("?").split()
                color, shape = words[-2], words[-1]
                present = any(o["color"] == color and o["shape"] == shape for o in objs)
                assert a == ("yes" if present else "no")


def test_objects_color_can_be_limited_to_few_objects():
    for i in range(20):
        s = generate("objects/color", 0, i, n_max=2)
        assert 1 <= len(s.meta["objects"]) <= 2
        target = [o for o in s.meta["objects"] if o["shape"] == s.meta["shape"]]
        assert len(target) == 1 and s.answer == target[0]["color"]


def test_objects_session_can_be_limited_to_few_objects():
    sizes = {len(generate("objects/qa_session", 0, i, n_max=2).meta["objects"]) for i in range(20)}
    assert sizes == {1, 2}
    with pytest.raises(ConfigError, match="n_max"):
        generate("objects/qa_session", 0, 0, n_max=0)


@pytest.mark.parametrize("task", ["objects/color", "objects/qa_session"])
def test_more_objects_than_a_scene_holds_is_a_config_error(task):
    # 50 discs do not fit a picture: named up front, not a RuntimeError from the placement
    with pytest.raises(ConfigError, match=r"n_max must be an integer >= 1 and <= 12, got 50"):
        generate(task, 0, 0, n_max=50)


def test_objects_on_a_grid_fill_one_cell_each():
    for task in ("objects/color", "objects/count", "objects/position", "objects/qa_session"):
        for i in range(10):
            s = generate(task, 0, i, cell=16, sides=(64,))
            assert s.media.size == (64, 64)
            cells = set()
            for o in s.meta["objects"]:
                col, row = int(o["x"] // 16), int(o["y"] // 16)
                cells.add((col, row))
                # the whole disc inside its own cell
                assert 16 * col <= o["x"] - o["r"] and o["x"] + o["r"] <= 16 * (col + 1)
                assert 16 * row <= o["y"] - o["r"] and o["y"] + o["r"] <= 16 * (row + 1)
                assert tuple(np.asarray(s.media)[int(o["y"]), int(o["x"])]) == COLORS[o["color"]]
            assert len(cells) == len(s.meta["objects"])


@pytest.mark.parametrize("cell", [0, 40, 2.5])
def test_objects_grid_needs_two_cells_per_side(cell):
    with pytest.raises(ConfigError, match="cell"):
        generate("objects/position", 0, 0, cell=cell, sides=(64,))


def test_document_sessions_read_other_lines_and_keys():
    s = generate("documents/line_session", 0, 1)
    codes = s.meta["codes"]
    for q, a in _turns(s):
        line = int(q.rstrip(".?").split()[-1])
        assert a == codes[line - 1]
    s = generate("documents/key_session", 0, 1)
    fields = s.meta["fields"]
    for q, a in _turns(s):
        key = next(k for k in fields if f"'{k}'" in q or f" {k} " in q)
        assert a == fields[key]["code"]


def test_scene_session_counts_and_relations():
    for i in range(6):
        s = generate("multiview/scene_session", 0, i)
        assert s.answer == str(s.meta["num_objects"])
        pts = {p["id"]: p for p in s.meta["points"][0]}
        by_name = {f"{o['color']} {o['shape']}": o for o in s.meta["objects"]}
        for q, a in s.turns:
            names = [n for n in by_name if f"the {n}" in q]
            assert len(names) == 2
            first, second = sorted(names, key=q.index)
            pa, pb = pts[by_name[first]["id"]], pts[by_name[second]["id"]]
            if "left or" in q:
                assert a == ("left" if pa["u"] < pb["u"] else "right")
            else:
                nearer = first if pa["depth"] < pb["depth"] else second
                assert a == by_name[nearer]["color"]


def test_video_session_answers_match_the_frames():
    """Every follow-up of a short-video session checked against the drawn frames."""

    def centre(frame, colour):
        ys, xs = np.nonzero(color_mask(frame, colour))
        return xs.mean(), ys.mean()

    kinds = set()
    for i in range(24):
        s = generate("short_videos/video_session", 0, i)
        kinds.add(s.meta["asked_task"])
        m, side, frames = s.meta, s.meta["size"][0], s.media
        for q, a in _turns(s):
            q = q.removeprefix("<video>\n")
            if "half?" in q:  # direction: where the mover is in the first / last frame
                x, y = centre(frames[0 if "first frame" in q else -1], m["mover"]["color"])
                v, low = (x, "left") if "left or right" in q else (y, "top")
                assert (a == low) == (v < side / 2)
                assert abs(v - side / 2) >= m["radius"] - 1  # asked only when it is clear
            elif q.startswith("List the colours"):
                onset = {
                    c: next(t for t, f in enumerate(frames) if color_mask(f, c).any())
                    for c in m["colors"]
                }
                assert a.split(", ") == sorted(onset, key=onset.get)
            elif q.startswith("Is the"):  # count_appear: visible in the first / last frame?
                f = frames[0 if "first frame" in q else -1]
                assert (a == "yes") == bool(color_mask(f, m["target"]["color"]).any())
            elif q.startswith("In how many frames"):
                assert a == str(sum(color_mask(f, m["target"]["color"]).any() for f in frames))
            elif q.startswith("Which colours does the"):  # what_when: the main shape's colours
                seen = a.split(", ")
                assert all(x != y for x, y in zip(seen, seen[1:], strict=False))
                assert color_mask(frames[0], seen[0]).any()
                assert color_mask(frames[-1], seen[-1]).any()
            elif q.endswith(("in the first frame?", "in the last frame?")):
                assert color_mask(frames[0 if "first" in q else -1], a).any()
    assert kinds == set(FAMILIES["short_videos"])


@pytest.mark.parametrize(
    "task,kwargs",
    [("objects/qa_session", {"describe": False}), ("short_videos/video_session", {})],
)
def test_session_turns_must_be_positive(task, kwargs):
    with pytest.raises(ValueError, match="turns >= 1"):
        generate(task, 0, 0, turns=0, **kwargs)


def test_scene_text_writes_the_grid_row_major():
    from oryx_mllm.data.synthetic.task_objects import scene_text

    objects = [
        {"shape": "square", "color": "red", "x": 40.0, "y": 8.0},  # row 0, column 2
        {"shape": "circle", "color": "blue", "x": 5.0, "y": 60.0},  # row 3, column 0
    ]
    assert scene_text(objects, side=64, cell=16) == (
        "scene: . . red square . | . . . . | . . . . | blue circle . . . |\n"
    )


def test_text_session_writes_its_own_grid_scene():
    from oryx_mllm.data.synthetic.task_objects import scene_text

    for i in range(10):
        s = generate("objects/text_session", 0, i, cell=32, side=128)
        assert s.modality == "text" and s.meta["size"] == (128, 128) and s.meta["cell"] == 32
        scene = scene_text(s.meta["objects"], 128, 32)
        assert s.question.startswith(scene) and scene.count("|") == 4
        assert scene.count(" square") + scene.count(" circle") + scene.count(" triangle") == len(
            s.meta["objects"]
        )
