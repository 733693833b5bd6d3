"""A small byte-level BPE tokenizer with ChatML special tokens for the embedded tiny Oryx model.

Trained with the ``tokenizers`` library on the curriculum's questions and answers plus a little
English filler text generated here (so common words exist as tokens), then wrapped as a
``transformers.PreTrainedTokenizerFast`` with a ChatML ``chat_template``:

- special tokens, always ids 0-5 in this order: ``<|endoftext|>`` (eos and pad),
  ``<|im_start|>``, ``<|im_end|>``, ``<image>``, ``<video>``, ``<|visual_pad|>``. They are never
  split and never merged with neighbouring text.
- digits are pre-tokenized one by one (``"48213"`` -> 5 tokens), so a tiny model reads and writes
  codes digit by digit instead of having to memorise arbitrary digit-chunk merges.
- chat format (Qwen2 style): ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, a default
  system message "You are a helpful assistant." when the conversation has none, and
  ``<|im_start|>assistant\\n`` as the generation prompt. Generation should stop at ``<|im_end|>``
  (or ``<|endoftext|>``, the tokenizer's ``eos_token``).

Training is deterministic: the same texts and ``vocab_size`` give the same vocabulary and merges.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
VISUAL_PAD_TOKEN = "<|visual_pad|>"
SPECIAL_TOKENS: tuple[str, ...] = (
    ENDOFTEXT,
    IM_START,
    IM_END,
    IMAGE_TOKEN,
    VIDEO_TOKEN,
    VISUAL_PAD_TOKEN,
)
SYSTEM_PROMPT = "You are a helpful assistant."

# No whitespace-control markers: every newline in the output comes from an explicit "\n".
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'video' %}<video>\n{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chatml(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """Pure-Python rendering of :data:`CHAT_TEMPLATE` for string contents (reference/tests)."""
    out = ""
    if not messages or messages[0]["role"] != "system":
        out += f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}\n"
    for m in messages:
        out += f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n"
    if add_generation_prompt:
        out += f"{IM_START}assistant\n"
    return out


# ----------------------------------------------------------------------------- filler text

_SUBJECTS = (
    "the cat",
    "a small dog",
    "the teacher",
    "my friend",
    "the old man",
    "a child",
    "the bird",
    "the team",
)
_VERBS = ("sees", "finds", "likes", "draws", "counts", "reads", "moves", "paints", "opens", "shows")
_OBJECTS = (
    "the red ball",
    "a blue box",
    "the green door",
    "a long letter",
    "the map",
    "three apples",
    "a yellow flower",
    "the picture",
)
_PLACES = (
    "in the park",
    "at home",
    "on the table",
    "near the river",
    "at school",
    "in the morning",
    "after lunch",
)
_FIXED = (
    "Hello! How can I help you today?",
    "Sure, here is the answer.",
    "I do not know.",
    "The image shows a page of text.",
    "The video shows a moving object.",
    "There are two objects in the picture.",
    "Please answer the question with one word.",
    "Thank you very much.",
    "What is shown in this picture?",
    "Describe the video in one sentence.",
)


def filler_text(n_sentences: int = 400, seed: int = 0) -> list[str]:
    """Simple English sentences from a tiny grammar, deterministic in ``seed``."""
    rng = random.Random(seed)
    # ChatML role names and the system prompt, repeated so BPE learns them as whole tokens.
    out = [*_FIXED, *(["system", "user", "assistant", SYSTEM_PROMPT] * 4)]
    for _ in range(n_sentences):
        s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_PLACES)}."
        out.append(s[0].upper() + s[1:])
    return out


# The tasks whose texts train the tokenizer, fixed so that adding a synthetic task later does not
# change the vocabulary of the committed tiny model (its recipe must reproduce its tokenizer).
# Words of newer tasks are still encoded: the 256 byte symbols are always in the vocabulary.
TOKENIZER_TASKS: tuple[str, ...] = (
    "documents/line_code",
    "documents/key_lookup",
    "documents/bar_chart",
    "documents/table",
    "objects/color",
    "objects/count",
    "objects/position",
    "objects/exists",
    "short_videos/direction",
    "short_videos/appear_order",
    "short_videos/count_appear",
    "short_videos/what_when",
    "long_videos/digit",
    "long_videos/shape",
    "long_videos/color",
    "multiview/count",
    "multiview/left_right",
    "multiview/closer",
    "documents/line_session",
    "documents/key_session",
    "objects/qa_session",
    "multiview/scene_session",
)


def curriculum_texts(per_task: int = 100, seed: int = 0) -> list[str]:
    """Questions and answers of ``per_task`` samples of every task in :data:`TOKENIZER_TASKS`."""
    from oryx_mllm.data.synthetic import iter_task, sample_texts

    texts: list[str] = []
    for task in TOKENIZER_TASKS:
        # Long-video samples are lazy; the others render small images (~1-5 ms each).
        texts += sample_texts(iter_task(task, seed=seed, n=per_task))
    return texts


# ----------------------------------------------------------------------------- building


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    kwargs = dict(
        tokenizer_object=tok,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    extra = [IM_START, IM_END, IMAGE_TOKEN, VIDEO_TOKEN, VISUAL_PAD_TOKEN]
    if int(transformers.__version__.split(".")[0]) >= 5:
        kwargs["extra_special_tokens"] = extra
    else:
        kwargs["additional_special_tokens"] = extra
    hf = PreTrainedTokenizerFast(**kwargs)
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_tokenizer(
    texts: Iterable[str] | None = None,
    vocab_size: int = 2048,
    min_frequency: int = 2,
    filler_sentences: int = 400,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` (default: :func:`curriculum_texts`) plus
    :func:`filler_text`, and wrap it with the ChatML special tokens and chat template.

    ``vocab_size`` is an upper bound: training stops earlier when no pair occurs
    ``min_frequency`` times. The 256 byte symbols are always in the vocabulary, so any string
    round-trips.
    """
    texts = curriculum_texts() if texts is None else list(texts)
    corpus = [*texts, *filler_text(filler_sentences)]
    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 256}")

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    return _wrap(tok)


def load_tokenizer(path: str) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with ``save_pretrained``."""
    return PreTrainedTokenizerFast.from_pretrained(path)


__all__ = [
    "CHAT_TEMPLATE",
    "ENDOFTEXT",
    "IMAGE_TOKEN",
    "IM_END",
    "IM_START",
    "SPECIAL_TOKENS",
    "SYSTEM_PROMPT",
    "VIDEO_TOKEN",
    "VISUAL_PAD_TOKEN",
    "build_tokenizer",
    "chatml",
    "TOKENIZER_TASKS",
    "curriculum_texts",
    "filler_text",
    "load_tokenizer",
]
