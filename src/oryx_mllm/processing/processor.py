"""OryxProcessor: conversations with media -> padded token batches + visual inputs for the model.

A message's ``content`` is either a string with ``<image>`` / ``<video>`` markers (pair it with
``visual_inputs=`` of ready :class:`VisualInput`) or a list of parts::

    {"type": "text", "text": "..."}
    {"type": "image", "image": path | bytes | PIL | numpy, "compression": 1}      # optional ratio
    {"type": "video", "video": path | [frames] | directory}
    {"type": "multiview", "views": [image, ...]}
    {"type": "visual", "input": VisualInput}                                     # preprocessed

Compression per input: the part's ``"compression"``, else the call's ``compression=``, else the
paper default (:mod:`oryx_mllm.compression_policy`); or ``visual_token_budget=`` to pick, per
conversation, the smallest compression that fits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from oryx_mllm.compression_policy import check_ratio, fit_to_budget
from oryx_mllm.config import VISUAL_TOKEN
from oryx_mllm.errors import ConfigError, InvalidInputError, UnsupportedModalityError
from oryx_mllm.processing.chat import (
    DEFAULT_SYSTEM,
    IM_END,
    collate,
    encode_conversation,
    ensure_visual_token,
    marker_for,
)
from oryx_mllm.processing.types import MODALITIES, VisualInput

PART_TYPES = ("text", "image", "video", "multiview", "visual")
PROCESSOR_CONFIG = "processor_config.json"


def check_text_first(value: object) -> tuple[str, ...]:
    """``value`` as a tuple of modality names from ``MODALITIES``, or a ConfigError."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"text_first must be a list of modalities, got {value!r}")
    bad = sorted({str(v) for v in value} - set(MODALITIES))
    if bad:
        raise ConfigError(f"text_first has unknown modalities {bad}; choose from {MODALITIES}")
    return tuple(value)


def check_repeat_question(value: object) -> bool:
    """``value`` as a bool, or a ConfigError."""
    if not isinstance(value, bool):
        raise ConfigError(f"repeat_question must be true or false, got {value!r}")
    return value


