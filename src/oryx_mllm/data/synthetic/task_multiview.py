"""Multi-view scenes: a few spheres and cubes on a ground plane seen from several cameras.

What this family tests: **3D-aware multi-view understanding** (paper Sec. 3.2.1, coarse
correspondences). The same object appears in several views at different places and sizes; a
model must associate the views to count objects once and to reason about space. The preprocessing
module draws coarse-correspondence marks (same label for the same object across views) with
``draw_correspondence_marks``, using ``meta["points"]`` / ``meta["masks"]`` from here; the images
returned here carry no marks and the answers do not depend on them.

Geometry. World coordinates: ``y`` up, ground plane ``y = 0``. Object ``k`` (ids ``1..K``) is a
sphere of radius ``s`` or an axis-aligned cube of half-side ``s`` resting on the ground at
``(x, s, z)``. Cameras sit on a circle of radius 4.5-6 around the origin at height 2-3.5 and look
at the scene centre; consecutive views are 30-70 degrees apart (a walk around the scene). A
pinhole camera (horizontal field of view 50-60 degrees) projects each object's centre to
``(u, v)`` pixels (``u`` to the right, ``v`` down); the object is painted as a disc (sphere) or a
square (cube) of pixel radius ``f * s / depth``, far to near (painter's algorithm), into both the
RGB view and an instance mask (``uint8`` H x W, 0 = background, ``k`` = object ``k``).

Spatial convention. Relations are judged in the **first view (view 0), the canonical
viewpoint**: "A is left of B" iff A's projected centre has a smaller ``u`` in view 0; "closer"
compares the camera-space depth in view 0. Questions say "in the first view". Compared objects
differ by at least 8 px in ``u`` (or 0.5 units in depth) and are both visible in view 0.

Tasks (all ``modality="multiview"``, ``media`` = list of V PIL views of equal size):

- ``multiview/count``: "How many distinct objects are in the scene?" -> digit. Objects may share
  colour and shape, so counting distinct colours is not enough; every object is visible in at
  least one view.
- ``multiview/left_right``: "In the first view, is the red sphere left of the blue cube?" ->
  yes/no, or "... left or right of ..." -> left/right.
- ``multiview/closer``: "In the first view, which is closer to the camera, the red sphere or the
  blue cube?" -> colour.

``meta``: ``objects`` (id, shape, color, position, size), ``cameras`` (position, target, focal),
``points[v]`` (per object: id, u, v, depth, radius_px, inside), ``masks[v]``, ``visible[v]`` (ids
with at least one mask pixel in view v), ``mark_points[v]`` (``(x, y, id)`` on a visible pixel of
each visible object: the ``points`` argument of ``draw_correspondence_marks``),
``canonical_view`` = 0.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from oryx_mllm.data.synthetic.common import (
    COLOR_NAMES,
    COLORS,
    SyntheticSample,
    choice,
    make_question,
    sample_id,
    sample_without_replacement,
)

VIEW_SIDES: tuple[int, ...] = (96, 128, 160, 192)
SOLIDS: tuple[str, ...] = ("sphere", "cube")
SKY = (200, 215, 235)
GROUND = (170, 160, 140)

COUNT_TEMPLATES = (
    "How many distinct objects are in the scene?",
    "The images show one scene from several viewpoints. How many different objects does it contain?",
)
LEFT_OF_TEMPLATES = (
    "In the first view, is the {a} left of the {b}?",
    "Seen from the first viewpoint, is the {a} to the left of the {b}?",
)
LR_TEMPLATES = (
    "In the first view, is the {a} left or right of the {b}?",
    "Seen from the first viewpoint, is the {a} on the left or the right of the {b}?",
)
CLOSER_TEMPLATES = (
    "In the first view, which is closer to the camera, the {a} or the {b}?",
    "Seen from the first viewpoint, which object is nearer, the {a} or the {b}? Answer with its colour.",
)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def camera_basis(position, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right, up and forward unit vectors of a camera at ``position`` looking at ``target``."""
    forward = _normalize(np.asarray(target, float) - np.asarray(position, float))
    right = _normalize(np.cross(forward, [0.0, 1.0, 0.0]))
    up = np.cross(right, forward)
    return right, up, forward


