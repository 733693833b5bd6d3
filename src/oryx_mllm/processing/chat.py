"""ChatML prompts with visual placeholders, label masking and left-padding collation.

A conversation is a list of ``{"role": "system"|"user"|"assistant", "content": str}``. The
content may hold ``<image>`` / ``<video>`` markers (``<video>`` also stands for a multi-view
scene); each marker, in order, takes the next :class:`VisualInput` and is replaced by exactly
``item.num_tokens()`` copies of the visual placeholder token. Tokenisation works piecewise so a
marker can never merge with neighbouring text.

Labels: only assistant replies (and their ``<|im_end|>``) are learned; system, user, visual
placeholders and the role headers are ``-100``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from oryx_mllm.checks import check_text
from oryx_mllm.config import VISUAL_TOKEN
from oryx_mllm.errors import InvalidInputError
from oryx_mllm.processing.types import VisualInput

IGNORE_INDEX = -100
DEFAULT_SYSTEM = "You are a helpful assistant."
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
MARKERS = {"<image>": ("image",), "<video>": ("video", "multiview")}
MARKER_RE = re.compile("|".join(re.escape(m) for m in MARKERS))
ROLES = ("system", "user", "assistant")


def marker_for(item: VisualInput) -> str:
    return "<image>" if item.modality == "image" else "<video>"


def ensure_visual_token(tokenizer, token: str = VISUAL_TOKEN) -> int:
    """Add ``token`` to ``tokenizer`` as a special token if missing; return its id."""
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        tokenizer.add_special_tokens({"additional_special_tokens": [token]})
    return tokenizer.convert_tokens_to_ids(token)


def count_markers(text: str) -> int:
    return len(MARKER_RE.findall(text))


_LEADING_MARKERS = re.compile(f"(?:(?:{MARKER_RE.pattern})\n?)+")


def markers_after_text(text: str, repeat: bool = False) -> str:
    """The text-first order of a user turn: ``"<image>\nQ"`` -> ``"Q\n<image>\n"`` (its
    leading markers moved after its text, one per line), or with ``repeat`` the text asked
    again after them, ``"Q\n<image>\nQ"``; other text is returned unchanged."""
    lead = _LEADING_MARKERS.match(text)
    if lead is None or lead.end() == len(text):
        return text
    marks = MARKER_RE.findall(lead.group(0))
    return _text_first(text[lead.end() :], "".join(m + "\n" for m in marks), repeat)


def _text_first(question: str, markers: str, repeat: bool) -> str:
    """``question``, a newline, the ``markers`` (each ending in a newline), then ``question``
    again when ``repeat``: the layout of a text-first user turn."""
    return question + "\n" + markers + (question if repeat else "")


def add_missing_markers(
    messages: list[dict],
    items: Sequence[VisualInput],
    after_text: bool = False,
    repeat: bool = False,
) -> list[dict]:
    """If no message has a marker, put one per visual input (newline-separated) before the first
    user message's text, as the released models were trained (``after_text``: after it, on a new
    line, the order of a model trained with ``data.text_first``; ``repeat``, with
    ``after_text``: and the text again after them, ``data.repeat_question``)."""
    if not items or any(count_markers(m.get("content", "")) for m in messages):
        return messages
    messages = [dict(m) for m in messages]
    for m in messages:
        if m["role"] == "user":
            marks = "".join(marker_for(it) + "\n" for it in items)
            text = m["content"]
            m["content"] = _text_first(text, marks, repeat) if after_text else marks + text
            return messages
    raise InvalidInputError("visual inputs were given but the conversation has no user message")


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


def _check_messages(messages: list[dict]) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError("a conversation must be a non-empty list of messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise InvalidInputError(f"message {i} needs a 'role' in {ROLES}, got {m!r:.80}")
        content = m.get("content", "")
        if not isinstance(content, str):
            raise InvalidInputError(f"message {i} content must be a string")
        check_text(f"message {i} content", content, InvalidInputError)


def encode_conversation(
    messages: list[dict],
    tokenizer,
    visual_inputs: Sequence[VisualInput] = (),
    visual_token_id: int | None = None,
    system: str | None = DEFAULT_SYSTEM,
    add_generation_prompt: bool = True,
    patch_size: int = 16,
    markers_after: bool = False,
    repeat_question: bool = False,
) -> Encoded:
    """Tokenise a ChatML conversation, expanding markers and masking labels.

    A default system message is prepended unless the conversation has one (``system=None``
    disables it). ``add_generation_prompt`` appends ``<|im_start|>assistant\\n`` (inference).
    A conversation without markers gets them before the first user text, or after it with
    ``markers_after`` (and the text again after them with ``repeat_question``;
    :func:`add_missing_markers`).
    """
    _check_messages(messages)
    items = list(visual_inputs)
    if visual_token_id is None:
        visual_token_id = ensure_visual_token(tokenizer)
    messages = add_missing_markers(
        messages, items, after_text=markers_after, repeat=repeat_question
    )
    if system is not None and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    n_markers = sum(count_markers(m.get("content", "")) for m in messages)
    if n_markers != len(items):
        raise InvalidInputError(
            f"the conversation has {n_markers} <image>/<video> markers but {len(items)} visual "
            "inputs were given"
        )

    def tok(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    ids: list[int] = []
    labels: list[int] = []
    queue = iter(items)

    def add(token_ids: list[int], learn: bool) -> None:
        ids.extend(token_ids)
        labels.extend(token_ids if learn else [IGNORE_INDEX] * len(token_ids))

    for m in messages:
        learn = m["role"] == "assistant"
        add(tok(f"{IM_START}{m['role']}\n"), False)
        pos, content = 0, m.get("content", "")
        for match in MARKER_RE.finditer(content):
            add(tok(content[pos : match.start()]), learn)
            item = next(queue)
            if item.modality not in MARKERS[match.group()]:
                raise InvalidInputError(
                    f"marker {match.group()} matched a {item.modality} input; put the markers in "
                    "the order of the visual inputs (<image> for images, <video> for videos and "
                    "multi-view scenes)"
                )
            add([visual_token_id] * item.num_tokens(patch_size), False)
            pos = match.end()
        add(tok(content[pos:]), learn)
        add(tok(IM_END), learn)
        add(tok("\n"), False)
    if add_generation_prompt:
        add(tok(f"{IM_START}assistant\n"), False)
    return Encoded(ids, labels)


def collate(
    samples: Sequence[Encoded], pad_token_id: int, padding_side: str = "left"
) -> dict[str, torch.Tensor]:
    """Pad a batch: ``input_ids``, ``attention_mask``, ``labels`` (``[B, L]`` long tensors).

    Left padding (the default) is what batched generation needs; training may use either.
    """
    if padding_side not in ("left", "right"):
        raise InvalidInputError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if not samples:
        raise InvalidInputError("cannot collate an empty batch")
    L = max(len(s.input_ids) for s in samples)
    B = len(samples)
    input_ids = torch.full((B, L), pad_token_id, dtype=torch.long)
    labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    for i, s in enumerate(samples):
        n = len(s.input_ids)
        sl = slice(L - n, L) if padding_side == "left" else slice(0, n)
        input_ids[i, sl] = torch.tensor(s.input_ids, dtype=torch.long)
        labels[i, sl] = torch.tensor(s.labels, dtype=torch.long)
        mask[i, sl] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
