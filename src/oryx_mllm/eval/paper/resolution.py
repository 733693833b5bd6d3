"""Native resolution versus fixed sizes versus dynamic partition (paper Fig. 3, Table 5a).

Two sets of held-out synthetic pages are read by the same model under the processor's own
settings (``processor default``: e.g. the embedded model caps images at 320² pixels) and under
four input policies, compared with the image cap raised to ``resolution_max_side``² so that the
policy alone decides the size:

- **free-layout pages**: the ``documents`` family (6 x 11 px glyphs: codes, forms, bar charts,
  tables; the page sizes of :mod:`oryx_mllm.eval.synthetic`), ``resolution_samples`` per task;
- **grid pages**: 4 lines of digit codes set one character per 16 px patch, 256 px wide
  (:data:`oryx_mllm.data.build.GRID_PAGE_KWARGS`, the pages the embedded model was trained to
  read), ``4 x resolution_samples`` of them. Any rescale moves their characters off the patch
  grid, which the embedded model does not read: for it a lower score after a rescale says
  "off the grid", not "illegible".

The policies:

- **native**: the page as it is (OryxViT at native resolution);
- **fixed N²** (N in ``resolution_fixed_sides``: 384 and 768 like the paper, plus 160, which is
  to the embedded model's 320² cap what 384² is to the released models' larger inputs): the page
  rescaled to N² pixels *keeping its aspect ratio* (the paper's Fig. 3 protocol: "rescaled to
  specific overall number of pixels while maintaining the original aspect ratios");
- **partition 384²**: LLaVA-OneVision-style AnyRes -- a 384 x 384 thumbnail of the whole page
  plus ``rows x cols`` 384 x 384 tiles (``rows = max(1, round(H / 384))``, likewise ``cols``, the
  same rule as ``benchmarks/vit_throughput.py``), **each given to the model as a separate image
  input** (thumbnail first, then tiles row-major), because tiles are images to an AnyRes encoder
  and this model's image path is the one trained on pages.
"""

from __future__ import annotations

import math

from PIL import Image

from oryx_mllm.data.build import GRID_PAGE_KWARGS
from oryx_mllm.eval.paper.common import (
    PaperConfig,
    Table,
    accuracy,
    answer_samples,
    image_options,
    mean,
    processor_options,
    question_text,
)
from oryx_mllm.eval.paper.samples import held_out

TILE = 384
DEFAULT = "processor default"


def rescale_to_area(image: Image.Image, side: int) -> Image.Image:
    """``image`` resized to about ``side * side`` pixels with its aspect ratio kept."""
    w, h = image.size
    s = math.sqrt(side * side / (w * h))
    return image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC)


def partition_tiles(image: Image.Image, tile: int = TILE) -> list[Image.Image]:
    """Thumbnail + ``rows x cols`` tiles of ``tile`` x ``tile`` pixels (AnyRes, simplified)."""
    w, h = image.size
    rows, cols = max(1, round(h / tile)), max(1, round(w / tile))
    big = image.resize((cols * tile, rows * tile), Image.Resampling.BICUBIC)
    tiles = [image.resize((tile, tile), Image.Resampling.BICUBIC)]
    for r in range(rows):
        for c in range(cols):
            tiles.append(big.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile)))
    return tiles


def policies(cfg: PaperConfig) -> list[str]:
    return ["native", *(f"fixed_{n}" for n in cfg.resolution_fixed_sides), f"partition_{TILE}"]


def images_for(policy: str, image: Image.Image) -> list[Image.Image]:
    """The image input(s) of ``policy`` (``native``, ``fixed_N``, ``partition_384``)."""
    if policy in ("native", DEFAULT):
        return [image]
    kind, _, side = policy.partition("_")
    if kind == "fixed":
        return [rescale_to_area(image, int(side))]
    if kind == "partition":
        return partition_tiles(image, int(side))
    raise ValueError(f"unknown policy {policy!r}")


def run(pipe, cfg: PaperConfig) -> Table:
    page_sets = {  # label -> pages; columns "<label> pages" and "visual tokens (<label>)"
        "free-layout": held_out("documents", cfg.seed, cfg.resolution_samples),
        "grid": held_out(
            "documents/line_code", cfg.seed, 4 * cfg.resolution_samples, **GRID_PAGE_KWARGS
        ),
    }
    rows, per_task = [], {}
    default_cap = image_options(pipe).max_pixels
    raised = {"max_pixels": max(default_cap, cfg.resolution_max_side**2)}
    for policy in (DEFAULT, *policies(cfg)):

        def message(s, policy=policy):
            return pipe.messages_for(question_text(s), image=images_for(policy, s.media))

        row = {"input policy": policy}
        latencies = []
        with processor_options(pipe, image=None if policy == DEFAULT else raised):
            for label, samples in page_sets.items():
                scored = answer_samples(pipe, samples, message, cfg.batch_size, max_new_tokens=10)
                row[f"{label} pages"] = accuracy(scored)
                row[f"visual tokens ({label})"] = mean([s.visual_tokens for s in scored])
                latencies += [s.latency_s for s in scored]
                if label == "free-layout":
                    tasks = sorted({s.task for s in samples})
                    per_task[policy] = {
                        t: accuracy([sc for sc, s in zip(scored, samples) if s.task == t])
                        for t in tasks
                    }
        row["s / sample"] = mean(latencies)
        rows.append(row)
    free = [s.media.size for s in page_sets["free-layout"]]
    grid = sorted({f"{w}x{h}" for w, h in (s.media.size for s in page_sets["grid"])})
    return Table(
        name="resolution",
        title="Resolution (Fig. 3, Table 5a): document accuracy by input policy",
        columns=[
            "input policy",
            "free-layout pages",
            "grid pages",
            "visual tokens (free-layout)",
            "visual tokens (grid)",
            "s / sample",
        ],
        rows=rows,
        notes=[
            f"{len(free)} held-out free-layout pages (seed {cfg.seed}), "
            f"{min(min(z) for z in free)}-{max(max(z) for z in free)} px; "
            f"{len(page_sets['grid'])} grid pages, {' or '.join(grid)} px, one character "
            "per 16 px patch; exact-match accuracy",
            f"processor default: the model's own image cap ({default_cap} pixels); the other "
            f"rows raise the cap to {raised['max_pixels']} pixels so the policy decides the size",
            "fixed_N: aspect-preserving rescale to N² pixels; partition_384: 384² thumbnail + "
            "round(H/384) x round(W/384) tiles, each a separate image input",
            "free-layout pages per task: "
            + "; ".join(
                f"{p}: " + ", ".join(f"{t.split('/')[1]} {a:.2f}" for t, a in per_task[p].items())
                for p in (DEFAULT, *policies(cfg))
            ),
        ],  # fmt: skip
        data={"per_task": per_task},
    )


def plot(table: Table, path) -> None:
    """Grouped bar chart like the left panel of Fig. 3: the two page sets per input policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["input policy"] for r in table.rows]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    width = 0.4
    for k, (col, color) in enumerate((("free-layout pages", "#aaa"), ("grid pages", "#2a7"))):
        xs = [i + (k - 0.5) * width for i in range(len(names))]
        acc = [r[col] for r in table.rows]
        bars = ax.bar(xs, acc, width, color=color, label=col)
        ax.bar_label(bars, [f"{a:.2f}" for a in acc], fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("document accuracy")
    ax.legend(fontsize=7)
    ax.set_title("Synthetic documents: native vs fixed vs partition", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