def project(point, camera: dict, size: int) -> tuple[float, float, float]:
    """Pinhole projection of a world point: ``(u, v, depth)`` in pixels / world units."""
    right, up, forward = camera_basis(camera["position"], camera["target"])
    d = np.asarray(point, float) - np.asarray(camera["position"], float)
    x, y, z = float(d @ right), float(d @ up), float(d @ forward)
    f = camera["focal"]
    return size / 2 + f * x / z, size / 2 - f * y / z, z


def _shade(rgb, k: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c * k))) for c in rgb)


def render_view(
    objects: list[dict], camera: dict, size: int
) -> tuple[Image.Image, np.ndarray, list[dict]]:
    """Paint one view; returns ``(rgb, instance_mask, points)``."""
    img = Image.new("RGB", (size, size), GROUND)
    mask = Image.new("L", (size, size), 0)
    draw, mdraw = ImageDraw.Draw(img), ImageDraw.Draw(mask)
    # Horizon: where horizontal directions vanish.
    right, up, forward = camera_basis(camera["position"], camera["target"])
    flat = _normalize(np.array([forward[0], 0.0, forward[2]]))
    horizon = size / 2 - camera["focal"] * float(flat @ up) / float(flat @ forward)
    if horizon > 0:
        draw.rectangle([0, 0, size, min(size, horizon)], fill=SKY)
    points = []
    for obj in objects:
        u, v, z = project(obj["position"], camera, size)
        r = camera["focal"] * obj["size"] / z
        inside = 0 <= u < size and 0 <= v < size
        points.append(
            {"id": obj["id"], "u": u, "v": v, "depth": z, "radius_px": r, "inside": inside}
        )
    for p in sorted(points, key=lambda p: -p["depth"]):  # far to near
        obj = objects[p["id"] - 1]
        u, v, r, rgb = p["u"], p["v"], p["radius_px"], COLORS[obj["color"]]
        box = [u - r, v - r, u + r, v + r]
        if obj["shape"] == "sphere":
            draw.ellipse(box, fill=rgb, outline=_shade(rgb, 0.6))
            hr = r * 0.3
            draw.ellipse(
                [u - r * 0.45 - hr, v - r * 0.45 - hr, u - r * 0.45 + hr, v - r * 0.45 + hr],
                fill=_shade(rgb, 1.3),
            )
            mdraw.ellipse(box, fill=obj["id"], outline=obj["id"])
        else:
            draw.rectangle(box, fill=rgb, outline=_shade(rgb, 0.6))
            draw.rectangle(
                [u - r, v - r, u + r, v - r * 0.6], fill=_shade(rgb, 1.25)
            )  # lit top edge
            mdraw.rectangle(box, fill=obj["id"], outline=obj["id"])
    return img, np.asarray(mask, dtype=np.uint8).copy(), points


def random_scene(
    rng: np.random.Generator,
    num_objects: int,
    num_views: int,
    size: int,
    distinct_colors: bool,
) -> tuple[list[dict], list[dict]]:
    """Objects on the ground plane (no two closer than their sizes plus a gap) and cameras."""
    colors = sample_without_replacement(rng, COLOR_NAMES, num_objects) if distinct_colors else None
    objects: list[dict] = []
    while len(objects) < num_objects:
        s = float(rng.uniform(0.3, 0.6))
        x, z = (float(c) for c in rng.uniform(-2.0, 2.0, size=2))
        if all(
            math.hypot(x - o["position"][0], z - o["position"][2]) > s + o["size"] + 0.4
            for o in objects
        ):
            k = len(objects)
            objects.append(
                {
                    "id": k + 1,
                    "shape": choice(rng, SOLIDS),
                    "color": colors[k] if colors else choice(rng, COLOR_NAMES),
                    "position": (round(x, 3), round(s, 3), round(z, 3)),
                    "size": round(s, 3),
                }
            )
    azimuth = float(rng.uniform(0, 360))
    fov = math.radians(float(rng.uniform(50, 60)))
    focal = (size / 2) / math.tan(fov / 2)
    cameras = []
    for _ in range(num_views):
        radius, height = float(rng.uniform(4.5, 6.0)), float(rng.uniform(2.0, 3.5))
        a = math.radians(azimuth)
        cameras.append(
            {
                "position": (radius * math.sin(a), height, radius * math.cos(a)),
                "target": (0.0, 0.3, 0.0),
                "focal": focal,
                "azimuth_deg": azimuth % 360,
            }
        )
        azimuth += float(rng.uniform(30, 70))
    return objects, cameras


