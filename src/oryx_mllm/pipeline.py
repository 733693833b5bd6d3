"""Ask Oryx about images, videos and multi-view scenes: the one entry point the CLI, the server and
the evaluation harness share.

    from oryx_mllm import OryxPipeline

    oryx = OryxPipeline.from_pretrained()                 # the embedded default model
    oryx = OryxPipeline.from_pretrained("/models/Oryx-7B", vision_tower="/models/oryx_vit.pth")
    answer = oryx.ask("What is the code on line 3?", image="page.png")
    print(answer.text, answer.visual_tokens, answer.compression)

Messages use the processor's content parts (see :mod:`oryx_mllm.processing.processor`), so a
multi-turn chat with several images/videos is ``oryx.chat(messages)``; ``chat_batch`` runs
several conversations as one padded batch through one packed encoder pass.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oryx_mllm.checkpoint import check_device
from oryx_mllm.checks import check_number
from oryx_mllm.config import OryxConfig
from oryx_mllm.errors import CheckpointError, InvalidInputError
from oryx_mllm.processing.chat import IM_END
from oryx_mllm.processing.processor import OryxProcessor
from oryx_mllm.processing.types import VisualInput

DEFAULT_MODEL_NAME = "oryx-tiny"
# Below this, sampling is decoded greedily (its limit as the temperature goes to 0): logits
# divided by 1e-39 overflow to inf and torch.multinomial fails on the NaN probabilities.
MIN_SAMPLING_TEMPERATURE = 1e-5


def default_model_path() -> Path:
    """The embedded default model shipped inside the package."""
    return Path(str(resources.files("oryx_mllm") / "assets" / DEFAULT_MODEL_NAME))


@dataclass
class InputInfo:
    modality: str
    source: str | None
    original_size: tuple[int, int] | None  # (width, height)
    frames: int
    frame_size: tuple[int, int]  # (width, height) as encoded, like original_size
    compression: int
    visual_tokens: int
    # multi-view scenes drawn with coarse-correspondence marks: how many distinct objects got one
    marked_objects: int | None = None
    # what the user should know about the input (e.g. a video that decodes only in part)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Answer:
    text: str
    prompt_tokens: int  # visual tokens included
    visual_tokens: int
    completion_tokens: int
    latency_s: float
    inputs: list[InputInfo] = field(default_factory=list)
    finish_reason: str = "stop"  # "stop" | "length"

    @property
    def compression(self) -> list[int]:
        return [i.compression for i in self.inputs]


def _info(item: VisualInput, patch_size: int) -> InputInfo:
    f = item.frames[-1]
    return InputInfo(
        modality=item.modality,
        source=item.source,
        original_size=item.original_size,
        frames=len(item.frames) if item.modality != "image" else 1,
        frame_size=(int(f.shape[-1]), int(f.shape[-2])),
        compression=item.compression,
        visual_tokens=item.num_tokens(patch_size),
        marked_objects=_marked_objects(item),
        warnings=_input_warnings(item),
    )


def _input_warnings(item: VisualInput) -> list[str]:
    meta, out = item.meta or {}, []
    if "frames_end_s" in meta:
        out.append(
            f"the video's frames end at {meta['frames_end_s']:g} s, before its stated duration of "
            f"{meta.get('duration', 0):g} s (truncated or damaged file): only that part was seen"
        )
    if meta.get("decode_error"):
        out.append(f"decoding stopped at a damaged frame: {meta['decode_error']}")
    if "num_views" in meta and len(meta["view_indices"]) < meta["num_views"]:
        out.append(
            f"{meta['num_views']} views given, {len(meta['view_indices'])} evenly spaced ones "
            f"used (the limit: MultiViewOptions.max_views = {meta['max_views']})"
        )
    return out


def _is_list(value) -> bool:
    """A list or tuple, not a string (which would be iterated letter by letter)."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _marked_objects(item: VisualInput) -> int | None:
    locations = (item.meta or {}).get("mark_locations")
    if locations is None:
        return None
    return len({k for view in locations for k in view})


