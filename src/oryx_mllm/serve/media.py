"""Media URLs -> bytes or allow-listed paths -> preprocessed :class:`VisualInput`.

Accepted URLs: ``data:<mime>;base64,<payload>`` (an image ``<mime>`` in a video part, or the
reverse, is refused); a local path or ``file://`` URL, only when it resolves (symlinks followed)
inside one of ``ServeSettings.media_root``; ``http(s)://`` only with ``allow_remote_media``.
Everything runs in a worker thread (see :mod:`.app`), never on the event loop, and raises
:class:`~oryx_mllm.serve.errors.APIError` with the offending ``param``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from oryx_mllm.compression_policy import fit_to_budget
from oryx_mllm.errors import OryxError, ViewError
from oryx_mllm.processing.options import VideoOptions
from oryx_mllm.processing.processor import OryxProcessor
from oryx_mllm.processing.types import VisualInput
from oryx_mllm.serve.errors import APIError, from_oryx_error
from oryx_mllm.serve.schemas import (
    ChatCompletionRequest,
    ImagePart,
    MediaURL,
    MultiViewPart,
    TextPart,
    VideoPart,
)
from oryx_mllm.serve.settings import ServeSettings

MediaData = bytes | Path
# the declared mime types of data URLs a part accepts besides its own kind: a GIF is an animation
OTHER_MIME = {"image": (), "video": ("image/gif",)}


class MediaResolver:
    """Turns the media URLs of a request into bytes or safe paths, enforcing the settings."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.roots = settings.resolved_media_roots()

    def fetch(self, url: str, param: str) -> MediaData:
        if url.startswith("data:"):
            return self._data_url(url, param)
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            return self._remote(url, param)
        if parsed.scheme == "file":
            return self._local(Path(unquote(parsed.path)), param)
        if parsed.scheme == "" or (len(parsed.scheme) == 1 and url[1:3] in (":\\", ":/")):
            return self._local(Path(url), param)
        raise APIError(400, f"unsupported media URL scheme {parsed.scheme!r}", param=param,
                       code="invalid_url")  # fmt: skip

    def _too_big(self, size: int, param: str) -> APIError:
        return APIError(
            413,
            f"media is {size} bytes, more than the limit of {self.settings.max_media_bytes}",
            param=param,
            code="media_too_large",
        )

    def _data_url(self, url: str, param: str) -> bytes:
        header, sep, payload = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise APIError(400, "data: URLs must be base64 (data:<mime>;base64,<data>)",
                           param=param, code="invalid_base64")  # fmt: skip
        payload = "".join(payload.split())  # tolerate line breaks
        if len(payload) * 3 // 4 > self.settings.max_media_bytes + 2:
            raise self._too_big(len(payload) * 3 // 4, param)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise APIError(400, f"invalid base64 data in media URL: {exc}", param=param,
                           code="invalid_base64") from exc  # fmt: skip
        if not data:
            raise APIError(400, "empty media data", param=param, code="invalid_base64")
        return data

    def _local(self, path: Path, param: str) -> Path:
        if not self.roots:
            raise APIError(403, "local media paths are disabled (no media root configured)",
                           type="permission_error", param=param, code="media_path_forbidden")  # fmt: skip
        if "\0" in str(path):  # no file system takes one; Path.resolve() raises ValueError
            raise APIError(400, "media path contains a NUL byte", param=param, code="invalid_url")
        candidates = [path] if path.is_absolute() else [root / path for root in self.roots]
        for candidate in candidates:
            resolved = candidate.expanduser().resolve()
            if any(resolved.is_relative_to(root) for root in self.roots):
                if not resolved.is_file():
                    problem = (
                        "media path is not a file" if resolved.exists() else "media file not found"
                    )
                    raise APIError(400, f"{problem}: {path}", param=param,
                                   code="media_not_found")  # fmt: skip
                size = resolved.stat().st_size
                if size > self.settings.max_media_bytes:
                    raise self._too_big(size, param)
                return resolved
        raise APIError(403, f"{path} is outside the allowed media roots", type="permission_error",
                       param=param, code="media_path_forbidden")  # fmt: skip

    def _remote(self, url: str, param: str) -> bytes:
        if not self.settings.allow_remote_media:
            raise APIError(403, "fetching remote media is disabled on this server",
                           type="permission_error", param=param, code="remote_media_disabled")  # fmt: skip
        import httpx

        limit, budget = self.settings.max_media_bytes, self.settings.remote_timeout_s
        # httpx's timeout bounds each read; a server that trickles bytes must not hold a decode
        # thread for longer than the whole budget
        deadline = time.monotonic() + budget
        try:
            with httpx.stream("GET", url, timeout=budget, follow_redirects=False) as resp:
                if resp.status_code != 200:
                    raise APIError(400, f"fetching {url} gave HTTP {resp.status_code}",
                                   param=param, code="media_fetch_failed")  # fmt: skip
                chunks, size = [], 0
                for part in resp.iter_bytes():
                    size += len(part)
                    if size > limit:
                        raise self._too_big(size, param)
                    if time.monotonic() > deadline:
                        raise APIError(400, f"fetching {url} took longer than {budget}s",
                                       param=param, code="media_fetch_failed")  # fmt: skip
                    chunks.append(part)
        except httpx.HTTPError as exc:
            raise APIError(400, f"fetching {url} failed: {exc}", param=param,
                           code="media_fetch_failed") from exc  # fmt: skip
        return b"".join(chunks)