def render_scene(objects, cameras, size):
    views, masks, points = [], [], []
    for cam in cameras:
        img, mask, pts = render_view(objects, cam, size)
        views.append(img)
        masks.append(mask)
        points.append(pts)
    visible = [sorted(int(i) for i in np.unique(m) if i != 0) for m in masks]
    return views, masks, points, visible


def mark_points(mask: np.ndarray, points: list[dict]) -> list[tuple[float, float, int]]:
    """One ``(x, y, object_id)`` per object visible in ``mask``: its projected centre when that
    pixel shows the object, else the object's visible pixel closest to its visible centroid
    (so marks of partly occluded objects land on the object, not on its occluder)."""
    out = []
    h, w = mask.shape
    for p in points:
        k = p["id"]
        u, v = math.floor(p["u"]), math.floor(p["v"])  # int() would put -0.3 in pixel 0
        if 0 <= u < w and 0 <= v < h and mask[v, u] == k:
            out.append((round(p["u"], 2), round(p["v"], 2), k))
            continue
        ys, xs = np.nonzero(mask == k)
        if len(xs) == 0:
            continue
        i = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))
        out.append((float(xs[i]), float(ys[i]), k))
    return out


def _scene_sample(rng, task, distinct_colors, k_range=(2, 5), v_range=(2, 6)):
    size = choice(rng, VIEW_SIDES)
    while True:
        k = int(rng.integers(k_range[0], k_range[1] + 1))
        v = int(rng.integers(v_range[0], v_range[1] + 1))
        objects, cameras = random_scene(rng, k, v, size, distinct_colors)
        views, masks, points, visible = render_scene(objects, cameras, size)
        seen = set().union(*map(set, visible))
        if len(seen) == k:  # every object is visible somewhere
            meta = {
                "objects": objects,
                "cameras": cameras,
                "points": points,
                "masks": masks,
                "visible": visible,
                "mark_points": [mark_points(m, p) for m, p in zip(masks, points)],
                "canonical_view": 0,
                "num_objects": k,
                "num_views": v,
                "size": (size, size),
            }
            return views, meta


def _name(o: dict) -> str:
    return f"{o['color']} {o['shape']}"


def _sample(task, seed, index, views, question, answer, meta) -> SyntheticSample:
    return SyntheticSample(
        id=sample_id(task, seed, index),
        task=task,
        modality="multiview",
        media=views,
        question=question,
        answer=answer,
        meta=meta,
    )


def count(rng: np.random.Generator, seed: int, index: int) -> SyntheticSample:
    """Count the objects of a scene across views (colours may repeat: 50% of scenes)."""
    task = "multiview/count"
    views, meta = _scene_sample(rng, task, distinct_colors=rng.random() < 0.5, k_range=(1, 6))
    q = make_question(rng, "<video>", COUNT_TEMPLATES)
    return _sample(task, seed, index, views, q, str(meta["num_objects"]), meta)


def _pairs_in_view0(meta: dict, key, margin: float) -> list[tuple[dict, dict]]:
    pts = {p["id"]: p for p in meta["points"][0]}
    vis = set(meta["visible"][0])
    objs = [o for o in meta["objects"] if o["id"] in vis]
    return [
        (a, b)
        for a in objs
        for b in objs
        if a is not b and abs(key(pts[a["id"]]) - key(pts[b["id"]])) >= margin
    ]


