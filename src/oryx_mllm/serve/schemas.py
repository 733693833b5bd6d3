"""Request models of ``POST /v1/chat/completions`` and builders of the OpenAI response objects.

Content parts (OpenAI's, plus Oryx's multi-view list)::

    {"type": "text", "text": "..."}
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,..." | "file:///..."}}
    {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,..." | "/media/clip.mp4"}}
    {"type": "multiview", "views": [{"url": ...}, "data:image/jpeg;base64,...", ...],
     "marks": [[[x, y, object_id], ...], {"url": <instance-mask PNG>}, ...]}   # optional

``marks`` (optional, one entry per view) draws coarse-correspondence marks: per view either a
list of ``[x, y, object_id]`` points in that view's pixels, or the URL of a single-channel
instance mask (0 = background, k = object k).

Every media part may carry ``"compression": r`` (1, 2, 4 ...: the dynamic compressor's pooling
ratio for that input). Request-level extras (pass them with ``extra_body=`` in the ``openai``
client): ``compression`` (default ratio for all media), ``max_visual_tokens`` (per-request visual
token budget: the smallest compressions that fit are picked), ``fps`` and ``max_frames``
(video sampling).
"""

from __future__ import annotations

import time
import uuid
from functools import partial
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from oryx_mllm.checks import check_text
from oryx_mllm.compression_policy import check_ratio
from oryx_mllm.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _unicode(text: str) -> str:
    check_text("the text", text)  # a ConfigError: a ValueError, reported with the field's location
    return text


Text = Annotated[str, AfterValidator(_unicode)]


# the Dynamic Compressor's pooling ratio per side: the values the processing accepts (a
# ConfigError is a ValueError, which pydantic reports with the field's location)
Ratio = Annotated[int, AfterValidator(partial(check_ratio, error=ConfigError))]


class MediaURL(_Model):
    url: str = Field(min_length=1)
    detail: str | None = None  # accepted for compatibility, unused


class TextPart(_Model):
    type: Literal["text"]
    text: Text


class ImagePart(_Model):
    type: Literal["image_url"]
    image_url: MediaURL
    compression: Ratio | None = None

    @field_validator("image_url", mode="before")
    @classmethod
    def _url_string(cls, v: object) -> object:
        return {"url": v} if isinstance(v, str) else v


class VideoPart(_Model):
    type: Literal["video_url"]
    video_url: MediaURL
    compression: Ratio | None = None

    @field_validator("video_url", mode="before")
    @classmethod
    def _url_string(cls, v: object) -> object:
        return {"url": v} if isinstance(v, str) else v


class MultiViewPart(_Model):
    """Oryx extension: the views of one 3D scene, encoded together like video frames."""

    type: Literal["multiview"]
    views: list[MediaURL] = Field(min_length=1)
    compression: Ratio | None = None
    # per view: [[x, y, object_id], ...] points, or an instance mask's URL
    marks: list[list[tuple[float, float, int]] | MediaURL] | None = None

    @field_validator("views", "marks", mode="before")
    @classmethod
    def _view_urls(cls, v: object) -> object:
        if not isinstance(v, list):
            return v
        out = []
        for item in v:
            if isinstance(item, str):
                item = {"url": item}
            elif isinstance(item, dict) and item.get("type") == "image_url":
                inner = item.get("image_url")
                item = {"url": inner} if isinstance(inner, str) else inner
            out.append(item)
        return out

    @model_validator(mode="after")
    def _one_mark_entry_per_view(self) -> MultiViewPart:
        if self.marks is not None and len(self.marks) != len(self.views):
            raise ValueError(
                f"marks needs one entry per view: {len(self.views)} views, {len(self.marks)} marks"
            )
        return self


ContentPart = Annotated[
    TextPart | ImagePart | VideoPart | MultiViewPart, Field(discriminator="type")
]


class Message(_Model):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(_Model):
    include_usage: bool = False


class ChatCompletionRequest(_Model):
    """The OpenAI chat request (unknown OpenAI fields are ignored) plus Oryx's media options."""

    model: str
    messages: list[Message]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    # OpenAI clients may send an explicit null for any optional field: null = the default
    temperature: float | None = Field(1.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float | None = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    stop: Text | list[Text] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64, description="torch's seed range")
    n: int | None = Field(1, ge=1, le=1, description="only n=1 is supported")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    # Oryx extensions
    compression: Ratio | None = None
    max_visual_tokens: int | None = Field(None, ge=1)
    fps: float | None = Field(None, gt=0.0, le=60.0, allow_inf_nan=False)
    max_frames: int | None = Field(None, ge=1, le=1024)

    @field_validator("temperature", "top_p", "n", "stream", mode="after")
    @classmethod
    def _null_is_default(cls, v: object, info) -> object:
        return cls.model_fields[info.field_name].default if v is None else v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stops or None


# Responses ----------------------------------------------------------------------------------------


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt: int, visual: int, completion: int) -> dict:
    """OpenAI usage + the visual tokens (inside ``prompt_tokens``) at top level and in details."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "visual_tokens": visual,
        "prompt_tokens_details": {"cached_tokens": 0, "visual_tokens": visual},
    }


def completion(
    id_: str, model: str, text: str, finish_reason: str, usage_: dict, created: int | None = None
) -> dict:
    return {
        "id": id_,
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_,
    }


def chunk(
    id_: str,
    model: str,
    created: int,
    delta: dict | None = None,
    finish_reason: str | None = None,
    usage_: dict | None = None,
) -> dict:
    """One ``chat.completion.chunk``; ``delta=None`` with ``usage_`` is the final usage chunk."""
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    )
    out = {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage_ is not None:
        out["usage"] = usage_
    return out
