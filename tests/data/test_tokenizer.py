"""Tokenizer: ChatML special tokens stay single ids, the chat template matches, save/load."""

from __future__ import annotations

import pytest

from oryx_mllm.data.tokenizer import (
    CHAT_TEMPLATE,
    IMAGE_TOKEN,
    SPECIAL_TOKENS,
    VIDEO_TOKEN,
    VISUAL_PAD_TOKEN,
    build_tokenizer,
    chatml,
    curriculum_texts,
    load_tokenizer,
)

CONVERSATION = [
    {"role": "user", "content": "<image>\nWhat is the code on line 3?"},
    {"role": "assistant", "content": "48213"},
]
EXPECTED = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<image>\nWhat is the code on line 3?<|im_end|>\n"
    "<|im_start|>assistant\n48213<|im_end|>\n"
)


@pytest.fixture(scope="module")
def texts():
    return curriculum_texts(per_task=10)


@pytest.fixture(scope="module")
def tok(texts):
    return build_tokenizer(texts, vocab_size=1024)


def test_special_tokens_have_fixed_single_ids(tok):
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(
        range(len(SPECIAL_TOKENS))
    )
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    assert set(SPECIAL_TOKENS) <= set(tok.all_special_tokens)
    for t in SPECIAL_TOKENS:
        assert (
            tok(f"a{t}b", add_special_tokens=False)["input_ids"].count(tok.convert_tokens_to_ids(t))
            == 1
        )
    pads = tok(IMAGE_TOKEN + VISUAL_PAD_TOKEN * 5 + VIDEO_TOKEN)["input_ids"]
    assert pads == [3, 5, 5, 5, 5, 5, 4]


def test_chat_template_output(tok):
    assert tok.apply_chat_template(CONVERSATION, tokenize=False) == EXPECTED == chatml(CONVERSATION)
    prompt = tok.apply_chat_template(CONVERSATION[:1], tokenize=False, add_generation_prompt=True)
    assert (
        prompt == EXPECTED.split("48213")[0] == chatml(CONVERSATION[:1], add_generation_prompt=True)
    )
    with_system = [{"role": "system", "content": "Be brief."}, *CONVERSATION]
    assert tok.apply_chat_template(with_system, tokenize=False).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
    )
    parts = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "What is the code on line 3?"}],
        }
    ]
    assert tok.apply_chat_template(parts, tokenize=False) == chatml(CONVERSATION[:1])


def test_chatml_round_trip(tok):
    ids = tok(EXPECTED, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == EXPECTED
    toks = tok.convert_ids_to_tokens(ids)
    assert (
        toks.count("<|im_start|>") == 3
        and toks.count("<|im_end|>") == 3
        and toks.count(IMAGE_TOKEN) == 1
    )
    assert [t for t in toks if t.isdigit()][-5:] == list("48213")  # digits are single tokens
    assert tok.decode(ids, skip_special_tokens=True).count("<|im_") == 0


def test_unicode_and_unseen_text_round_trip(tok):
    s = "Zürich — 東京 🙂 tabs\tand  spaces"
    assert tok.decode(tok(s, add_special_tokens=False)["input_ids"]) == s


def test_deterministic_vocab(texts, tok):
    again = build_tokenizer(texts, vocab_size=1024)
    assert again.get_vocab() == tok.get_vocab()
    assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    assert len(tok) <= 1024


def test_save_and_load(tmp_path, tok):
    tok.save_pretrained(tmp_path)
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.get_vocab() == tok.get_vocab()
    assert loaded.chat_template == CHAT_TEMPLATE
    assert loaded(EXPECTED)["input_ids"] == tok(EXPECTED)["input_ids"]
    assert loaded.apply_chat_template(CONVERSATION, tokenize=False) == EXPECTED
    assert loaded.eos_token == loaded.pad_token == "<|endoftext|>"
    assert set(SPECIAL_TOKENS) <= set(loaded.all_special_tokens)
