"""OryxProcessor end to end with the media preprocessing and a tiny model."""

import numpy as np
import pytest
import torch
from transformers import TextIteratorStreamer

from oryx_mllm.errors import ContextLengthError, UnsupportedModalityError
from oryx_mllm.processing.processor import OryxProcessor
from oryx_mllm.processing.types import VisualInput
from oryx_tiny import byte_tokenizer, tiny_model


def rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def setup():
    tok = byte_tokenizer()
    proc = OryxProcessor(tok)
    model = tiny_model("qwen2", tok)
    assert proc.visual_token_id == model.config.visual_token_id
    return proc, model


def conversations():
    return [
        [{"role": "user", "content": [{"type": "image", "image": rgb(70, 100)}, "what?"]}],
        [{"role": "user", "content": "just text"}],
        [
            {
                "role": "user",
                "content": [
                    {"type": "video", "video": [rgb(64, 64, i) for i in range(3)]},
                    {"type": "multiview", "views": [rgb(64, 64, 5), rgb(64, 64, 6)]},
                    {"type": "text", "text": "describe"},
                ],
            }
        ],
    ]


def test_mixed_batch_generate(setup):
    proc, model = setup
    batch = proc(conversations())
    assert [it.modality for it in batch["visual_inputs"]] == ["image", "video", "multiview"]
    assert [it.compression for it in batch["visual_inputs"]] == [1, 2, 2]
    n_visual = sum(it.num_tokens() for it in batch["visual_inputs"])
    assert int((batch["input_ids"] == proc.visual_token_id).sum()) == n_visual
    assert batch["attention_mask"][:, -1].all()  # left padded
    kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=proc.tokenizer.pad_token_id)
    out = model.generate(**batch, **kw)
    assert out.shape[0] == 3
    texts = proc.decode(out)
    assert len(texts) == 3


def test_training_batch_has_labels(setup):
    proc, model = setup
    convs = [c + [{"role": "assistant", "content": "ok"}] for c in conversations()]
    batch = proc(convs, add_generation_prompt=False)
    assert int((batch["labels"] != -100).sum()) == 3 * 3  # "o", "k", "<|im_end|>" each
    loss = model(**batch).loss
    assert torch.isfinite(loss)


def test_compression_on_demand(setup):
    proc, _ = setup
    frames = [rgb(128, 128, i) for i in range(2)]
    conv = [{"role": "user", "content": [{"type": "video", "video": frames, "compression": 4}]}]
    assert proc(conv)["visual_inputs"][0].compression == 4
    item = VisualInput("video", [torch.zeros(3, 128, 128)] * 2, compression=2)
    conv = [{"role": "user", "content": "<video> what?"}]
    b = proc(conv, [item], visual_token_budget=2 + 2 * (4 * 5 + 1))
    assert item.compression == 2
    b = proc(conv, [item], visual_token_budget=10_000)
    assert item.compression == 1
    assert int((b["input_ids"] == proc.visual_token_id).sum()) == item.num_tokens()
    with pytest.raises(ContextLengthError):
        proc(conv, [item], visual_token_budget=3)
    with pytest.raises(UnsupportedModalityError):
        proc([{"role": "user", "content": [{"type": "audio"}]}])


def test_stop_strings_and_streamer(setup):
    proc, model = setup
    batch = proc(conversations()[1])
    streamer = TextIteratorStreamer(proc.tokenizer, skip_special_tokens=True)
    out = model.generate(
        **batch,
        max_new_tokens=5,
        do_sample=True,
        top_k=5,
        streamer=streamer,
        pad_token_id=proc.tokenizer.pad_token_id,
    )
    streamed = "".join(streamer)
    assert streamed == proc.decode(out)[0]
    tok = proc.tokenizer
    # only let ASCII letters/digits be generated so the text maps 1:1 to tokens
    suppress = [
        i for i in range(259) if not (tok.decode([i]).isascii() and tok.decode([i]).isalnum())
    ]
    kw = dict(max_new_tokens=8, do_sample=False, suppress_tokens=suppress)
    text = proc.decode(model.generate(**batch, **kw))[0]
    assert len(text) == 8
    stop = text[2:4]
    out = model.generate(**batch, **kw, stop_strings=[stop], tokenizer=tok)
    short = proc.decode(out)[0]
    assert short.endswith(stop) and text.startswith(short) and len(short) < 8
