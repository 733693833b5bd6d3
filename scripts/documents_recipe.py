"""Write the documents variants of run 19's recipe (recipes/tiny_run19.yaml) tried in the
twenty-second to twenty-fourth sessions (runs 31-43 of docs/default_model.md; run 42 is
recipes/tiny.yaml).

Each is recipes/tiny_run19.yaml plus ``data.text_first``, a documents stage on 4-line grid pages
(the twenty-first session's probe: 8 pages per step, lr 5e-4, the patch-label loss for 500
steps) and the replay pages in the joint stage. The data (docs.json, docs_replay.json) is built
as that section shows.

    .venv/bin/python scripts/documents_recipe.py --order first --out runs/s22/run32.yaml
    OMP_NUM_THREADS=1 .venv/bin/torchrun --standalone --nproc_per_node 2 \\
        -m oryx_mllm.cli train runs/s22/run32.yaml

Runs: 31 ``--order after --joint-steps 1850``; 32 ``--order first --joint-steps 2000``; 33
``--order first --fast --video-steps 700 --joint-steps 2200``; 34 ``--order mixed --joint-steps
2200``; 35 ``--order first --text-first image video``. Runs 36-40 are listed with their commands
in docs/default_model.md ("Documents and the needle together"); run 39 is ``--order first
--repeat-question --needle-align 300 200 --needle-replay --joint-steps 2000``, and runs 41-43
(twenty-fourth session) are that with ``--docs-steps 5000`` and ``--seed 1`` / ``0`` / ``2``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

DATA = "runs/tiny/data"
DOCUMENTS = {
    "name": "documents",
    "data": {"train": [f"{DATA}/docs.json"]},
    "stage": {"name": "documents_on_a_grid"},
    "optim": {"lr": 5.0e-4, "warmup_ratio": 0.05},
    "align": {"weight": 1.0, "until_step": 500},
    "per_device_batch_size": 4,  # x 2 processes = the probe's 8 pages per step
    "max_steps": 3000,
}
FAST = {"group_lr": {"vision_resampler": 1.0e-2, "mm_projector": 1.0e-2}}


@dataclass
class Variant:
    """How a variant differs from recipes/tiny_run19.yaml (besides the documents stage)."""

    order: str  # where the documents stage goes: first, after (the needle stages), mixed
    fast: bool = False  # the connector at lr 1e-2 in the ignite and video stages
    text_first: list[str] = field(default_factory=lambda: ["image"])
    repeat_question: bool = False  # data.repeat_question: the question again after the media
    video_steps: int = 400
    joint_steps: int = 2600
    # steps of the patch-label loss on the needle frames (records' frame_text) in the ignite and
    # the video stage (0: off)
    needle_align: tuple[int, int] = (0, 0)
    needle_replay: bool = False  # the replay pages in the ignite and the video stage too
    joint_docs: list[str] = field(default_factory=lambda: [f"{DATA}/docs_replay.json"])
    docs_steps: int = 3000  # the documents stage's steps (8 pages each)
    seed: int | None = None  # None: the base recipe's


def variant(base: dict, v: Variant, output_dir: str) -> dict:
    recipe = {**base, "output_dir": output_dir}
    recipe["data"] = {**base["data"], "text_first": v.text_first}
    if v.repeat_question:
        recipe["data"]["repeat_question"] = True
    if v.seed is not None:
        recipe["seed"] = v.seed
    documents = {**DOCUMENTS, "max_steps": v.docs_steps}
    stages = {s["name"]: dict(s) for s in base["stages"]}
    ignite, video, joint = stages["ignite"], stages["video"], stages["joint"]
    video["max_steps"] = v.video_steps
    joint["max_steps"] = v.joint_steps
    joint["data"] = {"train": [*joint["data"]["train"], *v.joint_docs]}
    if v.fast:
        ignite["optim"] = video["optim"] = FAST
    for stage, steps in zip((ignite, video), v.needle_align, strict=True):
        if steps:
            stage["align"] = {"weight": 1.0, "until_step": steps}
        if v.needle_replay:
            stage["data"] = {"train": [*stage["data"]["train"], f"{DATA}/docs_replay.json"]}
    if v.order == "first":
        recipe["stages"] = [documents, ignite, video, joint]
    elif v.order == "after":
        recipe["stages"] = [ignite, video, documents, joint]
    else:  # the ignite data mixed into the documents stage
        mixed = {
            **documents,
            "name": "ignite",
            "stage": {"name": "ignite_needle_colour_and_documents"},
        }
        mixed["data"] = {"train": [*ignite["data"]["train"], *documents["data"]["train"]]}
        recipe["stages"] = [mixed, video, joint]
    return recipe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--order", choices=("first", "after", "mixed"), required=True)
    p.add_argument("--fast", action="store_true", help="connector at lr 1e-2 in ignite and video")
    p.add_argument("--text-first", nargs="+", default=["image"])
    p.add_argument(
        "--repeat-question", action="store_true", help="ask the question again after the media"
    )
    p.add_argument("--video-steps", type=int, default=400)
    p.add_argument("--joint-steps", type=int, default=2600)
    p.add_argument(
        "--needle-align",
        nargs=2,
        type=int,
        default=(0, 0),
        metavar=("IGNITE", "VIDEO"),
        help="steps of the patch-label loss on the needle frames in the ignite and video stages",
    )
    p.add_argument(
        "--needle-replay", action="store_true", help="replay pages in the ignite and video stages"
    )
    p.add_argument(
        "--joint-docs",
        nargs="+",
        default=[f"{DATA}/docs_replay.json"],
        help="page files added to the joint stage's data",
    )
    p.add_argument("--docs-steps", type=int, default=3000, help="the documents stage's steps")
    p.add_argument("--seed", type=int, default=None, help="the run's seed (default: the base's)")
    p.add_argument("--base", default="recipes/tiny_run19.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--output-dir", default=None, help="the run's folder (default: runs/<out stem>)")
    a = p.parse_args()
    for flag in ("docs_steps", "video_steps", "joint_steps"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(a, flag)}")
    if not Path(a.base).is_file():
        p.error(f"--base {a.base}: no such recipe file")
    base = yaml.safe_load(Path(a.base).read_text())
    out = Path(a.out)
    output_dir = a.output_dir or f"runs/{out.stem}"
    v = Variant(**{f.name: getattr(a, f.name) for f in fields(Variant)})
    v.needle_align = tuple(v.needle_align)
    recipe = variant(base, v, output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(recipe, sort_keys=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
