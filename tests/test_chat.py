import pytest
import torch

from oryx_mllm.errors import InvalidInputError
from oryx_mllm.processing.chat import (
    IGNORE_INDEX,
    collate,
    encode_conversation,
    ensure_visual_token,
)
from oryx_tiny import byte_tokenizer, image, video

CONV = [
    {"role": "user", "content": "<image>\nWhat is it?"},
    {"role": "assistant", "content": "A cat."},
]


def test_chatml_prompt_and_placeholder_expansion():
    tok = byte_tokenizer()
    vid = ensure_visual_token(tok)
    item = image()
    enc = encode_conversation(CONV[:1], tok, [item], vid)
    n = item.num_tokens()
    assert enc.input_ids.count(vid) == n
    start = enc.input_ids.index(vid)
    assert enc.input_ids[start : start + n] == [vid] * n
    text = tok.decode([t for t in enc.input_ids if t != vid])
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n\nWhat is it?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert set(enc.labels) == {IGNORE_INDEX}


def test_labels_only_on_assistant_reply():
    tok = byte_tokenizer()
    enc = encode_conversation(CONV, tok, [image()], add_generation_prompt=False)
    learned = [t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX]
    assert tok.decode(learned) == "A cat.<|im_end|>"
    assert all(lab == t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX)


def test_marker_checks():
    tok = byte_tokenizer()
    with pytest.raises(InvalidInputError, match="markers"):
        encode_conversation(CONV, tok, [image(), image()])
    with pytest.raises(InvalidInputError, match="marker <image> matched a video"):
        encode_conversation(CONV, tok, [video()])
    with pytest.raises(InvalidInputError, match="role"):
        encode_conversation([{"role": "robot", "content": "x"}], tok)
    # no marker at all: one per input is put before the first user text
    enc = encode_conversation([{"role": "user", "content": "hi"}], tok, [video(2), image()])
    assert (
        enc.input_ids.count(ensure_visual_token(tok))
        == video(2).num_tokens() + image().num_tokens()
    )


def test_left_padding_collate():
    tok = byte_tokenizer()
    a = encode_conversation([{"role": "user", "content": "hi"}], tok)
    b = encode_conversation(CONV, tok, [image()], add_generation_prompt=False)
    out = collate([a, b], tok.pad_token_id)
    L = len(b.input_ids)
    assert out["input_ids"].shape == (2, L)
    pad = L - len(a.input_ids)
    assert out["attention_mask"][0].tolist() == [0] * pad + [1] * len(a.input_ids)
    assert out["input_ids"][0, :pad].eq(tok.pad_token_id).all()
    assert out["labels"][0, :pad].eq(IGNORE_INDEX).all()
    assert torch.equal(out["input_ids"][1], torch.tensor(b.input_ids))
    right = collate([a, b], tok.pad_token_id, padding_side="right")
    assert right["attention_mask"][0, : len(a.input_ids)].all()


def test_a_lone_surrogate_is_named_not_passed_to_the_tokenizer():
    tok = byte_tokenizer()
    with pytest.raises(
        InvalidInputError, match=r"message 0 content is not valid Unicode.*position 3"
    ):
        encode_conversation([{"role": "user", "content": "abc\udc80"}], tok)