class OryxProcessor:
    def __init__(
        self,
        tokenizer,
        visual_token: str = VISUAL_TOKEN,
        patch_size: int = 16,
        system: str | None = DEFAULT_SYSTEM,
        image_options=None,
        video_options=None,
        multiview_options=None,
        text_first: Sequence[str] = (),
        repeat_question: bool = False,
    ):
        """``text_first``: modalities (``MODALITIES``) the model was trained to be asked about
        with the question before the media (``data.text_first``); :meth:`media_after_text` says
        which order a turn takes. Released models: none (the media first). ``repeat_question``:
        such a question is asked again after the media (``data.repeat_question``)."""
        self.tokenizer = tokenizer
        self.visual_token = visual_token
        self.visual_token_id = ensure_visual_token(tokenizer, visual_token)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or IM_END
        self.patch_size = patch_size
        self.system = system
        self.image_options = image_options
        self.video_options = video_options
        self.multiview_options = multiview_options
        self.text_first = check_text_first(text_first)
        self.repeat_question = check_repeat_question(repeat_question)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> OryxProcessor:
        """The tokenizer in ``path`` plus the options of ``processor_config.json`` when present
        (released folders have none: the released preprocessing defaults then apply)."""
        from oryx_mllm.checkpoint import load_tokenizer
        from oryx_mllm.files import read_json
        from oryx_mllm.processing import options as opts

        config_file = Path(path) / PROCESSOR_CONFIG
        saved = read_json(config_file) if config_file.exists() else {}
        try:
            parsed = {
                "patch_size": saved.get("patch_size", 16),
                "system": saved.get("system", DEFAULT_SYSTEM),
                "image_options": opts.image_options_from_dict(saved.get("image_options")),
                "video_options": opts.video_options_from_dict(saved.get("video_options")),
                "multiview_options": opts.multiview_options_from_dict(
                    saved.get("multiview_options")
                ),
                "text_first": check_text_first(saved.get("text_first", [])),
                "repeat_question": check_repeat_question(saved.get("repeat_question", False)),
            }
            opts.check_number("patch_size", parsed["patch_size"], integer=True)
        except ConfigError as exc:
            raise ConfigError(f"invalid {config_file}: {exc}") from exc
        return cls(load_tokenizer(path), **{**parsed, **kwargs})

    def to_dict(self) -> dict:
        from oryx_mllm.processing.options import options_to_dict

        def maybe(o):
            return options_to_dict(o) if o is not None else None

        return {
            "patch_size": self.patch_size,
            "system": self.system,
            "image_options": maybe(self.image_options),
            "video_options": maybe(self.video_options),
            "multiview_options": maybe(self.multiview_options),
            "text_first": list(self.text_first),
            "repeat_question": self.repeat_question,
        }

    def save_pretrained(self, directory: str | Path) -> None:
        """Tokenizer files + ``processor_config.json`` (the preprocessing options)."""
        from oryx_mllm.files import atomic_save_json

        self.tokenizer.save_pretrained(str(directory))
        atomic_save_json(self.to_dict(), Path(directory) / PROCESSOR_CONFIG)

    def media_after_text(self, modalities: Iterable[str]) -> bool:
        """Whether a user turn with media of these modalities puts its question first: when
        every one of them is in ``text_first`` (and there is at least one)."""
        kinds = set(modalities)
        return bool(kinds) and kinds <= set(self.text_first)

    @property
    def eos_token_id(self) -> int:
        """``<|im_end|>``: where an assistant turn stops."""
        return self.tokenizer.convert_tokens_to_ids(IM_END)

    # Media ------------------------------------------------------------------------------------
    def preprocess(self, part: dict, compression: int | None = None) -> VisualInput:
        """One media part (see the module docstring) -> a VisualInput."""
        kind = part.get("type")
        r = part.get("compression", compression)
        if r is not None:
            check_ratio(r)  # before any resizing: a huge ratio would upscale the image to match
        if kind == "visual":
            item = part.get("input")
            if not isinstance(item, VisualInput):
                raise InvalidInputError("a 'visual' part needs 'input': a VisualInput")
            if r is not None:
                item.compression = r
            return item
        if kind == "image":
            from oryx_mllm.processing.image import preprocess_image

            r = 1 if r is None else r
            return preprocess_image(part.get("image"), self.image_options, compression=r)
        if kind == "video":
            from oryx_mllm.processing.video import preprocess_video

            return preprocess_video(part.get("video"), self.video_options, compression=r)
        if kind == "multiview":
            from oryx_mllm.processing.multiview import preprocess_views

            return preprocess_views(
                part.get("views"),
                self.multiview_options,
                compression=2 if r is None else r,
                marks=part.get("marks"),
            )
        raise UnsupportedModalityError(f"unknown content part type {kind!r}; expected {PART_TYPES}")

    def _flatten(
        self, messages: list[dict], compression: int | None
    ) -> tuple[list[dict], list[VisualInput], list[dict]]:
        """Parts-style messages -> string messages with markers + their visual inputs + the
        parts they came from."""
        out, items, parts = [], [], []
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise InvalidInputError(f"message {i} is a {type(m).__name__}, not a dict")
            content = m.get("content", "")
            if isinstance(content, str):
                out.append(m)
                continue
            if not isinstance(content, Sequence):
                raise InvalidInputError(f"message {i} content must be a string or a list of parts")
            text = []
            for part in content:
                if isinstance(part, str):
                    text.append(part)
                elif not isinstance(part, dict):
                    raise InvalidInputError(f"message {i} has a content part of type {type(part)}")
                elif part.get("type") == "text":
                    text.append(part.get("text", ""))
                else:
                    item = self.preprocess(part, compression)
                    items.append(item)
                    parts.append(part)
                    text.append(marker_for(item) + "\n")
            out.append({**m, "content": "".join(text)})
        return out, items, parts

    # Main entry -------------------------------------------------------------------------------
    def __call__(
        self,
        conversations: list[dict] | list[list[dict]],
        visual_inputs: Sequence[VisualInput] | Sequence[Sequence[VisualInput]] | None = None,
        *,
        add_generation_prompt: bool = True,
        compression: int | None = None,
        visual_token_budget: int | None = None,
        padding_side: str = "left",
    ) -> dict:
        """Tokenise one conversation or a batch.

        Returns ``{"input_ids", "attention_mask", "visual_inputs"}`` (+ ``"labels"`` when
        ``add_generation_prompt=False``, i.e. training), ready for ``model(**batch)`` /
        ``model.generate(**batch, ...)``. ``visual_inputs`` (flat, in placeholder order) pairs
        with string contents: one list per conversation in a batch.
        """
        single = bool(conversations) and isinstance(conversations[0], dict)
        convs = [conversations] if single else list(conversations)
        if not convs:
            raise InvalidInputError("no conversations given")
        if visual_inputs is None:
            given = [[] for _ in convs]
        elif single:
            given = [list(visual_inputs)]
        else:
            given = [list(v) for v in visual_inputs]
            if len(given) != len(convs):
                raise InvalidInputError(
                    f"{len(convs)} conversations but visual_inputs for {len(given)}"
                )
        if compression is not None:
            check_ratio(compression)
        samples, flat = [], []
        for conv, extra in zip(convs, given):
            messages, items, parts = self._flatten(conv, compression)
            if items and extra:
                raise InvalidInputError(
                    "use either media content parts or visual_inputs=, not both"
                )
            if compression is not None:
                for it in extra:
                    it.compression = compression
            if visual_token_budget is not None and (items or extra):
                items = self._fit(items, parts, extra, compression, visual_token_budget)
            items = items or extra
            samples.append(
                encode_conversation(
                    messages,
                    self.tokenizer,
                    items,
                    self.visual_token_id,
                    system=self.system,
                    add_generation_prompt=add_generation_prompt,
                    patch_size=self.patch_size,
                    markers_after=self.media_after_text(it.modality for it in items),
                    repeat_question=self.repeat_question,
                )
            )
            flat.extend(items)
        batch = collate(samples, self.tokenizer.pad_token_id, padding_side)
        if add_generation_prompt:
            batch.pop("labels")
        batch["visual_inputs"] = flat
        return batch

    def _fit(
        self,
        items: list[VisualInput],
        parts: list[dict],
        extra: list[VisualInput],
        compression: int | None,
        budget: int,
    ) -> list[VisualInput]:
        """Fit a conversation's inputs to ``budget`` tokens (``fit_to_budget``): inputs given a
        ratio (their part's ``compression``, or ``compression=``) keep it; media parts may be
        preprocessed again at a larger ratio. Returns the (possibly remade) inputs."""
        if not items:  # visual_inputs=: already preprocessed, cannot be remade
            fixed = range(len(extra)) if compression is not None else ()
            fit_to_budget(extra, budget, self.patch_size, fixed=fixed)
            return extra
        fixed = [i for i, p in enumerate(parts) if p.get("compression", compression) is not None]

        def remake(i: int, ratio: int) -> VisualInput | None:
            if parts[i].get("type") == "visual":  # already preprocessed: no source to redo
                return None
            return self.preprocess({**parts[i], "compression": ratio})

        fit_to_budget(items, budget, self.patch_size, fixed=fixed, remake=remake)
        return items

    def decode(self, token_ids, skip_special_tokens: bool = True) -> list[str]:
        """Generated ids ``[B, N]`` -> texts."""
        return self.tokenizer.batch_decode(token_ids, skip_special_tokens=skip_special_tokens)
