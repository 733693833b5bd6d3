"""Model-side batching: time ``OryxPipeline.chat_batch`` for 1 vs N image questions.

Separates what batching buys inside the model (one packed encoder pass, batched decoding) from the
HTTP, base64 and decoding overhead that ``serve_load.py`` also measures.

    python benchmarks/batch_generate.py --batch-sizes 1,8 --max-new-tokens 32
    python benchmarks/batch_generate.py --model src/oryx_mllm/assets/oryx-tiny
    # the request mix of serve_load.py --model random (default processor, 128 px images):
    python benchmarks/batch_generate.py --model random-serve --image-size 128 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from oryx_mllm.pipeline import OryxPipeline


def random_pipeline(small_images: bool = True) -> OryxPipeline:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from oryx_mllm.processing.options import ImageOptions
    from oryx_mllm.processing.processor import OryxProcessor
    from oryx_tiny import byte_tokenizer, tiny_model

    tok = byte_tokenizer()
    options = ImageOptions(lowres_pixels=4096) if small_images else None
    return OryxPipeline(tiny_model("qwen2", tok), OryxProcessor(tok, image_options=options))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="random",
                    help="model folder, or 'random' (tiny random, 4096-pixel low-res view), or "
                         "'random-serve' (tiny random with the default processor, as serve_load.py)")  # fmt: skip
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 (model folders only)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--question", default="Say something long.")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.model in ("random", "random-serve"):
        pipe = random_pipeline(small_images=args.model == "random")
    else:
        pipe = OryxPipeline.from_pretrained(args.model, torch_dtype=args.dtype)
    rng = np.random.default_rng(0)
    size = args.image_size
    base = None
    for n in (int(x) for x in args.batch_sizes.split(",")):
        convs = [
            pipe.messages_for(
                args.question,
                image=Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)),
            )
            for _ in range(n)
        ]
        pipe.chat_batch(convs, max_new_tokens=args.max_new_tokens)  # warm-up
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(args.iters):
            answers = pipe.chat_batch(convs, max_new_tokens=args.max_new_tokens)
        seconds = (time.perf_counter() - start) / args.iters
        cpu_per_request = (time.process_time() - cpu_start) / args.iters / n
        rps = n / seconds
        base = base or (rps, cpu_per_request)
        print(
            json.dumps(
                {
                    "batch": n,
                    "ms_per_batch": round(seconds * 1e3, 1),
                    "requests_per_s": round(rps, 1),
                    "mean_new_tokens": sum(a.completion_tokens for a in answers) / n,
                    "speed_up": round(rps / base[0], 2),
                    # CPU time (all threads) per request: less sensitive to a busy machine
                    "cpu_ms_per_request": round(cpu_per_request * 1e3, 1),
                    "cpu_speed_up": round(base[1] / cpu_per_request, 2),
                    "torch_threads": torch.get_num_threads(),
                    "dtype": str(pipe.model.dtype).removeprefix("torch."),
                }
            )
        )


if __name__ == "__main__":
    main()
