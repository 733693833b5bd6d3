"""The `oryx` command line on a tiny random model folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oryx_mllm.cli import app, example_manifest
from oryx_mllm.pipeline import OryxPipeline
from oryx_mllm.processing.options import ImageOptions, MultiViewOptions, VideoOptions
from oryx_mllm.processing.processor import OryxProcessor
from oryx_tiny import byte_tokenizer, tiny_model

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = byte_tokenizer()
    small = VideoOptions(min_pixels=64 * 64, max_pixels=64 * 64, multiple=64, long_multiple=64)
    processor = OryxProcessor(
        tok,
        image_options=ImageOptions(lowres_pixels=1024, max_pixels=256 * 256),
        video_options=small,
        multiview_options=MultiViewOptions(frame=small),
    )
    pipe = OryxPipeline(tiny_model("qwen2", tok), processor)
    folder = tmp_path_factory.mktemp("cli") / "model"
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.full((64, 96, 3), 200, dtype=np.uint8)).save(path)
    return path


def test_ask_json_reports_answer_and_visual_tokens(model_dir, image_file):
    result = runner.invoke(
        app,
        ["ask", "What is it?", "--image", str(image_file), "--model", str(model_dir), "--json",
         "--max-new-tokens", "4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["visual_tokens"] == 3 + 2 * 3 + 4 * 7  # low 32x32 view + 64x96 native view
    assert answer["inputs"][0]["compression"] == 1
    assert answer["completion_tokens"] <= 4


def test_ask_json_reports_both_sizes_as_width_height(model_dir, image_file):
    result = runner.invoke(
        app, ["ask", "Q", "--image", str(image_file), "--model", str(model_dir), "--json",
              "--max-new-tokens", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout.strip().splitlines()[-1])["inputs"][0]
    assert info["original_size"] == [96, 64]  # the 96 wide, 64 high PNG
    assert info["frame_size"] == [96, 64]  # encoded at native resolution: the same W x H


def test_ask_shows_no_transformers_loading_bar(model_dir, image_file):
    result = runner.invoke(
        app, ["ask", "Q", "--image", str(image_file), "--model", str(model_dir),
              "--max-new-tokens", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Loading weights" not in result.output  # the CLI's own spinner is the progress shown


def test_ask_plain_text_with_progress(model_dir, image_file):
    result = runner.invoke(
        app,
        ["ask", "What?", "--image", str(image_file), "--model", str(model_dir),
         "--max-new-tokens", "3", "--compression", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2x2" in result.output


def test_ask_with_corrupt_image_gives_clear_error(model_dir, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = runner.invoke(app, ["ask", "x", "--image", str(bad), "--model", str(model_dir)])
    assert result.exit_code == 2
    assert "broken.png" in result.output
    assert "Traceback" not in result.output


def test_ask_json_reports_errors_as_json(model_dir, tmp_path):
    missing = tmp_path / "missing.png"
    args = ["ask", "x", "--json", "--image", str(missing), "--model", str(model_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "error": {"type": "ImageNotFoundError", "message": f"{missing}: no such image file"}
    }


def test_ask_with_missing_model_folder(tmp_path):
    result = runner.invoke(app, ["ask", "x", "--model", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no Oryx model" in result.output


def test_bundled_examples_cover_every_modality():
    examples = example_manifest()
    kinds = {k for ex in examples for k in ("image", "video", "views") if k in ex}
    assert kinds == {"image", "video", "views"}
    for ex in examples:
        for key in ("image", "video"):
            if key in ex:
                assert ex[key].exists()
        for view in ex.get("views", []):
            assert view.exists()
    (scene,) = [ex for ex in examples if "views" in ex]
    assert len(scene["masks"]) == len(scene["views"])  # the demo draws the marks from these
    assert all(m.exists() for m in scene["masks"])


def test_demo_runs_on_a_model_folder(model_dir, monkeypatch):
    from rich.console import Console

    import oryx_mllm.cli as cli

    monkeypatch.setattr(cli, "console", Console(width=300))
    result = runner.invoke(app, ["demo", "--model", str(model_dir)])
    assert result.exit_code == 0, result.output
    for name in ("document", "photo", "short video", "long video", "multi-view scene"):
        assert name in result.output
    assert "marks on 5 objects" in result.output  # the scene's masks were drawn as marks


def test_demo_table_fits_an_80_column_terminal(model_dir, monkeypatch):
    from rich.console import Console

    import oryx_mllm.cli as cli

    monkeypatch.setattr(cli, "console", Console(width=80))
    result = runner.invoke(app, ["demo", "--model", str(model_dir)])
    assert result.exit_code == 0, result.output
    header = "example compression tokens answer expected latency"
    assert any(" ".join(line.split()) == header for line in result.output.splitlines())
    assert any(line.split()[:2] == ["multi-view", "scene"] for line in result.output.splitlines())


def test_serve_with_unknown_dtype_fails_before_serving(model_dir):
    result = runner.invoke(app, ["serve", "--model", str(model_dir), "--dtype", "float8"])
    assert result.exit_code == 2
    assert "unknown dtype 'float8'" in result.output


def test_serve_with_bad_settings_names_the_options(model_dir):
    result = runner.invoke(app, ["serve", "--model", str(model_dir), "--port", "-1",
                                 "--workers", "0"])  # fmt: skip
    assert result.exit_code == 2
    assert "--port: Input should be greater than or equal to 0" in " ".join(result.output.split())
    assert "--workers: Input should be greater than 0" in " ".join(result.output.split())


@pytest.mark.parametrize("command", ["train", "pretrain-vision"])
def test_a_binary_file_as_recipe_gives_clear_error(tmp_path, command):
    recipe = tmp_path / "red.png"
    recipe.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    result = runner.invoke(app, [command, str(recipe)])
    assert result.exit_code == 2
    assert "is not a text (UTF-8) file" in " ".join(result.output.split())


def test_pretrain_vision_with_bad_recipe_gives_clear_error(tmp_path):
    recipe = tmp_path / "v.yaml"
    recipe.write_text("output_dir: out\nkinds: {faces: 1.0}\n")
    result = runner.invoke(app, ["pretrain-vision", str(recipe)])
    assert result.exit_code == 2
    assert "unknown dense picture kinds" in result.output


def _scene_files(tmp_path, n: int = 2):
    """``n`` 96x96 views of two boxes (ids 1 and 2) and their instance masks (PNG, mode L)."""
    views, masks = [], []
    for v in range(n):
        img = np.full((96, 96, 3), 150, dtype=np.uint8)
        mask = np.zeros((96, 96), dtype=np.uint8)
        mask[10:40, 10 + 8 * v : 40 + 8 * v] = 1
        mask[60:90, 50:80] = 2
        img[mask > 0] = (200, 40, 40)
        views.append(tmp_path / f"view{v}.png")
        masks.append(tmp_path / f"mask{v}.png")
        Image.fromarray(img).save(views[-1])
        Image.fromarray(mask, "L").save(masks[-1])
    return views, masks


def test_ask_draws_marks_from_instance_masks(model_dir, tmp_path):
    views, masks = _scene_files(tmp_path)
    args = ["ask", "How many?", "--model", str(model_dir), "--max-new-tokens", "2"]
    args += [a for v in views for a in ("--views", str(v))]
    marked = runner.invoke(app, [*args, *(a for m in masks for a in ("--masks", str(m))), "--json"])
    assert marked.exit_code == 0, marked.output
    info = json.loads(marked.stdout.strip().splitlines()[-1])["inputs"][0]
    assert (info["modality"], info["marked_objects"]) == ("multiview", 2)
    plain = runner.invoke(app, [*args, "--json"])
    assert json.loads(plain.stdout.strip().splitlines()[-1])["inputs"][0]["marked_objects"] is None
    text = runner.invoke(app, [*args, "--masks", str(masks[0]), "--masks", str(masks[1])])
    assert text.exit_code == 0 and "marks on 2 objects" in text.output


def test_ask_with_masks_not_matching_the_views_gives_clear_error(model_dir, tmp_path):
    views, masks = _scene_files(tmp_path)
    base = ["ask", "How many?", "--model", str(model_dir)]
    one_mask = runner.invoke(
        app, [*base, "--views", str(views[0]), "--views", str(views[1]), "--masks", str(masks[0])]
    )
    assert one_mask.exit_code == 2 and "one instance mask per view" in one_mask.output
    colour = runner.invoke(
        app, [*base, "--views", str(views[0]), "--masks", str(views[1])]
    )  # an RGB picture given as a mask
    assert colour.exit_code == 2 and "single-channel" in colour.output
    assert "Traceback" not in one_mask.output + colour.output


def test_close_process_group_tears_down_the_default_group():
    import torch.distributed as dist

    from oryx_mllm.cli import close_process_group

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    assert dist.is_initialized()
    close_process_group()
    assert not dist.is_initialized()
    close_process_group()  # nothing to close: a single-process run