class OryxPipeline:
    def __init__(self, model, processor: OryxProcessor):
        self.model = model.eval()
        self.processor = processor
        if model.config.visual_token_id != processor.visual_token_id:
            raise CheckpointError(
                f"model and processor disagree on the visual token id "
                f"({model.config.visual_token_id} vs {processor.visual_token_id})"
            )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        *,
        vision_tower=None,
        torch_dtype: torch.dtype | str | None = None,
        device_map=None,
        **processor_kwargs,
    ) -> OryxPipeline:
        """Load a model folder (released or ours); ``None`` = the embedded default model."""
        from oryx_mllm.model import OryxForConditionalGeneration

        check_device(device_map)
        folder = Path(path) if path is not None else default_model_path()
        if not (folder / "config.json").exists():
            hint = (
                " (the embedded default model is missing from this install; rebuild it with "
                "`oryx train recipes/tiny.yaml`)"
                if path is None
                else ""
            )
            raise CheckpointError(f"no Oryx model at {folder}{hint}")
        OryxConfig.load(folder)  # a malformed config.json is named before the tokenizer reads it
        processor = OryxProcessor.from_pretrained(folder, **processor_kwargs)
        model = OryxForConditionalGeneration.from_pretrained(
            folder,
            tokenizer=processor.tokenizer,
            vision_tower=vision_tower,
            torch_dtype=torch_dtype,
            device_map=device_map,
        )
        return cls(model, processor)

    def save_pretrained(self, directory: str | Path) -> None:
        self.model.save_pretrained(directory, tokenizer=self.processor.tokenizer)
        self.processor.save_pretrained(directory)

    # Building messages ---------------------------------------------------------------------------
    def messages_for(
        self,
        question: str,
        image: Any | Sequence[Any] | None = None,
        video: Any | None = None,
        views: Sequence[Any] | None = None,
        marks: Sequence[Any] | None = None,
        compression: int | None = None,
    ) -> list[dict]:
        """One user turn in the order the model was trained on: the media parts first, then the
        text (the released models), or the text first for the modalities in the processor's
        ``text_first`` (a model trained with ``data.text_first``), and again after the media
        when its ``repeat_question`` says so."""
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError("the question must be a non-empty string")
        if marks is not None and views is None:
            raise InvalidInputError(
                "marks (instance masks or points) are drawn on views: give views"
            )
        if views is not None and not _is_list(views):
            raise InvalidInputError(f"views must be a list of images, got {type(views).__name__}")
        if marks is not None:
            if not _is_list(marks):
                raise InvalidInputError(
                    f"marks must be a list with one entry per view, got {type(marks).__name__}"
                )
            for i, m in enumerate(marks):
                if not isinstance(m, (np.ndarray, torch.Tensor)) and not _is_list(m):
                    raise InvalidInputError(
                        f"marks[{i}] must be an instance mask or a list of (x, y, object_id) "
                        f"points, got {type(m).__name__}"
                    )
        parts: list[dict] = []
        images = image if isinstance(image, (list, tuple)) else ([] if image is None else [image])
        for im in images:
            parts.append({"type": "image", "image": im})
        if video is not None:
            parts.append({"type": "video", "video": video})
        if views is not None:
            parts.append({"type": "multiview", "views": list(views), "marks": marks})
        if compression is not None:
            for p in parts:
                p["compression"] = compression
        if self.processor.media_after_text(p["type"] for p in parts):
            again = [{"type": "text", "text": question}] if self.processor.repeat_question else []
            content = [{"type": "text", "text": question + "\n"}, *parts, *again]
            return [{"role": "user", "content": content}]
        parts.append({"type": "text", "text": question})
        return [{"role": "user", "content": parts}]

    # Asking ----------------------------------------------------------------------------------------
    def ask(
        self,
        question: str,
        *,
        image: Any | Sequence[Any] | None = None,
        video: Any | None = None,
        views: Sequence[Any] | None = None,
        marks: Sequence[Any] | None = None,
        compression: int | None = None,
        max_visual_tokens: int | None = None,
        **generation,
    ) -> Answer:
        """Ask one question about the given media. See :meth:`chat_batch` for ``generation``."""
        messages = self.messages_for(question, image, video, views, marks, compression)
        return self.chat(messages, max_visual_tokens=max_visual_tokens, **generation)

    def chat(self, messages: list[dict], **kwargs) -> Answer:
        return self.chat_batch([messages], **kwargs)[0]

    @torch.inference_mode()
    def chat_batch(
        self,
        conversations: Sequence[list[dict]],
        *,
        max_visual_tokens: int | None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        streamer=None,
        visual_inputs: Sequence[Sequence[VisualInput]] | None = None,
    ) -> list[Answer]:
        """Answer several conversations in one batch (greedy when ``temperature`` is 0, or below
        ``MIN_SAMPLING_TEMPERATURE``)."""
        check_number("max_new_tokens", max_new_tokens, integer=True, error=InvalidInputError)
        check_number("temperature", temperature, error=InvalidInputError)
        check_number("top_p", top_p, error=InvalidInputError)
        for name, value in (("max_visual_tokens", max_visual_tokens), ("seed", seed)):
            if value is not None:
                check_number(name, value, integer=True, error=InvalidInputError)
        if max_new_tokens < 1:
            raise InvalidInputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0 or not 0 < top_p <= 1:
            raise InvalidInputError("temperature must be >= 0 and top_p in (0, 1]")
        if seed is not None and not -(2**63) <= seed < 2**64:
            raise InvalidInputError(f"seed must be in [-2**63, 2**64) (torch's range), got {seed}")
        start = time.perf_counter()
        batch = self.processor(
            list(conversations),
            visual_inputs=visual_inputs,
            visual_token_budget=max_visual_tokens,
        )
        items: list[VisualInput] = batch["visual_inputs"]
        device = self.model.device
        input_ids = batch["input_ids"].to(device)
        attention_mask = batch["attention_mask"].to(device)
        tok = self.processor.tokenizer
        eos = [i for i in {self.processor.eos_token_id, tok.eos_token_id} if i is not None]
        gen: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "eos_token_id": eos,
            "pad_token_id": tok.pad_token_id,
        }
        if temperature >= MIN_SAMPLING_TEMPERATURE:
            gen.update(do_sample=True, temperature=temperature, top_p=top_p)
            if seed is not None:
                torch.manual_seed(seed)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            gen.update(stop_strings=list(stop), tokenizer=tok)
        if streamer is not None:
            if len(conversations) != 1:
                raise InvalidInputError("streaming works with one conversation at a time")
            gen["streamer"] = streamer
        out = self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, visual_inputs=items, **gen
        )
        latency = time.perf_counter() - start

        answers, cursor = [], 0
        visual_id = self.processor.visual_token_id
        for row in range(len(conversations)):
            n_prompt = int(attention_mask[row].sum())
            n_visual = int((input_ids[row] == visual_id).sum())
            mine = []
            while cursor < len(items) and sum(i.visual_tokens for i in mine) < n_visual:
                mine.append(_info(items[cursor], self.processor.patch_size))
                cursor += 1
            ids = out[row].tolist()
            finish = "length"
            for k, t in enumerate(ids):
                if t in eos or t == tok.pad_token_id:
                    ids, finish = ids[:k], "stop"
                    break
            text = tok.decode(ids, skip_special_tokens=True)
            if stop:
                cut = [text.find(s) for s in stop if s in text]
                if cut:
                    text, finish = text[: min(cut)], "stop"
            answers.append(
                Answer(
                    text=text.strip(),
                    prompt_tokens=n_prompt,
                    visual_tokens=n_visual,
                    completion_tokens=len(ids),
                    latency_s=latency,
                    inputs=mine,
                    finish_reason=finish,
                )
            )
        return answers


__all__ = ["IM_END", "Answer", "InputInfo", "OryxPipeline", "default_model_path"]