def left_right(rng: np.random.Generator, seed: int, index: int) -> SyntheticSample:
    """Left/right relation of two objects in the canonical (first) view."""
    task = "multiview/left_right"
    while True:
        views, meta = _scene_sample(rng, task, distinct_colors=True)
        pairs = _pairs_in_view0(meta, lambda p: p["u"], 8.0)
        if pairs:
            break
    a, b = choice(rng, pairs)
    pts = {p["id"]: p for p in meta["points"][0]}
    is_left = pts[a["id"]]["u"] < pts[b["id"]]["u"]
    if rng.random() < 0.5:
        q = make_question(rng, "<video>", LEFT_OF_TEMPLATES, a=_name(a), b=_name(b))
        answer = "yes" if is_left else "no"
    else:
        q = make_question(rng, "<video>", LR_TEMPLATES, a=_name(a), b=_name(b))
        answer = "left" if is_left else "right"
    return _sample(task, seed, index, views, q, answer, {**meta, "a": a["id"], "b": b["id"]})


def closer(rng: np.random.Generator, seed: int, index: int) -> SyntheticSample:
    """Which of two objects is nearer to the camera of the canonical (first) view."""
    task = "multiview/closer"
    while True:
        views, meta = _scene_sample(rng, task, distinct_colors=True)
        pairs = _pairs_in_view0(meta, lambda p: p["depth"], 0.5)
        if pairs:
            break
    a, b = choice(rng, pairs)
    pts = {p["id"]: p for p in meta["points"][0]}
    near = a if pts[a["id"]]["depth"] < pts[b["id"]]["depth"] else b
    q = make_question(rng, "<video>", CLOSER_TEMPLATES, a=_name(a), b=_name(b))
    return _sample(task, seed, index, views, q, near["color"], {**meta, "a": a["id"], "b": b["id"]})


def scene_session(
    rng: np.random.Generator, seed: int, index: int, turns: int = 5
) -> SyntheticSample:
    """Training only: ONE scene with its object count and several left/right and nearer
    questions about pairs in the first view, as a multi-turn conversation (the views are encoded
    once and supervised ``turns`` times). Colours repeat in half of the scenes, as in ``count``.
    """
    task = "multiview/scene_session"
    views, meta = _scene_sample(rng, task, distinct_colors=rng.random() < 0.5, k_range=(1, 6))
    qas = [(make_question(rng, "<video>", COUNT_TEMPLATES), str(meta["num_objects"]))]
    names = [_name(o) for o in meta["objects"]]
    unique = {o["id"] for o in meta["objects"] if names.count(_name(o)) == 1}
    pts = {p["id"]: p for p in meta["points"][0]}
    lr = [
        p
        for p in _pairs_in_view0(meta, lambda p: p["u"], 8.0)
        if {p[0]["id"], p[1]["id"]} <= unique
    ]
    near = [
        p
        for p in _pairs_in_view0(meta, lambda p: p["depth"], 0.5)
        if {p[0]["id"], p[1]["id"]} <= unique
    ]
    for _ in range(turns - 1):
        if lr and (not near or rng.random() < 0.5):
            a, b = lr.pop(int(rng.integers(len(lr))))
            q = choice(rng, LR_TEMPLATES).format(a=_name(a), b=_name(b))
            qas.append((q, "left" if pts[a["id"]]["u"] < pts[b["id"]]["u"] else "right"))
        elif near:
            a, b = near.pop(int(rng.integers(len(near))))
            q = choice(rng, CLOSER_TEMPLATES).format(a=_name(a), b=_name(b))
            nearer = a if pts[a["id"]]["depth"] < pts[b["id"]]["depth"] else b
            qas.append((q, nearer["color"]))
    sample = _sample(task, seed, index, views, qas[0][0], qas[0][1], meta)
    sample.turns = qas[1:]
    return sample


TASKS = {
    "multiview/count": count,
    "multiview/left_right": left_right,
    "multiview/closer": closer,
}
# Training-only tasks: not part of the family (held-out evaluation asks single questions).
TRAIN_TASKS = {"multiview/scene_session": scene_session}

__all__ = [
    "TASKS",
    "TRAIN_TASKS",
    "VIEW_SIDES",
    "camera_basis",
    "closer",
    "count",
    "left_right",
    "project",
    "render_view",
]
