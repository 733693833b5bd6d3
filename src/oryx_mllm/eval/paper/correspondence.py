"""Coarse correspondences (paper Sec. 3.2.1, Table 7b): multi-view questions with and without
marks.

Held-out multi-view scenes (2-6 views of spheres and cubes: distinct-object count, left/right and
closer-to-camera in the first view) are answered twice by the same model: plain views, and views
with coarse-correspondence marks (a labelled disc on every visible object, the same label for the
same object in every view, drawn by the preprocessing from the scene's ``mark_points``). The
two answers of each scene are paired: the notes give, per task, the scenes right only with marks
and only without, and the exact McNemar p-value (:mod:`oryx_mllm.eval.paired`); on the embedded
model a gain of a few points needs hundreds of scenes to tell from noise.
"""

from __future__ import annotations

from dataclasses import asdict

from oryx_mllm.eval.paired import compare_pairs
from oryx_mllm.eval.paper.common import (
    PaperConfig,
    Table,
    accuracy,
    answer_samples,
    mean,
    question_text,
)
from oryx_mllm.eval.paper.samples import held_out


def run(pipe, cfg: PaperConfig) -> Table:
    samples = held_out("multiview_scenes", cfg.seed, cfg.multiview_samples)
    tasks = sorted({s.task for s in samples})
    rows, correct = [], {}
    for marked in (False, True):

        def message(s, marked=marked):
            marks = s.meta["mark_points"] if marked else None
            return pipe.messages_for(question_text(s), views=s.media, marks=marks)

        scored = answer_samples(pipe, samples, message, cfg.batch_size, max_new_tokens=6)
        correct[marked] = [sc.correct for sc in scored]
        row = {"marks (C.C.)": "yes" if marked else "no", "accuracy": accuracy(scored)}
        for t in tasks:
            row[t.split("/")[1]] = accuracy([sc for sc, s in zip(scored, samples) if s.task == t])
        row["visual tokens"] = mean([s.visual_tokens for s in scored])
        rows.append(row)
    paired = {
        t: compare_pairs(
            [(m, p) for m, p, s in zip(correct[True], correct[False], samples) if s.task == t]
        )
        for t in tasks
    }
    return Table(
        name="correspondence",
        title="Coarse correspondences (Table 7b): multi-view accuracy with and without marks",
        columns=["marks (C.C.)", "accuracy", *[t.split("/")[1] for t in tasks], "visual tokens"],
        rows=rows,
        notes=[
            f"{len(samples)} held-out multi-view scenes (seed {cfg.seed}); exact-match accuracy",
            "paired, the same scenes with and without marks (right only with / only without; "
            "exact McNemar p): "
            + "; ".join(
                f"{t.split('/')[1]} {c.a_only} / {c.b_only}, p = {c.p_value:.2g} (n = {c.n})"
                for t, c in paired.items()
            ),
        ],
        data={
            "paired": {t: asdict(c) for t, c in paired.items()},
            "paired_a_b": ["with marks", "without marks"],
        },
    )
