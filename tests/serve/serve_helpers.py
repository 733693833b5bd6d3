"""Helpers of the serving tests: a tiny random pipeline, media bytes, a live uvicorn server."""

from __future__ import annotations

import base64
import io
import socket
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import uvicorn
from PIL import Image

from oryx_mllm.pipeline import OryxPipeline
from oryx_mllm.processing.options import ImageOptions, MultiViewOptions, VideoOptions
from oryx_mllm.processing.processor import OryxProcessor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from oryx_tiny import byte_tokenizer, tiny_model  # noqa: E402

MODEL = "oryx-test"
SMALL_VIDEO = VideoOptions(min_pixels=64 * 64, max_pixels=64 * 64, multiple=64, long_multiple=64)


def tiny_pipeline() -> OryxPipeline:
    import torch

    torch.manual_seed(0)
    tok = byte_tokenizer()
    processor = OryxProcessor(
        tok,
        image_options=ImageOptions(max_pixels=128 * 128, lowres_pixels=32 * 32),
        video_options=SMALL_VIDEO,
        multiview_options=MultiViewOptions(frame=SMALL_VIDEO),
    )
    return OryxPipeline(tiny_model("qwen2", tok), processor)


def png_bytes(w: int = 64, h: int = 64, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def mask_png(shift: int = 0, second_id: int = 2) -> bytes:
    """A 64x64 instance mask (mode L): object 1 (moved right by ``shift``) and ``second_id``."""
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[5:25, 5 + shift : 25 + shift] = 1
    mask[40:60, 40:60] = second_id
    buf = io.BytesIO()
    Image.fromarray(mask, "L").save(buf, "PNG")
    return buf.getvalue()


def mp4_bytes(frames: int = 4, size: int = 64, fps: int = 2) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, fps)
        for i in range(frames):
            arr = np.full((size, size, 3), (i * 60) % 255, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = i
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, app) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    @property
    def engine(self):
        return self.app.state.engine


def client_for(server: LiveServer, api_key: str = "none", **kw):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0, **kw)
