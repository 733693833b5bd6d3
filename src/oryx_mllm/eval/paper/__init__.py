"""The paper's experiments in miniature, on the embedded default model (``oryx eval paper``).

=================  =========================================  ===============================
experiment         paper                                      module
=================  =========================================  ===============================
needle             App. C.1, Fig. 10 (video NIAH heatmap)     :mod:`.needle`
resolution         Fig. 3, Table 5a (native vs fixed/tiles)   :mod:`.resolution`
compression        Table 5b / 9 (1x, 2x2, 4x4)                :mod:`.compression`
correspondence     Table 7b (coarse correspondences)          :mod:`.correspondence`
efficiency         Table 6, Fig. 11 (encoder speed, memory)   :mod:`.efficiency`
=================  =========================================  ===============================

Each writes ``<out>/<name>.md`` and ``<out>/<name>.json`` (and ``<name>.png`` where the paper has
a figure); :func:`run_paper` also writes ``<out>/summary.md`` with all tables and the command.
All accuracy numbers are exact match on held-out synthetic samples (test seeds >= 1_000_000).
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from oryx_mllm.errors import ConfigError
from oryx_mllm.eval.paper import compression, correspondence, efficiency, needle, resolution
from oryx_mllm.eval.paper.common import PaperConfig, Table

log = logging.getLogger(__name__)

Experiment = tuple[Callable[..., Table], Callable[[Table, Path], None] | None]

EXPERIMENTS: dict[str, Experiment] = {
    "needle": (needle.run, needle.plot),
    "resolution": (resolution.run, resolution.plot),
    "compression": (compression.run, None),
    "correspondence": (correspondence.run, None),
    "efficiency": (efficiency.run, efficiency.plot),
}


def prepare_run(out: str | Path, only: Sequence[str] | None = None) -> tuple[Path, list[str]]:
    """Check the experiment names and create the output folder, before any model is loaded.

    Returns ``(out, names)``; :class:`ConfigError` names an unknown experiment or an unusable
    ``out`` (an existing file, a path under a file, no permission).
    """
    names = list(only or EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ConfigError(
            f"unknown experiment(s) {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(EXPERIMENTS)}"
        )
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output folder {out} cannot be created: {exc.strerror}") from exc
    return out, names


def run_paper(
    pipe,
    out: str | Path,
    config: PaperConfig | None = None,
    only: Sequence[str] | None = None,
    command: str | None = None,
    model_name: str = "",
    progress: Callable[[str], None] | None = None,
) -> list[Table]:
    """Run the selected experiments (all by default) and write their tables/figures to ``out``."""
    cfg = config or PaperConfig.full()
    out, names = prepare_run(out, only)
    torch.manual_seed(0)
    tables = []
    for name in names:
        fn, plot = EXPERIMENTS[name]
        if progress:
            progress(name)
        start = time.perf_counter()
        table = fn(pipe, cfg)
        if plot is not None and table.rows:
            plot(table, out / f"{name}.png")
            table.figure = str(out / f"{name}.png")
        table.seconds = time.perf_counter() - start
        table.write(out)
        tables.append(table)
    header = [
        "# Oryx paper experiments in miniature",
        "",
        f"- model: {model_name or 'embedded default'}",
        f"- mode: {'quick' if cfg.quick else 'full'}; held-out synthetic seed {cfg.seed}",
        f"- machine: {platform.platform()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {pipe.model.device}",
        f"- total wall time: {sum(t.seconds for t in tables):.1f} s",
    ]
    if command:
        header.append(f"- command: `{command}`")
    text = "\n".join(header) + "\n\n" + "\n".join(t.to_markdown() for t in tables)
    (out / "summary.md").write_text(text)
    (out / "config.json").write_text(json.dumps(cfg.__dict__, indent=2, default=list))
    return tables


__all__ = ["EXPERIMENTS", "PaperConfig", "Table", "prepare_run", "run_paper"]
