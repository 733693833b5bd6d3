"""OryxViT throughput and memory benchmark (paper Appendix C.2, Table 6 and Fig. 11).

Three ways to encode the same set of mixed-size images (random aspect ratios):

(a) packed    OryxViT.encode: every image at its native size, all packed into one sequence with
              variable-length (block-diagonal) attention. No padding at all.
(b) padded    the same OryxViT weights run as an ordinary batch: every image is zero-padded (in
              pixels, right/bottom) to the largest H and the largest W of the set, so each image
              becomes ceil(Hmax/p) * ceil(Wmax/p) tokens; each image keeps its own resampled
              position table in its top-left (h, w) cells; padding tokens are masked out as keys
              (boolean key-padding mask in one batched SDPA call). Real-token outputs equal (a).
(c) partition LLaVA-OneVision style AnyRes through transformers' SiglipVisionModel of the same
              width/depth/patch: each image is resized to a (rows x cols) grid of 384x384 tiles,
              rows = max(1, round(H/384)), cols = max(1, round(W/384)), plus a 384x384 thumbnail
              of the whole image; all tiles of all images go through as one batch. (LLaVA-OV picks
              the grid from a list of pinpoints; rounding is the same idea, simplified.)

All three get the same images (equal total input pixels); the JSON reports how many pixels and
tokens each method actually encodes. Resizing/tiling for (c) is preprocessing and not timed;
patchify and padding for (a)/(b) happen inside the timed call.

It also compares the attention backends for (a) and measures peak memory against resolution for
square images (512^2 .. 2048^2), one fresh subprocess per resolution: torch.cuda.max_memory_allocated
on CUDA, otherwise the peak RSS (VmHWM; resource.getrusage ru_maxrss off Linux, see
peak_rss_bytes). A plot like paper Fig. 11 is
written to --plot.

Example (CPU): python benchmarks/vit_throughput.py --config base --iters 3
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from oryx_mllm.vision import OryxViT, OryxViTConfig, resolve_backend

TILE = 384  # AnyRes tile and thumbnail side (LLaVA-OneVision, SigLIP-384)

CONFIGS: dict[str, Callable[[], OryxViTConfig]] = {
    "tiny": lambda: OryxViTConfig.tiny(position_grid=128),
    # a moderate encoder that runs in minutes on a 2-core CPU (ViT-S width, half depth)
    "base": lambda: OryxViTConfig(
        hidden_size=384, depth=6, num_heads=6, mlp_hidden_size=1536, patch_size=16
    ),
    "released": OryxViTConfig.released,  # width 1152, 27 blocks: meant for GPUs
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# Inputs ----------------------------------------------------------------------------------------
def mixed_size_images(
    n: int, min_side: int, max_side: int, seed: int, multiple: int = 32
) -> list[tuple[int, int]]:
    """``n`` (H, W) sizes: log-uniform area and aspect ratio in [1/3, 3], sides multiple of 32."""
    g = torch.Generator().manual_seed(seed)
    sizes = []
    for _ in range(n):
        u, v = torch.rand(2, generator=g).tolist()
        side = math.exp(math.log(min_side) + u * (math.log(max_side) - math.log(min_side)))
        aspect = math.exp((2 * v - 1) * math.log(3.0))  # W / H
        H = max(multiple, int(side / math.sqrt(aspect)) // multiple * multiple)
        W = max(multiple, int(side * math.sqrt(aspect)) // multiple * multiple)
        sizes.append((H, W))
    return sizes


def make_pixels(sizes: list[tuple[int, int]], device, dtype) -> list[torch.Tensor]:
    return [torch.randn(3, H, W, device=device, dtype=dtype) for H, W in sizes]  # [3, H, W]


def anyres_tiles(images: list[torch.Tensor]) -> torch.Tensor:
    """LLaVA-OV style AnyRes: per image, rows x cols 384^2 tiles + one 384^2 thumbnail."""
    tiles = []
    for img in images:
        _, H, W = img.shape
        rows, cols = max(1, round(H / TILE)), max(1, round(W / TILE))
        big = F.interpolate(img[None].float(), size=(rows * TILE, cols * TILE), mode="bilinear")
        big = big[0].reshape(3, rows, TILE, cols, TILE).permute(1, 3, 0, 2, 4)  # [r, c, 3, T, T]
        thumb = F.interpolate(img[None].float(), size=(TILE, TILE), mode="bilinear")
        tiles += [thumb, big.reshape(rows * cols, 3, TILE, TILE)]
    return torch.cat(tiles).to(images[0].dtype)  # [N_tiles, 3, 384, 384]


# The three methods -----------------------------------------------------------------------------
def packed_encode(model: OryxViT, images: list[torch.Tensor]) -> list[torch.Tensor]:
    return model.encode(images)[0]


def padded_encode(model: OryxViT, images: list[torch.Tensor]) -> list[torch.Tensor]:
    """Pad every image to (Hmax, Wmax), run one batched masked pass; return real-token features."""
    cfg, p = model.config, model.config.patch_size
    B, C, nh = len(images), cfg.hidden_size, cfg.num_heads
    Hmax = max(img.shape[1] for img in images)
    Wmax = max(img.shape[2] for img in images)
    hm, wm = -(-Hmax // p), -(-Wmax // p)
    L = hm * wm
    pixels = torch.stack(
        [F.pad(img, (0, wm * p - img.shape[2], 0, hm * p - img.shape[1])) for img in images]
    )
    patches = pixels.reshape(B, 3, hm, p, wm, p).permute(0, 2, 4, 1, 3, 5).reshape(B, L, 3 * p * p)
    x = model.patch_embed(patches)  # [B, L, C]
    pos = torch.zeros(B, hm, wm, C, device=x.device, dtype=x.dtype)
    valid = torch.zeros(B, hm, wm, dtype=torch.bool, device=x.device)
    grids = []
    for i, img in enumerate(images):
        h, w = -(-img.shape[1] // p), -(-img.shape[2] // p)
        pos[i, :h, :w] = model.position_embedding(h, w).view(h, w, C)
        valid[i, :h, :w] = True
        grids.append((h, w))
    x = x + pos.view(B, L, C)
    valid = valid.view(B, L)
    mask = valid[:, None, None, :]  # [B, 1, 1, L]: keys that may be attended to
    for blk in model.blocks:
        qkv = blk.attn.qkv(blk.norm1(x)).view(B, L, 3, nh, C // nh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B, nh, L, D]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + blk.attn.proj(a.transpose(1, 2).reshape(B, L, C))
        x = x + blk.mlp(blk.norm2(x))
    return [x[i][valid[i]] for i in range(B)]  # [h*w, C] each, row-major like (a)


def build_siglip(cfg: OryxViTConfig, device, dtype):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    sc = SiglipVisionConfig(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_hidden_size,
        patch_size=cfg.patch_size,
        image_size=TILE,
        vision_use_head=False,  # LLaVA-style towers take hidden states, not the pooled output
    )
    model = SiglipVisionModel._from_config(sc, attn_implementation="sdpa")
    return model.to(device=device, dtype=dtype).eval()


# Timing ----------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], object], device: torch.device, iters: int) -> dict:
    with torch.inference_mode():
        fn()  # warm-up (allocator, kernels, position-table cache)
        times = []
        for _ in range(iters):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times)}


def with_rate(timing: dict, n_images: int, **extra) -> dict:
    return {"images_per_s": round(n_images / timing["median_s"], 3), **timing, **extra}


# Memory versus resolution ----------------------------------------------------------------------
def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    Linux: ``VmHWM`` from /proc/self/status. ``ru_maxrss`` is not used there because the kernel
    carries the parent's high-water mark over fork+exec, so a worker started by a large parent
    reports the parent's peak. Elsewhere: ``ru_maxrss`` (KiB on Linux/BSD, bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def memory_point(args: argparse.Namespace, res: int) -> dict:
    """Encode one res x res image; return the peak memory. Run in a fresh process on CPU."""
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    cfg = CONFIGS[args.config]()
    cfg.attention_backend = args.backend
    tokens = (-(-res // cfg.patch_size)) ** 2
    # the serving guard (16,384 patches = 2048² at patch 16) would refuse the largest points
    cfg.max_patches_per_image = max(cfg.max_patches_per_image, tokens)
    model = OryxViT(cfg).to(device=device, dtype=dtype).eval()
    img = torch.randn(3, res, res, device=device, dtype=dtype)
    with torch.inference_mode():
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.max_memory_allocated()
            model.encode([img])
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            before = peak_rss_bytes()
            model.encode([img])
            peak = peak_rss_bytes()
    point = {"resolution": res, "tokens": tokens, "peak_gib": peak / 2**30,
             "before_forward_gib": before / 2**30, "forward_extra_gib": (peak - before) / 2**30}  # fmt: skip
    if device.type != "cuda":  # for comparison; inherits the parent's peak across fork+exec
        point["ru_maxrss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return point


def memory_curve(args: argparse.Namespace) -> dict:
    points = []
    for res in args.resolutions:  # a fresh process per point: no allocator/RSS carry-over
        cmd = [sys.executable, __file__, "--memory-worker", str(res), "--config", args.config,
               "--device", args.device, "--dtype", args.dtype, "--backend", args.backend]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:  # e.g. out of memory: record it and go on with the curve
            error = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"  memory {res}^2: failed: {error}", file=sys.stderr)
            points.append({"resolution": res, "error": error})
            continue
        points.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  memory {res}^2: {points[-1]['peak_gib']:.2f} GiB", file=sys.stderr)
    for pt in points:
        for key in ("peak_gib", "before_forward_gib", "forward_extra_gib", "ru_maxrss_gib"):
            if key in pt:
                pt[key] = round(pt[key], 4)
    how = (
        "torch.cuda.max_memory_allocated, fresh subprocess per resolution (weights included)"
        if args.device.startswith("cuda")
        else "peak RSS (VmHWM of /proc/self/status; ru_maxrss where /proc is missing), fresh "
        "subprocess per resolution (includes the Python/torch runtime and the weights)"
    )
    return {"measured_with": how, "backend": args.backend, "points": points}


def plot_memory(curve: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in curve["points"] if "error" not in p]
    res = [p["resolution"] for p in pts]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(res, [p["peak_gib"] for p in pts], "o-", label="peak memory")
    ax.plot(res, [p["forward_extra_gib"] for p in pts], "s--", label="added by the forward pass")
    ax.set_xlabel("square image side (pixels)")
    ax.set_ylabel("memory (GiB)")
    ax.set_xticks(res)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# Main ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="base")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                    help="default: bfloat16 on CUDA, float32 on CPU")  # fmt: skip
    ap.add_argument("--iters", type=int, default=3, help="timed runs per method (median)")
    ap.add_argument("--backend", default="auto", help="attention backend of the packed encode")
    ap.add_argument("--backends", nargs="+", default=None,
                    help="backends to compare (default: sdpa sdpa_masked math [+ flash_attn])")  # fmt: skip
    ap.add_argument("--num-images", type=int, default=8)
    ap.add_argument("--min-side", type=int, default=384, help="smallest sqrt(area) of an image")
    ap.add_argument("--max-side", type=int, default=1024, help="largest sqrt(area) of an image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resolutions", type=int, nargs="+",
                    default=[512, 768, 1024, 1280, 1536, 1792, 2048])  # fmt: skip
    ap.add_argument("--plot", type=Path, default=Path("docs/vit_memory.png"))
    ap.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny config-independent smoke run")
    ap.add_argument("--memory-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.dtype is None:
        args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    if args.quick:
        args.iters, args.num_images = 1, 4
        args.min_side, args.max_side = 256, 512
        args.resolutions = [512, 1024]
    args.backend = resolve_backend(args.backend, torch.device(args.device))
    return args


def throughput(args: argparse.Namespace) -> dict:
    """(a) packed vs (b) padded vs (c) partition on one mixed-size set, then the backends."""
    torch.manual_seed(args.seed)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    cfg = CONFIGS[args.config]()
    cfg.attention_backend = args.backend
    model = OryxViT(cfg).to(device=device, dtype=dtype).eval()
    p = cfg.patch_size

    sizes = mixed_size_images(args.num_images, args.min_side, args.max_side, args.seed)
    images = make_pixels(sizes, device, dtype)
    tiles = anyres_tiles(images)  # [N_tiles, 3, 384, 384]
    n = len(images)
    Hmax, Wmax = max(h for h, _ in sizes), max(w for _, w in sizes)

    # the padded path must compute the same features as the packed one
    with torch.inference_mode():
        a, b = packed_encode(model, images), padded_encode(model, images)
    padded_max_abs_diff = max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b))

    print("timing packed / padded / partition ...", file=sys.stderr)
    results = {
        "packed_native": with_rate(
            time_it(partial(packed_encode, model, images), device, args.iters), n,
            tokens=sum(-(-h // p) * -(-w // p) for h, w in sizes),
            pixels=sum(h * w for h, w in sizes), backend=args.backend,
        ),
        "padded_batch": with_rate(
            time_it(partial(padded_encode, model, images), device, args.iters), n,
            tokens=n * -(-Hmax // p) * -(-Wmax // p), pixels=n * Hmax * Wmax,
            padded_to_hw=[Hmax, Wmax], max_abs_diff_vs_packed=padded_max_abs_diff,
        ),
    }  # fmt: skip
    siglip = build_siglip(cfg, device, dtype)
    results["dynamic_partition"] = with_rate(
        time_it(partial(siglip, pixel_values=tiles), device, args.iters), n,
        tokens=tiles.shape[0] * (TILE // p) ** 2, pixels=tiles.shape[0] * TILE * TILE,
        tiles=tiles.shape[0],
    )  # fmt: skip
    packed_rate = results["packed_native"]["images_per_s"]
    ratios = {
        "packed_vs_partition": round(packed_rate / results["dynamic_partition"]["images_per_s"], 3),
        "packed_vs_padded": round(packed_rate / results["padded_batch"]["images_per_s"], 3),
    }

    config = {"name": args.config, **cfg.to_dict(), "dtype": args.dtype}  # before the loop below
    backends = args.backends or ["sdpa", "sdpa_masked", "math"] + (
        [args.backend] if args.backend in ("flash_attn", "torch_varlen") else []
    )
    print(f"timing backends {backends} ...", file=sys.stderr)
    backend_results = {}
    for name in backends:
        model.config.attention_backend = resolve_backend(name, device)
        backend_results[name] = with_rate(
            time_it(partial(packed_encode, model, images), device, args.iters), n
        )
    return {
        "config": config,
        "images": {"count": n, "sizes_hw": sizes, "seed": args.seed},
        "throughput": results,
        "ratios": ratios,
        "goals": {
            "packed_ge_1x_partition": ratios["packed_vs_partition"] >= 1.0,
            "packed_ge_2x_padded": ratios["packed_vs_padded"] >= 2.0,
        },
        "packed_attention_backends": backend_results,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_worker is not None:
        print(json.dumps(memory_point(args, args.memory_worker)))
        return

    device = torch.device(args.device)
    report: dict = {
        "machine": {
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    if not args.skip_memory:  # first, while this (parent) process is still small
        print("memory versus resolution ...", file=sys.stderr)
        report["memory_vs_resolution"] = curve = memory_curve(args)
        where = report["machine"]["gpu"] or f"CPU, {torch.get_num_threads()} threads"
        title = f"OryxViT ({args.config}, {args.dtype}, {args.backend}) — {where}"
        plot_memory(curve, args.plot, title)
        curve["plot"] = str(args.plot)
    if not args.skip_throughput:
        report.update(throughput(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
