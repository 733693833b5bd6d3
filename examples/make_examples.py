"""Regenerate the example files bundled in src/oryx_mllm/assets/examples (deterministic).

One file per modality the demo shows, drawn from the synthetic curriculum's *held-out* seeds (so
the embedded model has never seen them): a document page, a photo-like object scene, a short
video, a 1,000-frame long video with one needle, and a multi-view scene with its instance masks
(the demo draws coarse-correspondence marks from them). ``examples.json`` lists each with its
question and the expected answer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
from PIL import Image

from oryx_mllm.data.build import GRID_PAGE_KWARGS
from oryx_mllm.data.synthetic import generate, split_seed

OUT = Path(__file__).resolve().parents[1] / "src" / "oryx_mllm" / "assets" / "examples"
SEED = split_seed("test", 7)
LONG_FRAMES, SAMPLED_FRAMES = 1000, 32  # the embedded model samples 32 long-video frames


def write_video(path: Path, frames, fps: int = 1) -> None:
    """Encode PIL frames as H.264 MP4 at ``fps`` frames per second (1 fps = 1 frame per second)."""
    first = frames[0]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = first.width, first.height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for im in frames:
            frame = av.VideoFrame.from_ndarray(np.asarray(im.convert("RGB")), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def strip_placeholder(question: str) -> str:
    return question.split("\n", 1)[1] if question.startswith("<") else question


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = []

    # a page set one character per 16 px patch, as the embedded model was trained to read
    doc = generate("documents/line_code", SEED, 0, **GRID_PAGE_KWARGS)
    doc.media.save(OUT / "document.png", optimize=True)
    manifest.append(
        {
            "name": "document",
            "image": "document.png",
            "question": strip_placeholder(doc.question),
            "expected": doc.answer,
        }
    )

    obj = generate("objects/count", SEED, 1)
    obj.media.save(OUT / "photo.png", optimize=True)
    manifest.append(
        {
            "name": "photo",
            "image": "photo.png",
            "question": strip_placeholder(obj.question),
            "expected": obj.answer,
        }
    )

    vid = generate("short_videos/direction", SEED, 2)
    write_video(OUT / "short_video.mp4", list(vid.media))
    manifest.append(
        {
            "name": "short video",
            "video": "short_video.mp4",
            "question": strip_placeholder(vid.question),
            "expected": vid.answer,
        }
    )

    span = math.ceil(LONG_FRAMES / SAMPLED_FRAMES)  # the needle survives uniform subsampling
    long = generate("long_videos/digit", SEED, 3, num_frames=LONG_FRAMES, needle_span=span)
    write_video(OUT / "long_video.mp4", [long.media.frame(i) for i in range(len(long.media))])
    manifest.append(
        {
            "name": "long video",
            "video": "long_video.mp4",
            "question": strip_placeholder(long.question),
            "expected": long.answer,
            "needle_depth": round(float(long.meta["depth"]), 3),
        }
    )

    # the scene's views as rendered, plus each view's instance mask: the demo passes the masks
    # and the model's processor draws the coarse-correspondence marks in its own style
    scene = generate("multiview/count", SEED, 4)
    names, masks = [], []
    for i, (view, mask) in enumerate(zip(scene.media, scene.meta["masks"], strict=True)):
        names.append(f"scene_view{i}.png")
        masks.append(f"scene_mask{i}.png")
        view.save(OUT / names[-1], optimize=True)
        Image.fromarray(np.asarray(mask, dtype=np.uint8), "L").save(OUT / masks[-1], optimize=True)
    manifest.append(
        {
            "name": "multi-view scene",
            "views": names,
            "masks": masks,
            "question": strip_placeholder(scene.question),
            "expected": scene.answer,
        }
    )

    (OUT / "examples.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(manifest)} examples to {OUT}")


if __name__ == "__main__":
    main()
