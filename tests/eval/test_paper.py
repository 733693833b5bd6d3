"""``oryx eval paper`` machinery on a tiny random model with tiny counts (fast)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from typer.testing import CliRunner

from oryx_mllm.errors import ConfigError, ContextLengthError
from oryx_mllm.eval.paper import EXPERIMENTS, PaperConfig, run_paper
from oryx_mllm.eval.paper.needle import uniform_indices
from oryx_mllm.eval.paper.resolution import partition_tiles, rescale_to_area
from oryx_mllm.pipeline import OryxPipeline

TINY = dataclasses.replace(
    PaperConfig.quick_config(),
    needle_frame_counts=(100, 400),
    needle_depths=(0.0, 1.0),
    needle_oryx_frames=16,
    needle_baseline_frames=4,
    resolution_samples=1,
    resolution_fixed_sides=(384,),
    compression_short_samples=1,
    compression_long_samples=1,
    compression_long_frames=16,
    resolution_max_side=256,
    multiview_samples=1,
    efficiency_images=2,
    efficiency_resolutions=(128,),
    batch_size=4,
)


def test_helpers():
    from PIL import Image

    assert uniform_indices(5, 8) == [0, 1, 2, 3, 4]
    assert uniform_indices(1600, 32)[0] == 0 and uniform_indices(1600, 32)[-1] == 1599
    page = Image.new("RGB", (768, 448))
    assert (
        abs(rescale_to_area(page, 384).size[0] * rescale_to_area(page, 384).size[1] - 384**2) < 800
    )
    tiles = partition_tiles(page)  # round(448/384) = 1 row, round(768/384) = 2 cols + thumbnail
    assert len(tiles) == 3 and all(t.size == (384, 384) for t in tiles)


def test_run_paper_writes_every_table(tiny_model_dir, tmp_path):
    pipe = OryxPipeline.from_pretrained(tiny_model_dir)
    tables = run_paper(pipe, tmp_path, TINY, command="pytest")
    assert [t.name for t in tables] == list(EXPERIMENTS)
    for name in EXPERIMENTS:
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["rows"], name
        assert (tmp_path / f"{name}.md").read_text().startswith("### ")
    for name in ("needle", "resolution", "efficiency"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    needle = json.loads((tmp_path / "needle.json").read_text())["data"]
    assert needle["needle_hit_rate"]["oryx_4x4"] == 1.0  # the Oryx sampler always sees the needle
    assert set(needle["accuracy"]) == {"baseline_32f", "oryx_4x4"}
    comp = json.loads((tmp_path / "compression.json").read_text())["rows"]
    for videos in ("short videos", "long videos"):
        tokens = [r["visual tokens"] for r in comp if r["videos"] == videos]
        assert tokens[0] > tokens[1] > tokens[2]  # 1x > 2x2 > 4x4
    rows = json.loads((tmp_path / "resolution.json").read_text())["rows"]
    assert [r["input policy"] for r in rows] == [
        "processor default",
        "native",
        "fixed_384",
        "partition_384",
    ]
    assert all(0.0 <= r["grid pages"] <= 1.0 and r["visual tokens (grid)"] > 0 for r in rows)
    assert "summary.md" in {p.name for p in tmp_path.iterdir()}


def test_resolution_reads_the_grid_pages_as_a_second_page_set(tiny_model_dir):
    from oryx_mllm.eval.paper import resolution

    pipe = OryxPipeline.from_pretrained(tiny_model_dir)
    table = resolution.run(pipe, TINY)
    tokens = {r["input policy"]: r["visual tokens (grid)"] for r in table.rows}
    # a 256 x 64 page is 16 x 4 patches natively; 384² of area at its aspect ratio is far more
    assert tokens["native"] < tokens["fixed_384"]
    assert "; 4 grid pages, 256x64 or 256x96 px, one character per 16 px patch" in table.notes[0]


def test_correspondence_pairs_each_scene_with_and_without_marks(tiny_model_dir):
    from oryx_mllm.eval.paper import correspondence

    pipe = OryxPipeline.from_pretrained(tiny_model_dir)
    table = correspondence.run(pipe, dataclasses.replace(TINY, multiview_samples=4))
    paired = table.data["paired"]
    assert set(paired) == {"multiview/closer", "multiview/count", "multiview/left_right"}
    for task, v in paired.items():
        assert v["n"] == 4
        assert v["both"] + v["a_only"] + v["b_only"] + v["neither"] == 4
        assert 0.0 < v["p_value"] <= 1.0
        by_marks = {r["marks (C.C.)"]: r[task.split("/")[1]] for r in table.rows}
        assert (by_marks["yes"], by_marks["no"]) == (v["accuracy_a"], v["accuracy_b"])
    assert "exact McNemar p" in table.notes[1]


def test_cli_eval_paper_only(tiny_model_dir, tmp_path, monkeypatch):
    from oryx_mllm import cli

    monkeypatch.setattr(
        "oryx_mllm.eval.paper.PaperConfig.quick_config", classmethod(lambda c: TINY)
    )
    result = CliRunner().invoke(
        cli.app,
        [
            "eval",
            "paper",
            "--quick",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path),
            "--only",
            "correspondence",
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "correspondence.md").exists() and (tmp_path / "summary.md").exists()


def test_run_paper_names_an_unknown_experiment(tmp_path):
    with pytest.raises(ConfigError, match="'bogus'; choose from needle, resolution, compression"):
        run_paper(None, tmp_path, TINY, only=["needle", "bogus"])


def test_run_paper_rejects_a_file_as_output_folder(tmp_path):
    out = tmp_path / "results.txt"
    out.write_text("")
    with pytest.raises(
        ConfigError, match=re.escape(f"output folder {out} cannot be created: File exists")
    ):
        run_paper(None, out, TINY)


def test_cli_eval_paper_bad_only_fails_before_loading_the_model(tmp_path):
    from oryx_mllm import cli

    args = ["eval", "paper", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "o"),
            "--only", "bogus"]  # fmt: skip
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "error: unknown experiment(s) 'bogus'; choose from needle" in result.output


def test_cli_eval_paper_out_that_is_a_file_is_an_error(tmp_path):
    from oryx_mllm import cli

    (tmp_path / "results.txt").write_text("")
    args = ["eval", "paper", "--out", str(tmp_path / "results.txt"), "--only", "needle"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "cannot be created: File exists" in " ".join(result.output.split())  # rich wraps


def test_cli_eval_paper_reports_errors_raised_by_run_paper(tiny_model_dir, tmp_path, monkeypatch):
    from oryx_mllm import cli

    def fail(*args, **kwargs):
        raise ContextLengthError("prompt too long")

    monkeypatch.setattr("oryx_mllm.eval.paper.run_paper", fail)
    args = ["eval", "paper", "--model", str(tiny_model_dir), "--out", str(tmp_path)]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "error: prompt too long" in result.output
