"""The ``oryx`` command line (typer + rich)."""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from oryx_mllm.errors import ConfigError, InvalidInputError, OryxError, error_message

app = typer.Typer(
    help="Oryx multimodal LLM: native-resolution images, videos and 3D scenes on demand.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

EXAMPLES = resources.files("oryx_mllm") / "assets" / "examples"


def example_manifest() -> list[dict]:
    """The bundled examples (``assets/examples/examples.json``) with absolute paths."""
    root = Path(str(EXAMPLES))
    items = json.loads((root / "examples.json").read_text())
    for item in items:
        for key in ("image", "video"):
            if key in item:
                item[key] = root / item[key]
        for key in ("views", "masks"):
            if key in item:
                item[key] = [root / v for v in item[key]]
    return items


def example_images() -> list[Path]:
    return sorted(Path(str(EXAMPLES)).glob("*.png"))


def _fail(exc: Exception) -> None:
    """Print ``error: <message>`` (an error from a DataLoader worker: its original message, not
    the worker's traceback) and exit with code 2."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(error_message(exc))}")
    raise typer.Exit(code=2)


def _load_pipeline(model: Path | None, vision_tower: Path | None, dtype: str | None = None):
    from transformers.utils import logging as hf_logging

    from oryx_mllm.pipeline import OryxPipeline

    # the spinner is the progress shown; transformers' per-tensor bar would draw over it
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with console.status(f"loading {model or 'the embedded default model'}"):
            return OryxPipeline.from_pretrained(
                model, vision_tower=str(vision_tower) if vision_tower else None, torch_dtype=dtype
            )
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def _describe_input(info) -> str:
    w, h = info.original_size or (0, 0)
    fw, fh = info.frame_size
    if info.modality == "image":
        return f"{w}x{h} image -> {fw}x{fh}"
    kind = "views" if info.modality == "multiview" else "frames"
    marks = f", marks on {info.marked_objects} objects" if info.marked_objects is not None else ""
    return f"{w}x{h}, {info.frames} {kind} at {fw}x{fh}{marks}"


def _ratio(r: int) -> str:
    return f"{r}x{r}" if r > 1 else "1x"


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
    for col in ("image", "native size", "encoded size", "patch grid (WxH)", "tokens", "encode ms"):
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
            f"{grids[0][1]}x{grids[0][0]}",  # grids are (h, w); every column reads W x H
            str(feats[0].shape[0]),
            f"{ms:.1f}",
        )
    console.print(table)


@app.command()
def demo(
    model: Path | None = typer.Option(
        None, help="An Oryx model folder; default: the embedded model."
    ),
) -> None:
    """Ask the model about the bundled examples: a document, a photo-like image, a short video,
    a 1,000-frame long video and a multi-view scene."""
    from oryx_mllm.pipeline import default_model_path

    if model is None and not (default_model_path() / "config.json").exists():
        console.print(
            "[yellow]The embedded default model is not in this install; showing what OryxViT "
            "sees instead (run `make tiny-model` to build it).[/]"
        )
        _encode_table(example_images(), None, "OryxViT (small, random) on the bundled examples")
        return
    try:
        pipe = _load_pipeline(model, None)
        # the inputs and questions are listed under the table, so that it fits 80 columns
        table = Table(
            title=f"Oryx demo ({model or 'embedded default model'})",
            caption="tokens: the visual tokens the LLM reads after compression",
            box=box.SIMPLE,
            pad_edge=False,
        )
        for col in ("example", "compression", "tokens"):
            table.add_column(col, no_wrap=True)
        table.add_column("answer", overflow="fold", style="bold")  # folds when long
        table.add_column("expected", overflow="fold")
        table.add_column("latency", no_wrap=True)
        examples, notes = example_manifest(), []
        for ex in examples:
            media = {k: ex[k] for k in ("image", "video", "views") if k in ex}
            if "masks" in ex:
                media["marks"] = _instance_masks(ex["masks"], ex["views"])
            answer = pipe.ask(ex["question"], max_new_tokens=16, **media)
            info = answer.inputs[0]
            notes.append(f"{ex['name']} ({_describe_input(info)}): {ex['question']}")
            table.add_row(
                ex["name"],
                _ratio(info.compression),
                str(answer.visual_tokens),
                answer.text,
                ex["expected"],
                f"{answer.latency_s:.2f}s",
            )
        console.print(table)
        for note in notes:
            console.print(f"[dim]{note}[/]")
    except OryxError as exc:
        _fail(exc)


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question to ask."),
    image: list[Path] = typer.Option([], "--image", help="An image file (repeatable)."),
    video: Path | None = typer.Option(None, "--video", help="A video file or a folder of frames."),
    views: list[Path] = typer.Option([], "--views", help="Views of one 3D scene (repeatable)."),
    masks: list[Path] = typer.Option(
        [],
        "--masks",
        help="Instance masks of the views, one per --views in the same order (single-channel "
        "PNG: 0 = background, k = object k): draws coarse-correspondence marks.",
    ),
    compression: int | None = typer.Option(
        None, help="Pooling ratio per input: 1 (all tokens), 2 (2x2), 4 (4x4); also 8, 16."
    ),
    max_visual_tokens: int | None = typer.Option(
        None,
        help="Visual token budget: the smallest compression that fits is chosen (with "
        "--compression, that ratio is kept and the budget only checked).",
    ),
    model: Path | None = typer.Option(
        None, help="An Oryx model folder (released or ours); default: the embedded model."
    ),
    vision_tower: Path | None = typer.Option(
        None, help="oryx_vit.pth, for released folders whose config points elsewhere."
    ),
    max_new_tokens: int = typer.Option(128, help="Longest answer in tokens."),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
    seed: int | None = typer.Option(None, help="Seed for sampling."),
    dtype: str | None = typer.Option(None, help="float32 | bfloat16 | float16."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
) -> None:
    """Ask a question about images, a video or a multi-view scene."""
    import dataclasses

    try:
        marks = _instance_masks(masks, views)
        pipe = _load_pipeline(model, vision_tower, dtype)
        kwargs = dict(
            image=list(image) or None,
            video=video,
            views=list(views) or None,
            marks=marks,
            compression=compression,
            max_visual_tokens=max_visual_tokens,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
        )
        if as_json:
            answer = pipe.ask(question, **kwargs)
            print(json.dumps(dataclasses.asdict(answer), default=str))
            return
        answer = _ask_with_progress(pipe, question, kwargs, max_new_tokens)
    except OryxError as exc:
        if as_json:  # a script reading stdout gets an object it can parse, not an empty line
            message = error_message(exc)
            print(json.dumps({"error": {"type": type(exc).__name__, "message": message}}))
            raise typer.Exit(code=2) from None
        _fail(exc)
    console.print(answer.text)
    for info in answer.inputs:
        for warning in info.warnings:
            err_console.print(f"[yellow]warning:[/] {warning}")
    parts = [
        f"{_describe_input(i)} ({_ratio(i.compression)}, {i.visual_tokens} tokens)"
        for i in answer.inputs
    ]
    err_console.print(
        f"[dim]{'; '.join(parts) or 'text only'} | prompt {answer.prompt_tokens} tokens | "
        f"{answer.completion_tokens} new tokens | {answer.latency_s:.2f}s[/]"
    )


def _instance_masks(masks: list[Path], views: list[Path]):
    """``--masks`` files -> per-view instance masks for the marks (None without ``--masks``)."""
    if not masks:
        return None
    if len(masks) != len(views):
        raise InvalidInputError(
            f"--masks needs one instance mask per view: {len(views)} --views, {len(masks)} --masks"
        )
    from oryx_mllm.processing.multiview import load_instance_mask

    return [load_instance_mask(m) for m in masks]


def _ask_with_progress(pipe, question: str, kwargs: dict, max_new_tokens: int):
    """Generate in a worker thread and show a progress bar fed by a token streamer."""
    import threading

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from transformers.generation.streamers import BaseStreamer

    class CountingStreamer(BaseStreamer):
        def __init__(self):
            self.new_tokens = 0
            self.prompt_seen = False

        def put(self, value):
            if not self.prompt_seen:  # the first call carries the prompt
                self.prompt_seen = True
                return
            self.new_tokens += int(value.numel())

        def end(self):
            pass

    streamer = CountingStreamer()
    result: dict = {}

    def run() -> None:
        try:
            result["answer"] = pipe.ask(question, streamer=streamer, **kwargs)
        except BaseException as exc:  # re-raised in the main thread
            result["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    columns = (TextColumn("[bold]decoding"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, transient=True, console=err_console) as bar:
        task = bar.add_task("decode", total=max_new_tokens)
        worker.start()
        while worker.is_alive():
            bar.update(task, completed=streamer.new_tokens)
            worker.join(0.1)
    if "error" in result:
        raise result["error"]
    return result["answer"]


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
    except (OryxError, OSError) as exc:  # OSError: output_dir not writable, disk full
        _fail(exc)
    close_process_group()
    if os.environ.get("RANK", "0") != "0":  # under torchrun: the main process reports
        return
    final = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
    console.print(
        f"trained {result.steps} steps; final loss {final}; skipped samples {result.skipped}; "
        f"model saved to {result.final_model}"
    )


def close_process_group() -> None:
    """Tear down torch.distributed's default group after a finished run under torchrun or
    accelerate launch. Left to interpreter exit, gloo's threads were once destroyed while still
    joinable and a rank that had saved everything died with SIGABRT ("terminate called without an
    active exception"), failing the whole launch."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # DistributedDataParallel sits in reference cycles that hold the group: collect them now,
        # while the interpreter is whole, so the group is really destroyed here and not during
        # interpreter shutdown
        gc.collect()
        dist.destroy_process_group()


@app.command("pretrain-vision")
def pretrain_vision(
    recipe: Path = typer.Argument(
        ..., help="A vision pretraining recipe, e.g. recipes/vision/tiny.yaml."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: --set steps=100"),
) -> None:
    """Pretrain an OryxViT from scratch on dense synthetic labels (the tiny model's SigLIP)."""
    from oryx_mllm.train.vision_pretrain import load_vision_recipe
    from oryx_mllm.train.vision_pretrain import pretrain_vision as run_pretraining

    try:
        out = run_pretraining(load_vision_recipe(recipe, set_))
    except (OryxError, OSError) as exc:  # OSError: output_dir not writable, disk full
        _fail(exc)
    console.print(f"vision encoder saved to {out}")


@app.command()
def serve(
    model: Path | None = typer.Option(None, help="Oryx model folder; default: the embedded model."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: str | None = typer.Option(None, help="Require `Authorization: Bearer <key>`."),
    media_root: list[Path] = typer.Option(
        [], help="Folder whose files requests may name by path / file:// URL (repeatable)."
    ),
    allow_remote_media: bool = typer.Option(False, help="Let requests fetch http(s) media URLs."),
    max_batch_size: int = typer.Option(8, help="Most requests answered by one model call."),
    batch_wait_ms: float = typer.Option(5.0, help="How long to gather a batch (ms)."),
    max_queue: int = typer.Option(64, help="Requests that may wait (429 beyond)."),
    workers: int = typer.Option(
        1, help="Batches run at once on the shared model (e.g. 2 on a multi-core CPU)."
    ),
    torch_threads: int | None = typer.Option(
        None, help="torch intra-op threads per worker (default: the cores / workers)."
    ),
    dtype: str | None = typer.Option(
        None, help="Weights dtype: float32 | bfloat16 | float16 (default: the checkpoint's)."
    ),
) -> None:
    """Serve the OpenAI-compatible chat API (images, videos, multi-view) and a chat page at /."""
    try:
        from oryx_mllm.serve.app import serve as run_server
        from oryx_mllm.serve.settings import ServeSettings
    except ImportError as exc:
        _fail(RuntimeError(f"{exc}; install the serving extra: pip install 'oryx-mllm[serve]'"))
    from pydantic import ValidationError

    try:
        settings = ServeSettings(
            model_path=model,
            host=host,
            port=port,
            api_key=api_key,
            media_root=media_root,
            allow_remote_media=allow_remote_media,
            max_batch_size=max_batch_size,
            batch_wait_ms=batch_wait_ms,
            max_queue=max_queue,
            workers=workers,
            torch_threads=torch_threads,
        )
    except ValidationError as exc:
        bad = "; ".join(
            f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors()
        )
        _fail(ConfigError(bad))
    try:
        pipe = _load_pipeline(model, None, dtype)
    except OryxError as exc:
        _fail(exc)
    run_server(settings, pipe)


# `oryx eval paper|lmms` (oryx_mllm/eval/cli.py)
from oryx_mllm.eval.cli import eval_app  # noqa: E402

app.add_typer(eval_app, name="eval")

if __name__ == "__main__":
    app()
