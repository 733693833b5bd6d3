"""The ``oryx`` command line (typer + rich)."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from oryx_mllm.errors import OryxError

app = typer.Typer(
    help="Oryx multimodal LLM: native-resolution images, videos and 3D scenes on demand.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def example_files() -> list[Path]:
    """The example images bundled with the package."""
    root = resources.files("oryx_mllm") / "assets" / "examples"
    return sorted(Path(str(p)) for p in root.iterdir() if p.suffix in {".png", ".jpg"})


def _fail(exc: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


def _encode_table(paths: list[Path], encoder_weights: Path | None, title: str) -> None:
    import torch

    from oryx_mllm.processing.image import preprocess_image
    from oryx_mllm.vision import OryxViT, OryxViTConfig

    if encoder_weights is None:
        torch.manual_seed(0)
        encoder = OryxViT(OryxViTConfig.tiny(hidden_size=192, depth=4, num_heads=3)).eval()
    else:
        encoder = OryxViT.from_pretrained(encoder_weights).eval()

    table = Table(title=title)
    for col in ("image", "native size", "encoded size", "patch grid", "tokens", "encode ms"):
        table.add_column(col, justify="right" if col != "image" else "left")
    for path in paths:
        visual = preprocess_image(path)
        high = visual.frames[1]  # the native-resolution view
        with torch.inference_mode():
            encoder.encode([high])  # warm the position-table cache for a fair time
            start = time.perf_counter()
            feats, grids = encoder.encode([high])
            ms = (time.perf_counter() - start) * 1e3
        w, h = visual.original_size
        table.add_row(
            path.name,
            f"{w}x{h}",
            f"{high.shape[2]}x{high.shape[1]}",
            f"{grids[0][0]}x{grids[0][1]}",
            str(feats[0].shape[0]),
            f"{ms:.1f}",
        )
    console.print(table)


@app.command()
def demo() -> None:
    """Encode the bundled example images at native resolution and show what OryxViT sees."""
    try:
        _encode_table(
            example_files(),
            None,
            "OryxViT (small, randomly initialised) on the bundled examples, native resolution",
        )
    except OryxError as exc:
        _fail(exc)


@app.command()
def encode(
    images: list[Path] = typer.Argument(..., help="Image files to encode."),
    weights: Path | None = typer.Option(
        None, help="oryx_vit.pth / .safetensors / saved folder; default: small random encoder."
    ),
) -> None:
    """Encode images with OryxViT and print their patch grids, token counts and timings."""
    try:
        _encode_table(images, weights, "OryxViT encode")
    except OryxError as exc:
        _fail(exc)


@app.command()
def train(
    recipe: Path = typer.Argument(
        ..., help="A training recipe (YAML), e.g. recipes/stage1b_image_sft.yaml."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a recipe value: --set optim.lr=1e-4 --set max_steps=10"
    ),
) -> None:
    """Train with a recipe. Launch with `accelerate launch` or `torchrun` for several processes."""
    import logging

    from oryx_mllm.train.config import load_recipe
    from oryx_mllm.train.trainer import train as run_training

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_recipe(recipe, set_)
        result = run_training(cfg)
    except OryxError as exc:
        _fail(exc)
    console.print(
        f"trained {result.steps} steps; final loss {result.losses[-1] if result.losses else float('nan'):.4f}; "
        f"skipped samples {result.skipped}; model saved to {result.final_model}"
    )


if __name__ == "__main__":
    app()
