"""Video needle in a haystack (paper Appendix C.1, Fig. 10).

A haystack video of ``N`` frames (100-1,600) hides one needle (a digit or a coloured shape on a
white card) at relative depth ``d``; the model is asked what it saw. Two ways to read the video
with the **same model**:

- **Oryx (4x4)**: ``F`` frames sampled uniformly (``F`` = ``needle_oryx_frames``, 256 by default:
  the released models' long-video maximum; all ``N`` when ``N <= F``), every frame pooled 4x4 by
  the Dynamic Compressor.
- **Baseline (32 frames)**: 32 frames sampled uniformly, pooled 2x2 (the paper's short-video
  setting): the LLaVA-Next-Video-style reading the paper compares against.

The frames are sampled here and handed to the processor as a frame list, with its frame limits
raised for the run so that it keeps them all (a model trained with fewer long-video frames, like
the embedded one with 32, is thereby asked to generalise to ``F`` frames).

The needle lasts ``needle_span(N, F)`` consecutive frames (the rule of
:mod:`oryx_mllm.eval.synthetic`: the gap between uniform picks plus one), so the Oryx sampler
always catches at least one needle frame: what is tested is whether a single strongly-compressed frame among ``F``
survives, not sampler luck. The 32-frame baseline catches it only when one of its 32 samples
lands on it (about ``32 / F`` of the time), which is the information loss the paper describes.
"""

from __future__ import annotations

import numpy as np

from oryx_mllm.data.synthetic import generate, list_tasks
from oryx_mllm.eval.paper.common import (
    PaperConfig,
    Table,
    accuracy,
    answer_samples,
    mean,
    processor_options,
    question_text,
    video_options,
)
from oryx_mllm.eval.paper.samples import needle_span

ARMS = ("baseline_32f", "oryx_4x4")


def uniform_indices(n: int, k: int) -> list[int]:
    """``min(n, k)`` frame indices spread uniformly from the first to the last frame."""
    if n <= k:
        return list(range(n))
    return [int(round(x)) for x in np.linspace(0, n - 1, k)]


def run(pipe, cfg: PaperConfig) -> Table:
    F = cfg.needle_oryx_frames
    vo = video_options(pipe)
    limits = {
        "max_frames": max(vo.max_frames, cfg.needle_baseline_frames),
        "long_max_frames": max(vo.long_max_frames, F, cfg.needle_baseline_frames),
    }
    with processor_options(pipe, video=limits):
        return _run(pipe, cfg, F)


def _run(pipe, cfg: PaperConfig, F: int) -> Table:
    tasks = list_tasks("long_videos")
    arms = {"oryx_4x4": (F, 4), "baseline_32f": (cfg.needle_baseline_frames, 2)}
    grid: dict[str, dict[tuple[int, float], float]] = {a: {} for a in ARMS}
    cost: dict[str, list[int]] = {a: [] for a in ARMS}
    frames_seen: dict[str, list[int]] = {a: [] for a in ARMS}
    hits: dict[str, list[bool]] = {a: [] for a in ARMS}
    k = 0
    for n in cfg.needle_frame_counts:
        span = needle_span(n, F)
        for depth in cfg.needle_depths:
            samples = []
            for _ in range(cfg.needle_samples):
                task = tasks[k % len(tasks)]
                samples.append(
                    generate(
                        task,
                        cfg.seed,
                        k,
                        num_frames=n,
                        depth=depth,
                        frame_size=cfg.needle_frame_size,
                        needle_span=span,
                    )
                )
                k += 1
            for arm, (num, ratio) in arms.items():
                idx = uniform_indices(n, num)

                def message(s, idx=idx, ratio=ratio):
                    frames = [s.media.frame(i) for i in idx]
                    return pipe.messages_for(question_text(s), video=frames, compression=ratio)

                scored = answer_samples(pipe, samples, message, cfg.batch_size, max_new_tokens=6)
                grid[arm][(n, depth)] = accuracy(scored)
                cost[arm] += [s.visual_tokens for s in scored]
                frames_seen[arm].append(len(idx))
                hits[arm] += [any(i in s.media.needle_frames for i in idx) for s in samples]

    rows = []
    for arm in ARMS:
        for depth in cfg.needle_depths:
            row = {"method": arm, "depth": depth}
            for n in cfg.needle_frame_counts:
                row[f"{n} fr."] = grid[arm][(n, depth)]
            rows.append(row)
        rows.append(
            {"method": arm, "depth": "mean", **{
                f"{n} fr.": mean([grid[arm][(n, d)] for d in cfg.needle_depths])
                for n in cfg.needle_frame_counts
            }}
        )  # fmt: skip
    overall = {a: mean(list(grid[a].values())) for a in ARMS}
    notes = [
        f"Oryx: up to {F} uniformly sampled frames at 4x4 compression; baseline: "
        f"{cfg.needle_baseline_frames} uniformly sampled frames at 2x2. Same model, same videos.",
        f"overall accuracy: baseline {overall['baseline_32f']:.3f}, Oryx {overall['oryx_4x4']:.3f}"
        f"; mean visual tokens per video: baseline {mean(cost['baseline_32f']):.0f}, "
        f"Oryx {mean(cost['oryx_4x4']):.0f}",
        "fraction of videos where a sampled frame shows the needle: baseline "
        f"{mean(hits['baseline_32f']):.3f}, Oryx {mean(hits['oryx_4x4']):.3f} "
        f"(needle span: needle_span(N, {F}) frames)",
        f"{cfg.needle_samples} sample(s) per cell (tasks {', '.join(tasks)}), "
        f"{cfg.needle_frame_size}px frames, held-out seed {cfg.seed}",
    ]
    return Table(
        name="needle",
        title="Video needle in a haystack (App. C.1, Fig. 10): accuracy by depth x frame count",
        columns=["method", "depth", *[f"{n} fr." for n in cfg.needle_frame_counts]],
        rows=rows,
        notes=notes,
        data={
            "frame_counts": list(cfg.needle_frame_counts),
            "depths": list(cfg.needle_depths),
            "accuracy": {
                a: [[grid[a][(n, d)] for n in cfg.needle_frame_counts] for d in cfg.needle_depths]
                for a in ARMS
            },
            "overall": overall,
            "oryx_frames": F,
            "frames_per_video": {a: frames_seen[a] for a in ARMS},
            "needle_hit_rate": {a: mean(hits[a]) for a in ARMS},
            "mean_visual_tokens": {a: mean(cost[a]) for a in ARMS},
        },  # fmt: skip
    )


def plot(table: Table, path) -> None:
    """Two heatmaps side by side like Fig. 10 (baseline left, Oryx right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = table.data
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    titles = {
        "baseline_32f": "Baseline: 32 uniformly sampled frames",
        "oryx_4x4": f"Oryx: {d['oryx_frames']} frames, 4x4 compression",
    }
    for ax, arm in zip(axes, ARMS):
        acc = np.array(d["accuracy"][arm], dtype=float)
        im = ax.imshow(acc, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto", origin="upper")
        ax.set_xticks(range(len(d["frame_counts"])), [str(n) for n in d["frame_counts"]])
        ax.set_yticks(range(len(d["depths"])), [f"{x:.2f}" for x in d["depths"]])
        ax.set_xlabel("frames in the video")
        ax.set_title(titles[arm], fontsize=9)
        for (i, j), v in np.ndenumerate(acc):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    axes[0].set_ylabel("needle depth")
    fig.colorbar(im, ax=axes, shrink=0.8, label="accuracy")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
