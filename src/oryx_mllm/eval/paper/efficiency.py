"""Encoder efficiency (paper Appendix C.2, Table 6 and Fig. 11): native-resolution packed OryxViT
versus dynamic partition, throughput and memory.

This reuses ``benchmarks/vit_throughput.py`` (mixed-size image sets, the packed / padded / AnyRes
partition encoders, the timing loop and the peak-RSS probe) on **the embedded model's own
encoder** (and a SigLIP of the same width, depth and patch size for the partition baseline):

- Throughput (Table 6): one set of mixed-size images (random aspect ratios, sqrt(area) 384-1024
  px) encoded (a) packed at native resolution, one variable-length sequence, (b) as a zero-padded
  batch with the same weights, (c) as 384² AnyRes tiles + thumbnail through SigLIP.
- Memory (Fig. 11): peak memory of encoding one square image of each side, in a fresh process per
  point (``torch.cuda.max_memory_allocated`` on GPU, peak RSS on CPU), for native OryxViT and
  for the partition baseline.

The benchmark file lives in the source tree (``benchmarks/``), not in the installed package; when
it is missing the experiment says so instead of running.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import ModuleType

import torch

from oryx_mllm.eval.paper.common import PaperConfig, Table

BENCHMARK = Path(__file__).resolve().parents[4] / "benchmarks" / "vit_throughput.py"


def load_benchmark() -> ModuleType | None:
    """``benchmarks/vit_throughput.py`` as a module, or ``None`` outside a source checkout."""
    if not BENCHMARK.exists():
        return None
    spec = importlib.util.spec_from_file_location("oryx_vit_throughput", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def throughput(bench: ModuleType, encoder, cfg: PaperConfig) -> dict:
    device = next(encoder.parameters()).device
    dtype = next(encoder.parameters()).dtype
    p = encoder.config.patch_size
    sizes = bench.mixed_size_images(cfg.efficiency_images, 384, 1024, seed=0)
    images = bench.make_pixels(sizes, device, dtype)
    tiles = bench.anyres_tiles(images)
    siglip = bench.build_siglip(encoder.config, device, dtype)
    n = len(images)
    hmax, wmax = max(h for h, _ in sizes), max(w for _, w in sizes)
    runs = {
        "OryxViT native, packed": bench.with_rate(
            bench.time_it(partial(bench.packed_encode, encoder, images), device, cfg.efficiency_iters),
            n, tokens=sum(-(-h // p) * -(-w // p) for h, w in sizes),
        ),
        "OryxViT native, padded batch": bench.with_rate(
            bench.time_it(partial(bench.padded_encode, encoder, images), device, cfg.efficiency_iters),
            n, tokens=n * -(-hmax // p) * -(-wmax // p),
        ),
        "SigLIP dynamic partition (384² tiles)": bench.with_rate(
            bench.time_it(partial(siglip, pixel_values=tiles), device, cfg.efficiency_iters),
            n, tokens=tiles.shape[0] * (bench.TILE // p) ** 2,
        ),
    }  # fmt: skip
    return {"sizes_hw": sizes, "tiles": int(tiles.shape[0]), "runs": runs}


def memory_point(vision_config: dict, res: int, method: str, device: str) -> dict:
    """Peak memory of encoding one ``res`` x ``res`` image (run in a fresh process)."""
    bench = load_benchmark()
    from oryx_mllm.vision import OryxViT, OryxViTConfig

    cfg = OryxViTConfig.from_dict(vision_config)
    dev = torch.device(device)
    img = torch.randn(3, res, res, device=dev)
    if method == "native":
        model = OryxViT(cfg).to(dev).eval()
        run = partial(model.encode, [img])
    else:
        model = bench.build_siglip(cfg, dev, torch.float32)
        tiles = bench.anyres_tiles([img])
        run = partial(model, pixel_values=tiles)
    with torch.inference_mode():
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.max_memory_allocated()
            run()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            before = bench.peak_rss_bytes()
            run()
            peak = bench.peak_rss_bytes()
    return {"resolution": res, "method": method, "peak_mib": peak / 2**20,
            "forward_extra_mib": (peak - before) / 2**20}  # fmt: skip


def memory_curve(vision_config: dict, cfg: PaperConfig, device: str) -> list[dict]:
    points = []
    for res in cfg.efficiency_resolutions:
        for method in ("native", "partition"):
            cmd = [sys.executable, "-m", __name__, "--memory-worker", str(res), "--method", method,
                   "--device", device, "--vision-config", json.dumps(vision_config)]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            points.append(json.loads(out.strip().splitlines()[-1]))
    return points


def run(pipe, cfg: PaperConfig) -> Table:
    bench = load_benchmark()
    if bench is None:
        return Table(
            name="efficiency",
            title="Efficiency (Table 6, Fig. 11): skipped",
            columns=["note"],
            rows=[{"note": f"{BENCHMARK} not found (run from a source checkout)"}],
        )
    encoder = pipe.model.vision_tower
    device = str(pipe.model.device)
    tp = throughput(bench, encoder, cfg)
    vision_config = encoder.config.to_dict()
    mem = memory_curve(vision_config, cfg, device)
    rows = []
    for name, r in tp["runs"].items():
        rows.append({"encoder / processing": name, "images/s": r["images_per_s"],
                     "tokens": r["tokens"], "median s": r["median_s"]})  # fmt: skip
    largest = max(cfg.efficiency_resolutions)
    for m in mem:
        if m["resolution"] == largest:
            label = "OryxViT native" if m["method"] == "native" else "SigLIP partition"
            rows.append({"encoder / processing": f"{label}: peak memory at {largest}²",
                         "peak MiB": m["peak_mib"], "forward MiB": m["forward_extra_mib"]})  # fmt: skip
    where = torch.cuda.get_device_name() if device.startswith("cuda") else (
        f"CPU, {torch.get_num_threads()} threads"
    )  # fmt: skip
    return Table(
        name="efficiency",
        title="Efficiency (Table 6, Fig. 11): encoder throughput and memory",
        columns=[
            "encoder / processing",
            "images/s",
            "tokens",
            "median s",
            "peak MiB",
            "forward MiB",
        ],  # fmt: skip
        rows=rows,
        notes=[
            f"the embedded model's encoder: width {encoder.config.hidden_size}, depth "
            f"{encoder.config.depth}, patch {encoder.config.patch_size}; SigLIP of the same shape "
            f"(random weights: speed and memory only); {where}, float32",
            f"{len(tp['sizes_hw'])} mixed-size images (H x W: {tp['sizes_hw']}), "
            f"{tp['tiles']} partition tiles; median of {cfg.efficiency_iters} timed runs after "
            "a warm-up (functions of benchmarks/vit_throughput.py)",
            "memory: one square image per point, fresh process each; CPU numbers are peak RSS "
            "(runtime + weights included), 'forward' is the increase during the forward pass",
            "forward MiB by side (native / partition): "
            + "; ".join(
                f"{r}²: "
                + " / ".join(f"{m['forward_extra_mib']:.1f}" for m in mem if m["resolution"] == r)
                for r in cfg.efficiency_resolutions
            ),
        ],
        data={"throughput": tp, "memory": mem, "vision_config": vision_config},
    )


def plot(table: Table, path) -> None:
    """Memory-resolution curve like Fig. 11 (native OryxViT and the partition baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem = table.data.get("memory")
    if not mem:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, style in (("native", "o-"), ("partition", "s--")):
        pts = [m for m in mem if m["method"] == method]
        ax.plot([m["resolution"] for m in pts], [m["forward_extra_mib"] for m in pts], style,
                label="OryxViT native" if method == "native" else "SigLIP 384² partition")  # fmt: skip
    ax.set_xlabel("square image side (pixels)")
    ax.set_ylabel("memory added by the forward pass (MiB)")
    ax.set_title("Memory vs resolution (embedded model's encoder)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="memory worker of the efficiency experiment")
    ap.add_argument("--memory-worker", type=int, required=True)
    ap.add_argument("--method", choices=["native", "partition"], required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vision-config", required=True)
    a = ap.parse_args(argv)
    print(
        json.dumps(memory_point(json.loads(a.vision_config), a.memory_worker, a.method, a.device))
    )


if __name__ == "__main__":
    main()