@dataclasses.dataclass
class PreparedRequest:
    """Processor-ready messages (media already decoded as ``visual`` parts) and their counts."""

    messages: list[dict]
    visual_inputs: list[VisualInput]
    visual_tokens: int


def check_media_type(url: str, kind: str, param: str, part: str) -> None:
    """A data URL's declared mime type must be of the ``part``'s ``kind`` (``image`` or
    ``video``): no ``video/*`` data in an image, no ``image/*`` (but GIF) in a video. Paths and
    URLs declare no type and are not checked."""
    if not url.startswith("data:"):
        return
    mime = url[5:].partition(",")[0].split(";")[0].strip().lower()
    major = mime.partition("/")[0]
    if major in ("image", "video") and major != kind and mime not in OTHER_MIME[kind]:
        raise APIError(400, f"{param}: the {part} holds {major} data (data:{mime}), not {kind} "
                       "data; send images as image_url parts and videos as video_url parts",
                       param=param, code="media_type_mismatch")  # fmt: skip


def check_user_content(request: ChatCompletionRequest) -> None:
    """Every user message needs text or media: ``null``, ``""``, ``[]`` (or only empty text
    parts) is a 400 naming the message. Other roles may be empty, as with OpenAI."""
    for i, msg in enumerate(request.messages):
        content = msg.content
        parts = content if isinstance(content, list) else [content]
        if msg.role == "user" and all(
            not p or (isinstance(p, TextPart) and not p.text) for p in parts
        ):
            raise APIError(400, f"messages[{i}]: empty content (a user message needs text or "
                           "media)", param=f"messages[{i}].content", code="invalid_value")  # fmt: skip


def has_media(request: ChatCompletionRequest) -> bool:
    """Whether any message has an image, video or multi-view part (anything to fetch/decode)."""
    return any(
        not isinstance(part, TextPart)
        for msg in request.messages
        if isinstance(msg.content, list)
        for part in msg.content
    )


def check_prompt(prepared: PreparedRequest, pipeline) -> None:
    """Tokenise the request as the model will see it and check that it fits the context, so a
    request that cannot run fails alone, before it can join a batch."""
    try:
        batch = pipeline.processor([prepared.messages])
        ids = batch["input_ids"]
        pipeline.model.check_context(int(ids.shape[1]), int(pipeline.model.visual_mask(ids).sum()))
    except OryxError as exc:
        raise from_oryx_error(exc, param="messages") from exc


