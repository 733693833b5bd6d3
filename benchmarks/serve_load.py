"""Load test of ``oryx serve``: N concurrent clients on loopback for a bounded time.

Starts the server in a subprocess on 127.0.0.1 (a free port); the clients run in this process,
as N tasks of ONE asyncio event loop sharing an ``httpx.AsyncClient`` (a light client, so the
load generator does not take the server's cores with N threads). For every concurrency level,
each client sends chat requests back to back for ``--duration`` seconds. The request mix is the
same at every level: client k always sends the same ``--image-size`` PNG (random pixels, seed k,
as a base64 data: URL) with the same question, greedy, ``--max-tokens``; "sequential" is the
1-client level of that mix. Reports requests/s, completion tokens/s, p50/p95 latency, errors
(must be 0), the server's mean batch size, how busy its model workers were, its peak RSS, the
load average around the level, and the speed-up over 1 client.

    python benchmarks/serve_load.py --concurrency 1,8 --duration 30 --max-tokens 16
    python benchmarks/serve_load.py --model random   # a tiny random model in a temp folder
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import openai
from PIL import Image

HOST = "127.0.0.1"  # loopback only


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def random_model(folder: Path) -> Path:
    """A tiny random Oryx model saved to ``folder`` (the tests' tiny configuration)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from oryx_mllm.pipeline import OryxPipeline
    from oryx_mllm.processing.processor import OryxProcessor
    from oryx_tiny import byte_tokenizer, tiny_model

    tok = byte_tokenizer()
    OryxPipeline(tiny_model("qwen2", tok), OryxProcessor(tok)).save_pretrained(folder)
    return folder


def image_url(seed: int, size: int) -> str:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def request_body(model: str, k: int, args) -> dict:
    """What client ``k`` sends, at every concurrency level."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_url(k, args.image_size)}},
            {"type": "text", "text": "What is in the image?"},
        ]}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
    }  # fmt: skip


async def _clients(url: str, model: str, clients: int, args) -> tuple[list, list, list, float]:
    bodies = [json.dumps(request_body(model, k, args)).encode() for k in range(clients)]
    latencies: list[float] = []
    tokens: list[int] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def client_loop(body: bytes, stop_at: float) -> None:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/chat/completions", content=body, headers=headers)
                    r.raise_for_status()
                    n = r.json()["usage"]["completion_tokens"]
                except Exception as exc:  # noqa: BLE001 - counted, reported
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - t0)
                tokens.append(n)

        start = time.perf_counter()
        await asyncio.gather(*(client_loop(b, start + args.duration) for b in bodies))
        wall = time.perf_counter() - start
    return latencies, tokens, errors, wall


def run_level(url: str, model: str, clients: int, args) -> dict:
    before = httpx.get(url + "/health").json()["engine"]
    load_before = os.getloadavg()[0]
    cpu_before = time.process_time()
    latencies, tokens, errors, wall = asyncio.run(_clients(url, model, clients, args))
    client_cpu = time.process_time() - cpu_before
    after = httpx.get(url + "/health").json()["engine"]
    calls = after["model_calls"] - before["model_calls"]
    reqs = after["requests"] - before["requests"]
    lat = sorted(latencies)
    return {
        "concurrency": clients,
        "requests": len(lat),
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(lat) / wall, 3),
        "completion_tokens_per_s": round(sum(tokens) / wall, 2),
        "mean_completion_tokens": round(statistics.mean(tokens), 2) if tokens else 0,
        "p50_latency_s": round(lat[len(lat) // 2], 3) if lat else None,
        "p95_latency_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3) if lat else None,
        "mean_batch_size": round(reqs / calls, 2) if calls else 0,
        # model-worker seconds per second (up to --workers)
        "workers_busy": round((after["busy_s"] - before["busy_s"]) / wall, 2),
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        # the load generator's own CPU (all N clients), per answered request
        "client_cpu_ms_per_request": round(1e3 * client_cpu / max(1, len(lat)), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=None,
                   help="model folder; default: the embedded model; 'random': tiny random model")  # fmt: skip
    p.add_argument("--concurrency", default="1,8", help="comma-separated client counts")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per concurrency level")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--image-size", type=int, default=128, help="side of the square test images")
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--batch-wait-ms", type=float, default=5.0)
    p.add_argument("--workers", type=int, default=1, help="the server's --workers")
    p.add_argument("--torch-threads", type=int, default=None, help="the server's --torch-threads")
    p.add_argument("--dtype", default=None, help="the server's --dtype (float32, bfloat16)")
    p.add_argument("--warmup", type=int, default=3, help="requests before measuring")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        model_path = random_model(Path(tmp)) if args.model == "random" else args.model
        port = free_port()
        cmd = [sys.executable, "-m", "oryx_mllm.cli", "serve", "--host", HOST, "--port", str(port),
               "--max-batch-size", str(args.max_batch_size),
               "--batch-wait-ms", str(args.batch_wait_ms), "--max-queue", "256",
               "--workers", str(args.workers)]  # fmt: skip
        if model_path is not None:
            cmd += ["--model", str(model_path)]
        if args.torch_threads:
            cmd += ["--torch-threads", str(args.torch_threads)]
        if args.dtype:
            cmd += ["--dtype", args.dtype]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"http://{HOST}:{port}"
        try:
            deadline = time.time() + 300
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"server exited: {server.stderr.read()[-2000:]}")
                try:
                    health = httpx.get(url + "/health", timeout=2).json()
                    break
                except httpx.HTTPError:
                    if time.time() > deadline:
                        raise SystemExit("server did not start") from None
                    time.sleep(0.5)
            model = health["model"]
            rss_idle = rss_kib(server.pid, "VmRSS")
            warm = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
            for k in range(args.warmup):
                warm.chat.completions.create(
                    model=model, max_tokens=args.max_tokens, temperature=0,
                    messages=[{"role": "user", "content": [
                        {"type": "image_url", "image_url": {"url": image_url(k, args.image_size)}},
                        {"type": "text", "text": "warm up"}]}],
                )  # fmt: skip
            # every level then meets warm model workers (first-call costs), then the load settles
            run_level(url, model, max(levels), argparse.Namespace(**{**vars(args), "duration": 2}))
            time.sleep(1.5)
            results = []
            for c in levels:
                r = run_level(url, model, c, args)
                r["server_peak_rss_mib"] = round(rss_kib(server.pid, "VmHWM") / 1024, 1)
                results.append(r)
                print(json.dumps(r), flush=True)
        finally:
            server.terminate()
            server.wait(30)

    base = next((r for r in results if r["concurrency"] == 1), None)
    print(f"\nmodel: {model_path or 'embedded default'}; server idle RSS {rss_idle / 1024:.0f} MiB; "
          f"workers {args.workers}, torch threads {args.torch_threads or 'default'}; "
          f"{os.cpu_count()} CPUs; request: one {args.image_size}px PNG + "
          f"question, max_tokens {args.max_tokens}, greedy")  # fmt: skip
    print(f"{'clients':>7} {'req/s':>7} {'tok/s':>7} {'p50 s':>7} {'p95 s':>7} {'errors':>6} "
          f"{'batch':>6} {'busy':>5} {'peak RSS MiB':>12} {'load':>10} {'speed-up':>8}")  # fmt: skip
    for r in results:
        up = r["requests_per_s"] / base["requests_per_s"] if base and base["requests_per_s"] else 0
        r["speedup_vs_1"] = round(up, 2)
        load = "-".join(f"{x:.1f}" for x in r["load_avg_1min"])
        print(f"{r['concurrency']:>7} {r['requests_per_s']:>7.2f} {r['completion_tokens_per_s']:>7.1f} "
              f"{r['p50_latency_s']:>7.3f} {r['p95_latency_s']:>7.3f} {r['errors']:>6} "
              f"{r['mean_batch_size']:>6.2f} {r['workers_busy']:>5.2f} "
              f"{r['server_peak_rss_mib']:>12.1f} {load:>10} {up:>7.2f}x")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "results": results}, indent=2))  # fmt: skip
    if any(r["errors"] for r in results):
        raise SystemExit("errors during the load test")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
