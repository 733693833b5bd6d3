"""lmms-eval model adapter: ``lmms-eval --model oryx --model_args pretrained=/models/Oryx-7B,...``.

Registration. lmms-eval (>= 0.5) builds its model registry from its built-in list and then from
the Python entry-point group ``lmms_eval.models`` with ``overwrite=True``. This package declares::

    [project.entry-points."lmms_eval.models"]
    oryx = "oryx_mllm.eval.lmms:lmms_eval_manifest"

so once ``oryx-mllm`` is installed (``pip install -e '.[eval]'``), ``--model oryx`` (and the
alias ``oryx_mllm``) resolves to :class:`OryxLmms` instead of lmms-eval's own ``oryx`` wrapper
(which needs the original research code base).

Model args (``--model_args key=value,...``; all optional):

==================  ===========================================================================
pretrained          Oryx folder (released or ours); empty = the embedded default model
vision_tower        OryxViT weights for released folders (``oryx_vit.pth`` / folder)
compression         1, 2 or 4: force the Dynamic Compressor ratio for every visual input;
                    unset = the paper's policy (images 1x, videos 2x2, long videos 4x4)
max_visual_tokens   per-request visual token budget: the smallest compression that fits
video_fps           frames sampled per second of video (default: the processor's, 1.0)
max_frames          max frames of a video in short mode (default 64)
long_max_frames     max frames in long-video mode (default 256)
multiview           ``auto`` (default: tasks named scanqa*/sqa3d*/*3d* get one multi-view input),
                    ``true`` (every multi-image doc is one multi-view scene) or ``false``
max_new_tokens      default generation length when the task does not set one (default 128)
batch_size          requests per padded batch (requests with different generation kwargs are
                    never mixed)
device, dtype       ``cuda``/``cpu``/``cuda:1``; ``auto``/``bfloat16``/``float16``/``float32``
==================  ===========================================================================

Requests. ``generate_until`` instances carry ``(context, gen_kwargs, doc_to_visual, doc_id,
task, split)``; ``doc_to_visual(doc)`` may return PIL images, image paths, video paths (or
directories of frames), lists of frames, or a mix. Images become image inputs (native
resolution), video paths become video inputs, several images of a 3D task become one multi-view
input. ``loglikelihood`` instances carry ``(context, continuation, doc_to_visual, doc_id, task,
split)`` and are scored exactly (sum of the continuation's token log-probabilities and whether
greedy decoding would produce it), so loglikelihood-style multiple-choice tasks work too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from oryx_mllm.checkpoint import DTYPES
from oryx_mllm.errors import ConfigError

try:  # lmms-eval is optional: the adapter's logic also runs (and is tested) without it
    from lmms_eval.api.model import lmms as _LmmsBase
except ImportError:  # pragma: no cover - exercised where lmms-eval is not installed

    class _LmmsBase:  # type: ignore[no-redef]
        """Stand-in for ``lmms_eval.api.model.lmms`` when lmms-eval is not installed."""

        is_simple = True

        def __init__(self) -> None:
            self._rank, self._world_size = 0, 1
            self.cache_hook = _NoCache()
            self.task_dict: dict = {}

        @property
        def rank(self) -> int:
            return self._rank

        @property
        def world_size(self) -> int:
            return self._world_size

    class _NoCache:
        def add_partial(self, *args: Any) -> None:
            pass


log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".flv", ".gif", ".wmv")
MULTIVIEW_TASK_HINTS = ("scanqa", "sqa3d", "3d")


def lmms_eval_manifest():
    """The entry point lmms-eval loads: ``oryx`` (alias ``oryx_mllm``) -> :class:`OryxLmms`."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(
        model_id="oryx",
        simple_class_path="oryx_mllm.eval.lmms.OryxLmms",
        aliases=("oryx_mllm",),
    )


def _opt_int(value: Any, name: str) -> int | None:
    if value is None or value == "" or str(value).lower() in {"none", "auto"}:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model arg {name} must be an integer, got {value!r}") from exc


def _is_video(visual: Any) -> bool:
    if isinstance(visual, (str, Path)):
        p = Path(visual)
        return p.suffix.lower() in VIDEO_EXTENSIONS or p.is_dir()
    return isinstance(visual, dict) and "video" in visual


