"""End-to-end latency of Oryx in the released 7B shape against the visual compression ratio.

The paper's "on demand" claim in numbers: the same request at 1x, 2x2 and 4x4 compression gives
how many visual tokens, how long until the first answer token (OryxViT + compressor + projector
+ the LLM's prefill), how fast the answer then decodes, and how much GPU memory it takes. The
model is built with random weights in the released shapes (OryxViT width 1152 x 27 blocks,
Qwen2-7B: width 3584, 28 layers, 28 query / 4 KV heads, vocabulary 152,064); latency does not
depend on the weights' values, and nothing is downloaded. Decoding is forced to run for
``--new-tokens`` tokens (``min_new_tokens``), greedy.

    python benchmarks/oryx_latency.py --device cuda --dtype bfloat16 --json-out runs/latency.json
    python benchmarks/oryx_latency.py --size small --iters 1 --new-tokens 4   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForCausalLM

from oryx_mllm.checkpoint import load_tokenizer
from oryx_mllm.config import OryxConfig
from oryx_mllm.model import OryxForConditionalGeneration
from oryx_mllm.pipeline import OryxPipeline, check_device, default_model_path
from oryx_mllm.processing.chat import ensure_visual_token
from oryx_mllm.processing.processor import OryxProcessor
from oryx_mllm.vision import OryxViT, OryxViTConfig

# The LLM and encoder shapes. "7b" is Oryx-7B's (Qwen2-7B + the released OryxViT); "small" only
# exercises the script on a CPU.
SIZES = {
    "7b": (
        dict(
            vocab_size=152064,
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            max_position_embeddings=32768,
            rope_theta=1_000_000.0,
        ),
        {},
    ),
    "small": (
        dict(
            vocab_size=152064,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=32768,
        ),
        dict(hidden_size=64, depth=2, num_heads=4, mlp_hidden_size=128),
    ),
}


def build_pipeline(size: str, device: str, dtype: torch.dtype) -> OryxPipeline:
    """Random weights in ``size``'s shapes, created on ``device`` (no CPU copy of a 7B model);
    the embedded model's tokenizer with the processor's default (released) preprocessing."""
    llm_kwargs, vit_kwargs = SIZES[size]
    tok = load_tokenizer(default_model_path())
    visual_id = ensure_visual_token(tok)
    lc = AutoConfig.for_model(
        "qwen2", tie_word_embeddings=False, pad_token_id=tok.pad_token_id, **llm_kwargs
    )
    with torch.device(device):
        llm = AutoModelForCausalLM.from_config(lc, dtype=dtype)
        tower = OryxViT(OryxViTConfig.released(**vit_kwargs))
        cfg = OryxConfig.from_llm_config(lc, vision_config=tower.config, visual_token_id=visual_id)
        model = OryxForConditionalGeneration(cfg, language_model=llm, vision_tower=tower)
    return OryxPipeline(model.to(dtype), OryxProcessor(tok))


def noise_image(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def requests(rng: np.random.Generator) -> list[tuple[str, dict]]:
    """(name, ``messages_for`` arguments): a document page, a short video, a long video and a
    multi-view scene, each at the compressions that make sense for it."""
    page = noise_image(rng, 1536, 1152)
    clip = [noise_image(rng, 640, 360) for _ in range(64)]
    long = [noise_image(rng, 640, 360) for _ in range(256)]
    views = [noise_image(rng, 640, 480) for _ in range(8)]
    out = []
    for r in (1, 2, 4):
        out.append((f"image 1536x1152, {r}x{r}", dict(image=page, compression=r)))
    for r in (2, 4):  # 1x would be 52k tokens, beyond Qwen2's 32k context
        out.append((f"video 64 frames 640x360, {r}x{r}", dict(video=clip, compression=r)))
    out.append(("video 256 frames 640x360, 4x4", dict(video=long, compression=4)))
    for r in (2, 4):
        out.append((f"multi-view 8 views 640x480, {r}x{r}", dict(views=views, compression=r)))
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def measure(
    pipe: OryxPipeline,
    kwargs: dict,
    new_tokens: int,
    iters: int,
    device: str,
    batch_size: int = 1,
    cache: str = "dynamic",
) -> dict:
    """Median seconds to the first token and for ``new_tokens`` tokens, after one warm-up, for
    ``batch_size`` copies of the request answered in one batch."""
    messages = pipe.messages_for("Describe what you see.", **kwargs)
    batch = pipe.processor([messages] * batch_size)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    items = batch["visual_inputs"]
    eos = pipe.processor.eos_token_id
    visual = int((ids[0] == pipe.processor.visual_token_id).sum())

    def run(n: int) -> float:
        sync(device)
        t = time.perf_counter()
        out = pipe.model.generate(
            input_ids=ids,
            attention_mask=mask,
            visual_inputs=items,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=eos,
            pad_token_id=pipe.processor.tokenizer.pad_token_id,
            # "static": a fixed-size KV cache, which transformers decodes with a compiled forward
            cache_implementation=None if cache == "dynamic" else cache,
        )
        sync(device)
        assert out.shape == (batch_size, n), f"generated {out.shape[1]} tokens, asked for {n}"
        return time.perf_counter() - t

    run(2)  # warm-up (kernels, allocator; the compilation with a static cache)
    run(new_tokens)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    first = statistics.median(run(1) for _ in range(iters))
    full = statistics.median(run(new_tokens) for _ in range(iters))
    row = {
        "batch": batch_size,
        "cache": cache,
        "frames": sum(len(i.frames) for i in items) // batch_size,
        "visual_tokens": visual,
        "prompt_tokens": int(ids.shape[1]),
        "first_token_s": round(first, 4),
        "total_s": round(full, 4),
        # None when timer noise swamps the decode (tiny models on a CPU)
        "decode_tokens_per_s": (
            round(batch_size * (new_tokens - 1) / (full - first), 1) if full > first else None
        ),
    }
    if device.startswith("cuda"):
        row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="7b")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch-sizes", default="1", help="comma-separated, e.g. 1,8")
    ap.add_argument("--caches", default="dynamic", help="KV caches to compare: dynamic,static")
    ap.add_argument("--only", default=None, help="run only requests whose name contains this")
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    if a.iters < 1 or a.new_tokens < 2:
        ap.error("--iters must be >= 1 and --new-tokens >= 2")
    try:
        batch_sizes = [int(b) for b in a.batch_sizes.split(",")]
    except ValueError:
        ap.error(f"--batch-sizes must be comma-separated whole numbers, got {a.batch_sizes!r}")
    if min(batch_sizes) < 1:
        ap.error("--batch-sizes must be >= 1")
    caches = a.caches.split(",")
    if not set(caches) <= {"dynamic", "static"}:
        ap.error(f"--caches takes dynamic and/or static, got {a.caches!r}")
    check_device(a.device)
    every = requests(np.random.default_rng(0))
    todo = [(n, kw) for n, kw in every if not a.only or a.only in n]
    if not todo:
        ap.error(f"--only {a.only!r} matches no request; the requests are: {[n for n, _ in every]}")
    torch.manual_seed(0)
    t = time.perf_counter()
    pipe = build_pipeline(a.size, a.device, getattr(torch, a.dtype))
    n_params = sum(p.numel() for p in pipe.model.parameters())
    print(
        f"built {n_params / 1e9:.2f} B parameters on {a.device} in {time.perf_counter() - t:.1f} s"
    )
    rows = []
    for name, kwargs in todo:
        for b in batch_sizes:
            for c in caches:
                row = measure(pipe, kwargs, a.new_tokens, a.iters, a.device, b, c)
                print(json.dumps({"request": name, **row}), flush=True)
                rows.append({"request": name, **row})
    if a.json_out:
        Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "size": a.size,
            "device": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
            "dtype": a.dtype,
            "torch": torch.__version__,
            "parameters": n_params,
            "new_tokens": a.new_tokens,
            "iters": a.iters,
        }
        Path(a.json_out).write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