def prepare_messages(
    request: ChatCompletionRequest,
    processor: OryxProcessor,
    resolver: MediaResolver,
    max_media_items: int,
) -> PreparedRequest:
    """Fetch and decode every media part of ``request`` (blocking: run it in a thread)."""
    check_user_content(request)
    video_opts = processor.video_options or VideoOptions()
    changes: dict = {}
    if request.fps is not None:
        changes["fps"] = request.fps
    if request.max_frames is not None:  # a cap in both short and long-video mode
        changes["max_frames"] = request.max_frames
        changes["long_max_frames"] = min(video_opts.long_max_frames, request.max_frames)
    if changes:
        # the switch to long-video mode stays where the server's options put it
        changes["long_threshold_s"] = video_opts.threshold_s
        try:
            video_opts = dataclasses.replace(video_opts, **changes)
        except OryxError as exc:
            raise from_oryx_error(exc, param="fps" if "fps" in changes else "max_frames") from exc

    messages: list[dict] = []
    items: list[VisualInput] = []
    fetched: dict[str, MediaData] = {}  # URL -> its bytes/path: each URL is fetched once
    sources: list[tuple[ImagePart | VideoPart | MultiViewPart, int | None, str, dict]] = []
    n_media = 0
    for i, msg in enumerate(request.messages):
        role = "system" if msg.role == "developer" else msg.role
        if msg.content is None or isinstance(msg.content, str):
            messages.append({"role": role, "content": msg.content or ""})
            continue
        parts: list[dict] = []
        for j, part in enumerate(msg.content):
            param = f"messages[{i}].content[{j}]"
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
                continue
            if role != "user":
                raise APIError(400, f"media parts are only allowed in user messages ({role})",
                               param=param, code="invalid_value")  # fmt: skip
            n_media += len(part.views) if isinstance(part, MultiViewPart) else 1
            if n_media > max_media_items:
                raise APIError(413, f"more than {max_media_items} media items in one request",
                               param=param, code="too_many_media")  # fmt: skip
            r = part.compression if part.compression is not None else request.compression
            try:
                item = _decode(part, r, param, processor, resolver, video_opts, fetched)
            except OryxError as exc:
                raise from_oryx_error(exc, param=param) from exc
            items.append(item)
            parts.append({"type": "visual", "input": item})
            sources.append((part, r, param, parts[-1]))
        messages.append({"role": role, "content": parts})

    if not any(m["role"] == "user" for m in messages):
        raise APIError(400, "messages must contain at least one user message", param="messages",
                       code="invalid_value")  # fmt: skip
    if request.max_visual_tokens is not None and items:
        # inputs with an explicit ratio keep it; the others may be decoded again at a larger one
        fixed = [k for k, (_, r, _, _) in enumerate(sources) if r is not None]

        def remake(k: int, ratio: int) -> VisualInput:
            part, _, param, slot = sources[k]
            try:
                slot["input"] = _decode(
                    part, ratio, param, processor, resolver, video_opts, fetched
                )
            except OryxError as exc:
                raise from_oryx_error(exc, param=param) from exc
            return slot["input"]

        try:
            fit_to_budget(
                items, request.max_visual_tokens, processor.patch_size, fixed=fixed, remake=remake
            )
        except OryxError as exc:
            raise from_oryx_error(exc, param="max_visual_tokens") from exc
    tokens = sum(it.num_tokens(processor.patch_size) for it in items)
    return PreparedRequest(messages, items, tokens)


def _decode(
    part: ImagePart | VideoPart | MultiViewPart,
    r: int | None,
    param: str,
    processor: OryxProcessor,
    resolver: MediaResolver,
    video_opts: VideoOptions,
    fetched: dict[str, MediaData],
) -> VisualInput:
    """Decode ``part`` at ratio ``r``; its URLs are fetched through the request's memo
    ``fetched`` (decoding again at another ratio does not download or base64-decode again)."""
    if isinstance(part, ImagePart):
        url, url_param = part.image_url.url, f"{param}.image_url.url"
        check_media_type(url, "image", url_param, "image_url part")
        data = _fetch(resolver, url, url_param, fetched)
        return processor.preprocess({"type": "image", "image": data, "compression": r})
    if isinstance(part, VideoPart):
        from oryx_mllm.processing.video import preprocess_video

        url, url_param = part.video_url.url, f"{param}.video_url.url"
        check_media_type(url, "video", url_param, "video_url part")
        data = _fetch(resolver, url, url_param, fetched)
        return preprocess_video(data, video_opts, compression=r)
    for k, v in enumerate(part.views):
        check_media_type(v.url, "image", f"{param}.views[{k}]", "multiview view")
    for k, m in enumerate(part.marks or ()):
        if isinstance(m, MediaURL):
            check_media_type(m.url, "image", f"{param}.marks[{k}]", "multiview mask")
    views = [
        _fetch(resolver, v.url, f"{param}.views[{k}]", fetched) for k, v in enumerate(part.views)
    ]
    marks = None
    if part.marks is not None:
        marks = [
            _fetch_marks(resolver, m, f"{param}.marks[{k}]", fetched)
            for k, m in enumerate(part.marks)
        ]
    try:
        return processor.preprocess(
            {"type": "multiview", "views": views, "marks": marks, "compression": r}
        )
    except ViewError as exc:  # preprocess_views names the view that failed
        raise from_oryx_error(exc, param=f"{param}.views[{exc.view}]") from exc


def _fetch(resolver: MediaResolver, url: str, param: str, fetched: dict[str, MediaData]):
    """``url``'s bytes or path, fetched at most once per request (``fetched`` is the memo)."""
    if url not in fetched:
        fetched[url] = resolver.fetch(url, param)
    return fetched[url]


def _fetch_marks(resolver: MediaResolver, marks, param: str, fetched: dict[str, MediaData]):
    """One view's marks: its points as given, or its instance mask fetched and decoded."""
    if not isinstance(marks, MediaURL):
        return marks
    from oryx_mllm.processing.multiview import load_instance_mask

    data = _fetch(resolver, marks.url, param, fetched)
    try:
        return load_instance_mask(data)
    except OryxError as exc:
        raise from_oryx_error(exc, param=param) from exc
