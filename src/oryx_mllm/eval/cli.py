"""``oryx eval ...``: the paper's experiments and the lmms-eval benchmark command."""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console

from oryx_mllm.errors import ConfigError, OryxError

eval_app = typer.Typer(
    help="Evaluate: the paper's experiments in miniature, real benchmarks via lmms-eval.",
    no_args_is_help=True,
)
console = Console()


@eval_app.command("paper")
def paper(
    quick: bool = typer.Option(False, "--quick", help="Small counts/grids: minutes on a CPU."),
    out: Path = typer.Option(Path("paper_results"), "--out", help="Output folder."),
    model: Path | None = typer.Option(
        None, "--model", help="Oryx model folder; default: the embedded default model."
    ),
    only: list[str] = typer.Option(
        [],
        "--only",
        help="Run only these experiments (repeatable): needle, resolution, "
        "compression, correspondence, efficiency.",
    ),  # fmt: skip
) -> None:
    """Run the paper's experiments in miniature; write markdown + JSON + PNG to --out.

    Needle heatmap, resolution, compression, coarse correspondences, encoder efficiency.
    """
    from oryx_mllm.cli import _fail, _load_pipeline
    from oryx_mllm.eval.paper import PaperConfig, prepare_run, run_paper

    cfg = PaperConfig.quick_config() if quick else PaperConfig.full()
    command = "oryx " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        prepare_run(out, only)  # a bad --only / --out fails before the model is loaded
        tables = run_paper(
            _load_pipeline(model, None),
            out,
            cfg,
            only=only or None,
            command=command,
            model_name=str(model) if model else "embedded default (oryx-tiny)",
            progress=lambda name: console.print(f"[bold]running[/] {name} ..."),
        )
    except OryxError as exc:
        _fail(exc)
    for t in tables:
        console.print(f"{t.name}: {t.seconds:.1f} s -> {out / (t.name + '.md')}")
    console.print(f"summary: {out / 'summary.md'}")


def check_lmms_eval_importable() -> None:
    """lmms-eval's entry point imports: a missing package (lmms-eval itself, or one of its
    dependencies after a ``pip install --no-deps``) is a ConfigError naming it, before a child
    process would die with an import traceback."""
    try:
        importlib.import_module("lmms_eval.__main__")
    except ModuleNotFoundError as exc:
        what = "lmms-eval" if (exc.name or "").split(".")[0] == "lmms_eval" else repr(exc.name)
        raise ConfigError(
            f"lmms-eval cannot start: {what} is not installed; install the evaluation extra "
            "with its dependencies: pip install 'oryx-mllm[eval]'"
        ) from exc


@eval_app.command("lmms")
def lmms(
    tasks: str = typer.Argument(
        ..., help="lmms-eval task names, comma-separated (e.g. mmbench_en_dev)."
    ),
    model_args: str = typer.Option(
        "", help="OryxLmms model args, e.g. pretrained=/models/Oryx-7B,compression=4"
    ),
    batch_size: int = typer.Option(1, min=1, help="Requests per batch."),
    output_path: Path = typer.Option(
        Path("lmms_results"), file_okay=False, help="lmms-eval --output_path (a folder)."
    ),
    limit: int | None = typer.Option(
        None, min=1, help="Evaluate only the first N docs of each task."
    ),
) -> None:
    """Run lmms-eval benchmarks with the Oryx adapter (lmms-eval --model oryx).

    Needs lmms-eval and the benchmark datasets (downloaded by lmms-eval from the Hugging Face Hub).
    """
    import subprocess

    from oryx_mllm.cli import _fail

    names = [t.strip() for t in tasks.split(",") if t.strip()]  # "a, b," -> a,b
    if not names:
        _fail(ConfigError(f"no lmms-eval task named in {tasks!r}; e.g. mmbench_en_dev"))
    try:
        check_lmms_eval_importable()
    except ConfigError as exc:
        _fail(exc)
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "oryx", "--tasks", ",".join(names),
           "--batch_size", str(batch_size), "--output_path", str(output_path), "--log_samples"]  # fmt: skip
    if model_args:
        cmd += ["--model_args", model_args]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    console.print("$ " + " ".join(shlex.quote(c) for c in cmd))
    raise typer.Exit(code=subprocess.call(cmd))
