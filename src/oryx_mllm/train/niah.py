"""Long-video needle-in-a-haystack training data (paper Sec. 3.2.1).

Long movies (MovieNet: ~1000 frames) get captions for single frames and descriptions of the
difference between pairs of frames (written by an LLM, outside this module). This module turns
them into training records: the movie is uniformly subsampled to ``num_frames`` (256 in the
paper's long-video setting, 4x4 compression), the annotated frame(s) are re-inserted into the
subsampled sequence at random positions (when the subsampling did not already pick them), and
the question names the position(s) of the target frame(s) in the final sequence.

Input schema (a ``.json`` file holding one such object or a list of them, or a ``.jsonl`` file
with one per line)::

    {
      "id": "tt0120338",                  # optional, default: the video file's stem; must be
                                          # unique in the file (it seeds the random choices)
      "video": "movies/tt0120338.mp4",    # path relative to the data root, or a patch reference
      "num_frames": 1532,                 # frames in the source video; optional for a patch
                                          # reference (then len(size)), checked if both are given
      "captions": [{"frame": 812, "caption": "A man in a grey coat ..."}],
      "differences": [{"frames": [40, 1200], "difference": "In the first frame ..."}]
    }

All input frame indices are 0-based indices into the source video's decoded frames.
``captions`` and ``differences`` may each be missing or empty.

Output: one Oryx record per caption ("captioning") and per difference ("differing")::

    {
      "id": "tt0120338_captioning_0",
      "video_long": "movies/tt0120338.mp4",
      "frames": [2, 8, 14, ..., 812, ...],    # 0-based SOURCE frame indices, in sequence order
      "conversations": [
        {"from": "human", "value": "<video>\\nDescribe frame 37 of the video."},
        {"from": "gpt", "value": "A man in a grey coat ..."}
      ],
      "niah": {"task": "captioning", "source_frames": [812], "positions": [37]}
    }

``positions`` (and the numbers in the question) are **1-based** positions in ``frames``:
``frames[positions[k] - 1] == source_frames[k]``. The loader decodes exactly ``frames``, in order.

Subsampling: with ``T`` source frames and ``N = num_frames``, if ``T <= N`` every frame is kept;
otherwise frame ``k`` of the sequence is source frame ``floor((k + 0.5) * T / N)`` (the centre of
``N`` equal segments). A target frame that is missing replaces the frame at a uniformly random
position (never one holding another target), so the sequence length stays ``N``. Every random
choice comes from ``random.Random(f"{seed}:{video_id}:{task}:{k}")``: the output is a pure
function of the inputs and ``seed``, and adding a video does not change the others' samples.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from oryx_mllm.errors import DataError, OryxError
from oryx_mllm.files import atomic_write
from oryx_mllm.train.patchfile import MediaRef, parse_media_ref
from oryx_mllm.train.records import VIDEO_PLACEHOLDER, iter_json_records

CAPTIONING_TEMPLATES: tuple[str, ...] = (
    "Describe frame {i} of the video.",
    "What can be seen in frame {i} of the video?",
    "Write a caption for frame {i} of the video.",
)
DIFFERING_TEMPLATES: tuple[str, ...] = (
    "What is the difference between frame {i} and frame {j}?",
    "Compare frame {i} and frame {j} of the video. What is different?",
    "Describe how frame {j} differs from frame {i} of the video.",
)


@dataclass
class NiahVideo:
    """One annotated source video (the input schema in the module docstring)."""

    id: str
    video: MediaRef
    num_frames: int
    captions: list[tuple[int, str]] = field(default_factory=list)
    differences: list[tuple[tuple[int, int], str]] = field(default_factory=list)


def parse_niah_video(entry: object, index: int = 0) -> NiahVideo:
    """Validate one input object; :class:`DataError` names the video and the bad entry."""
    if not isinstance(entry, Mapping):
        raise DataError(f"NIAH video #{index}: expected an object, got {type(entry).__name__}")
    try:
        ref = parse_media_ref(entry.get("video"), what="video")
    except DataError as e:
        raise DataError(f"NIAH video #{index} ({entry.get('id')!r}): {e}") from None
    vid = entry.get("id")
    if vid is None:
        vid = Path(ref.path).stem if not ref.is_patch else f"{Path(ref.path).stem}_{ref.start}"
    vid = str(vid)

    def fail(msg: str) -> DataError:
        return DataError(f"NIAH video {vid!r}: {msg}")

    total = entry.get("num_frames")
    if ref.is_patch:
        if total is not None and total != ref.num_items:
            raise fail(f"num_frames {total} != {ref.num_items} frames in the patch reference")
        total = ref.num_items
    if not isinstance(total, int) or isinstance(total, bool) or total < 1:
        raise fail(f"'num_frames' must be an int >= 1 for a video file, got {total!r}")

    def frame(x: object, what: str) -> int:
        if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x < total:
            raise fail(f"{what}: frame {x!r} is not an index in [0, {total})")
        return x

    captions = []
    for k, c in enumerate(entry.get("captions") or []):
        if not isinstance(c, Mapping):
            raise fail(f"captions[{k}] is not an object")
        text = c.get("caption")
        if not isinstance(text, str) or not text.strip():
            raise fail(f"captions[{k}]: 'caption' must be a non-empty string")
        captions.append((frame(c.get("frame"), f"captions[{k}]"), text))
    differences = []
    for k, d in enumerate(entry.get("differences") or []):
        if not isinstance(d, Mapping):
            raise fail(f"differences[{k}] is not an object")
        pair, text = d.get("frames"), d.get("difference")
        if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
            raise fail(f"differences[{k}]: 'frames' must be a list of two frame indices")
        a, b = (frame(x, f"differences[{k}]") for x in pair)
        if a == b:
            raise fail(f"differences[{k}]: the two frames are the same ({a})")
        if not isinstance(text, str) or not text.strip():
            raise fail(f"differences[{k}]: 'difference' must be a non-empty string")
        differences.append(((a, b), text))
    return NiahVideo(vid, ref, total, captions, differences)


def uniform_frames(num_source_frames: int, num_frames: int) -> list[int]:
    """Uniformly subsample ``num_source_frames`` to at most ``num_frames`` (segment centres)."""
    t, n = num_source_frames, num_frames
    if t <= n:
        return list(range(t))
    return [(2 * k + 1) * t // (2 * n) for k in range(n)]


def insert_targets(
    frames: list[int], targets: Sequence[int], rng: random.Random
) -> tuple[list[int], list[int]]:
    """Make every target source frame appear in ``frames`` (a new list is returned).

    A target already present keeps its place; a missing one replaces the frame at a random
    position not holding another target. Returns ``(frames, positions)`` with 0-based
    ``positions[k]`` of ``targets[k]``.
    """
    frames = list(frames)
    if len(set(targets)) > len(frames):
        raise DataError(f"{len(set(targets))} target frames do not fit in {len(frames)} frames")
    where = {t: frames.index(t) for t in targets if t in frames}
    for t in targets:
        if t in where:
            continue
        taken = set(where.values())
        free = [p for p in range(len(frames)) if p not in taken]
        p = rng.choice(free)
        frames[p] = t
        where[t] = p
    return frames, [where[t] for t in targets]


def build_niah_samples(
    video: NiahVideo | Mapping,
    num_frames: int = 256,
    seed: int = 0,
    *,
    tasks: Sequence[str] = ("captioning", "differing"),
    captioning_templates: Sequence[str] = CAPTIONING_TEMPLATES,
    differing_templates: Sequence[str] = DIFFERING_TEMPLATES,
) -> list[dict]:
    """Oryx records (dicts, format in the module docstring) for one annotated video.

    Templates are ``str.format`` strings with ``{i}`` (and ``{j}`` for differing): the 1-based
    positions of the target frames; ``{n}`` is the sequence length, if a template wants to state
    it.
    """
    if num_frames < 2:
        raise DataError("num_frames must be >= 2")
    unknown = set(tasks) - {"captioning", "differing"}
    if unknown:
        raise DataError(f"unknown NIAH tasks {sorted(unknown)}")
    if not isinstance(video, NiahVideo):
        video = parse_niah_video(video)
    base = uniform_frames(video.num_frames, num_frames)
    jobs: list[tuple[str, list[int], str]] = []
    if "captioning" in tasks:
        jobs += [("captioning", [f], text) for f, text in video.captions]
    if "differing" in tasks:
        jobs += [("differing", list(pair), text) for pair, text in video.differences]
    out = []
    counters = {"captioning": 0, "differing": 0}
    for task, targets, answer in jobs:
        k = counters[task]
        counters[task] += 1
        rng = random.Random(f"{seed}:{video.id}:{task}:{k}")
        frames, positions = insert_targets(base, targets, rng)
        pos1 = [p + 1 for p in positions]
        templates = captioning_templates if task == "captioning" else differing_templates
        question = rng.choice(list(templates)).format(i=pos1[0], j=pos1[-1], n=len(frames))
        out.append(
            {
                "id": f"{video.id}_{task}_{k}",
                "video_long": video.video.to_json(),
                "frames": frames,
                "conversations": [
                    {"from": "human", "value": f"{VIDEO_PLACEHOLDER}\n{question}"},
                    {"from": "gpt", "value": answer},
                ],
                "niah": {"task": task, "source_frames": list(targets), "positions": pos1},
            }
        )
    return out


def build_niah_file(
    input_json: str | os.PathLike,
    output_json: str | os.PathLike,
    *,
    num_frames: int = 256,
    seed: int = 0,
    tasks: Sequence[str] = ("captioning", "differing"),
) -> int:
    """Read annotated videos (``.json`` object / list, or ``.jsonl``), write the records to
    ``output_json`` (a JSON list, or JSON lines if it ends in ``.jsonl``); return how many.

    Video ids must be unique: an id names the records and seeds their random choices, so two
    videos with one id (e.g. default ids of ``a/clip.mp4`` and ``b/clip.mp4``) would get clashing
    record ids and identical frame positions. Give such videos distinct ``"id"`` fields.
    """
    path, out = Path(input_json), Path(output_json)
    if path.is_dir():
        raise DataError(f"NIAH input {str(path)!r} is a directory, not a .json / .jsonl file")
    if out.is_dir():
        raise DataError(f"NIAH output {str(out)!r} is a directory, not a .json / .jsonl file")
    if path.suffix == ".jsonl":
        entries = [e for _, e in iter_json_records(path)]
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise DataError(f"NIAH input not found: {path}") from e
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
            ) from None
        entries = data if isinstance(data, list) else [data]
    videos = [parse_niah_video(entry, i) for i, entry in enumerate(entries)]
    first: dict[str, int] = {}
    for i, video in enumerate(videos):
        j = first.setdefault(video.id, i)
        if j != i:
            raise DataError(
                f"{path}: NIAH videos #{j} and #{i} have the same id {video.id!r} "
                "(ids seed the samples and must be unique: give them distinct 'id' fields)"
            )
    records: list[dict] = []
    for video in videos:
        records += build_niah_samples(video, num_frames, seed, tasks=tasks)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            if out.suffix == ".jsonl":
                for r in records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            else:
                json.dump(records, f, ensure_ascii=False)

    atomic_write(out, write)
    return len(records)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m oryx_mllm.train.niah INPUT OUTPUT [--num-frames 256] [--seed 0]``."""
    p = argparse.ArgumentParser(
        prog="python -m oryx_mllm.train.niah",
        description="Build long-video needle-in-a-haystack records.",
    )
    p.add_argument("input_json")
    p.add_argument("output_json")
    p.add_argument("--num-frames", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", default="captioning,differing")
    a = p.parse_args(argv)
    try:
        n = build_niah_file(
            a.input_json,
            a.output_json,
            num_frames=a.num_frames,
            seed=a.seed,
            tasks=a.tasks.split(","),
        )
    except OryxError as e:
        p.error(str(e))
    print(f"wrote {n} samples to {a.output_json}")


if __name__ == "__main__":
    main()