def _flatten_visuals(value: Any) -> list[Any]:
    """``doc_to_visual`` output -> flat list (``None`` -> ``[]``, ``[[a, b]]`` -> ``[a, b]``)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        out: list[Any] = []
        for v in value:
            # a nested list of PIL frames is one video; a nested list of anything else is flattened
            if isinstance(v, (list, tuple)) and v and all(isinstance(f, Image.Image) for f in v):
                out.append({"video": list(v)})
            else:
                out.extend(_flatten_visuals(v) if isinstance(v, (list, tuple)) else [v])
        return out
    return [value]


class OryxLmms(_LmmsBase):
    """lmms-eval ``lmms`` model over :class:`oryx_mllm.pipeline.OryxPipeline`."""

    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        vision_tower: str | None = None,
        compression: int | str | None = None,
        max_visual_tokens: int | str | None = None,
        video_fps: float | None = None,
        max_frames: int | None = None,
        long_max_frames: int | None = None,
        multiview: str | bool = "auto",
        max_new_tokens: int = 128,
        batch_size: int | str | None = 1,
        max_batch_size: int | None = None,
        device: str | None = None,
        dtype: str = "auto",
        pipeline=None,
        **unused: Any,
    ) -> None:
        super().__init__()
        if unused:
            log.warning("OryxLmms ignores unknown model args: %s", sorted(unused))
        self.compression = _opt_int(compression, "compression")
        if self.compression not in (None, 1, 2, 4):
            raise ConfigError(f"compression must be 1, 2 or 4, got {self.compression}")
        self.max_visual_tokens = _opt_int(max_visual_tokens, "max_visual_tokens")
        self.multiview = str(multiview).lower()
        if self.multiview not in ("auto", "true", "false"):
            raise ConfigError(f"multiview must be auto, true or false, got {multiview!r}")
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = max(1, _opt_int(batch_size, "batch_size") or 1)

        if pipeline is None:
            pipeline = self._load(pretrained, vision_tower, device, dtype)
        self.pipeline = pipeline
        self._override_video_options(video_fps, max_frames, long_max_frames)

    # Loading -------------------------------------------------------------------------------------
    def _load(self, pretrained, vision_tower, device, dtype):
        from accelerate import PartialState

        from oryx_mllm.pipeline import OryxPipeline

        state = PartialState()
        if device is None or device == "":
            device = f"cuda:{state.local_process_index}" if torch.cuda.is_available() else "cpu"
        self._rank, self._world_size = state.process_index, state.num_processes
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        elif dtype in DTYPES:
            torch_dtype = DTYPES[dtype]
        else:
            raise ConfigError(f"dtype must be auto or one of {sorted(DTYPES)}, got {dtype!r}")
        pipe = OryxPipeline.from_pretrained(
            pretrained or None, vision_tower=vision_tower or None, torch_dtype=torch_dtype
        )
        pipe.model.to(device)
        return pipe

    def _override_video_options(self, fps, max_frames, long_max_frames) -> None:
        from oryx_mllm.processing.options import MultiViewOptions, VideoOptions

        changes = {
            k: v
            for k, v in {
                "fps": None if fps is None else float(fps),
                "max_frames": _opt_int(max_frames, "max_frames"),
                "long_max_frames": _opt_int(long_max_frames, "long_max_frames"),
            }.items()
            if v is not None
        }
        if not changes:
            return
        proc = self.pipeline.processor
        proc.video_options = dataclasses.replace(proc.video_options or VideoOptions(), **changes)

        mv = proc.multiview_options or MultiViewOptions()
        proc.multiview_options = dataclasses.replace(mv, frame=proc.video_options)

    # Helpers -------------------------------------------------------------------------------------
    def _doc(self, task: str, split: str, doc_id: int):
        return self.task_dict[task][split][doc_id]

    def _wants_multiview(self, task: str) -> bool:
        if self.multiview == "auto":
            return any(h in task.lower() for h in MULTIVIEW_TASK_HINTS)
        return self.multiview == "true"

    def messages(self, context: str, visuals: Sequence[Any], task: str = "") -> list[dict]:
        """One user turn: the media of ``visuals`` first, then ``context`` without placeholders."""
        visuals = _flatten_visuals(list(visuals))
        text = context.replace("<image>", "").replace("<video>", "").strip() or " "
        images = [v for v in visuals if not _is_video(v)]
        videos = [v["video"] if isinstance(v, dict) else str(v) for v in visuals if _is_video(v)]
        parts: list[dict] = []
        if len(images) > 1 and self._wants_multiview(task):
            parts.append({"type": "multiview", "views": images})
        else:
            parts += [{"type": "image", "image": im} for im in images]
        parts += [{"type": "video", "video": v} for v in videos]
        if self.compression is not None:
            for p in parts:
                p["compression"] = self.compression
        parts.append({"type": "text", "text": text})
        return [{"role": "user", "content": parts}]

    def _generation(self, gen_kwargs: dict) -> dict:
        kw = dict(gen_kwargs or {})
        until = kw.pop("until", None)
        stop = [until] if isinstance(until, str) else list(until or [])
        temperature = float(kw.get("temperature", 0.0) or 0.0)
        if not kw.get("do_sample", temperature > 0):
            temperature = 0.0
        return {
            "max_new_tokens": int(kw.get("max_new_tokens", self.max_new_tokens)),
            "temperature": temperature,
            "top_p": float(kw.get("top_p", 1.0) or 1.0),
            "stop": [s for s in stop if s] or None,
        }

    # lmms API ------------------------------------------------------------------------------------
    def generate_until(self, requests) -> list[str]:
        """Greedy (or sampled) answers, ``batch_size`` requests per padded batch."""
        args = [r.args for r in requests]
        # group by generation kwargs, keep the original order inside a group
        key_of = [json.dumps(a[1] or {}, sort_keys=True, default=str) for a in args]
        order = sorted(range(len(args)), key=lambda i: key_of[i])
        results: list[str | None] = [None] * len(args)
        start = 0
        while start < len(order):
            group = [order[start]]
            while (
                len(group) < self.batch_size
                and start + len(group) < len(order)
                and key_of[order[start + len(group)]] == key_of[group[0]]
            ):
                group.append(order[start + len(group)])
            start += len(group)
            convs = []
            for i in group:
                context, _, doc_to_visual, doc_id, task, split = args[i]
                visuals = _flatten_visuals(doc_to_visual(self._doc(task, split, doc_id)))
                convs.append(self.messages(context, visuals, task))
            answers = self.pipeline.chat_batch(
                convs,
                max_visual_tokens=self.max_visual_tokens,
                **self._generation(args[group[0]][1]),
            )
            for i, ans in zip(group, answers):
                results[i] = ans.text
                self.cache_hook.add_partial("generate_until", (args[i][0], args[i][1]), ans.text)
        return [r if r is not None else "" for r in results]

    @torch.inference_mode()
    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        """``(sum log p(continuation | media + context), continuation is the greedy decode)``."""
        out = []
        proc, model = self.pipeline.processor, self.pipeline.model
        for req in requests:
            context, target, doc_to_visual, doc_id, task, split = req.args
            doc = self._doc(task, split, doc_id)
            continuation = target(doc) if callable(target) else str(target)
            visuals = _flatten_visuals(doc_to_visual(doc))
            batch = proc(
                [self.messages(context, visuals, task)],
                visual_token_budget=self.max_visual_tokens,
            )
            cont = proc.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            if not cont:
                out.append((0.0, True))
                continue
            ids = torch.cat([batch["input_ids"][0], torch.tensor(cont)])[None].to(model.device)
            logits = model(input_ids=ids, visual_inputs=batch["visual_inputs"]).logits[0]
            n = len(cont)
            logp = torch.log_softmax(logits[-n - 1 : -1].float(), dim=-1)
            target_ids = ids[0, -n:]
            total = float(logp.gather(1, target_ids[:, None]).sum())
            greedy = bool((logp.argmax(-1) == target_ids).all())
            out.append((total, greedy))
            self.cache_hook.add_partial("loglikelihood", (context, continuation), (total, greedy))
        return out

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError(
            "OryxLmms does not implement generate_until_multi_round (multi-round tasks); use "
            "generate_until / loglikelihood tasks"
        )


def make_requests(
    docs: Sequence[dict],
    context: Callable[[dict], str],
    visuals: Callable[[dict], Any],
    gen_kwargs: dict | None = None,
    task: str = "local",
    split: str = "test",
) -> list:
    """lmms-eval ``Instance`` requests for a local list of docs (no datasets, no downloads), e.g. to
    smoke-test the adapter: ``model.task_dict = {task: {split: docs}}`` then
    ``model.generate_until(make_requests(...))``."""
    from lmms_eval.api.instance import Instance

    return [
        Instance(
            request_type="generate_until",
            arguments=(context(doc), dict(gen_kwargs or {}), visuals, i, task, split),
            idx=0,
            metadata={"task": task, "doc_id": i, "repeats": 1},
        )
        for i, doc in enumerate(docs)
    ]


__all__ = ["OryxLmms", "lmms_eval_manifest", "make_requests"]
