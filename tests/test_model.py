"""The whole model over tiny random Qwen2 and Llama backbones (nothing downloaded)."""

import pytest
import torch

from oryx_mllm.errors import InvalidInputError
from oryx_mllm.processing.types import VisualInput
from oryx_tiny import batch, byte_tokenizer, image, tiny_model, video

TRAIN = [
    [
        {"role": "user", "content": "<image>\nwhat?"},
        {"role": "assistant", "content": "a cat"},
    ],
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}],
    [
        {"role": "user", "content": "<video> then <video>"},
        {"role": "assistant", "content": "ok"},
    ],
]


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_forward_loss_and_gradients(kind):
    tok = byte_tokenizer()
    model = tiny_model(kind, tok).train()
    items = [[image()], [], [video(3, 64, 2), video(2, 64, 4, "multiview")]]
    b = batch(tok, TRAIN, items, model)
    out = model(**b)
    assert torch.isfinite(out.loss)
    assert out.logits.shape[:2] == b["input_ids"].shape
    out.loss.backward()
    for name in (
        "vision_resampler.vlm_query_projector.weight",
        "vision_resampler.vlm_key_projector.weight",
        "mm_projector.proj.0.weight",
        "mm_projector.image_sep",
        "vision_tower.blocks.0.attn.qkv.weight",
        "language_model.model.layers.0.self_attn.q_proj.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_visual_token_counts_follow_formula():
    model = tiny_model("qwen2")
    cases = [
        (image((64, 96)), 3 + 2 * 3 + 4 * 7),
        (
            VisualInput("image", [torch.randn(3, 32, 32), torch.randn(3, 64, 64)], 2),
            3 + 1 * 2 + 2 * 3,
        ),
        (video(3, 64, 1), 2 + 3 * (4 * 5 + 1)),
        (video(3, 64, 2), 2 + 3 * (2 * 3 + 1)),
        (video(3, 64, 4), 2 + 3 * (1 * 2 + 1)),
        (video(2, 64, 2, "multiview"), 2 + 2 * (2 * 3 + 1)),
    ]
    with torch.no_grad():
        embeds = model.encode_visual([c[0] for c in cases])
    for (item, expected), e in zip(cases, embeds):
        assert item.num_tokens() == expected == e.shape[0]
        assert e.shape[1] == 32


def test_placeholder_count_mismatch_raises():
    tok = byte_tokenizer()
    model = tiny_model("qwen2", tok)
    b = batch(tok, TRAIN[:1], [[image()]], model)
    with pytest.raises(InvalidInputError, match="placeholder"):
        model(b["input_ids"], b["attention_mask"], visual_inputs=[image((32, 32))])
    with pytest.raises(InvalidInputError, match="placeholder"):
        model(b["input_ids"], b["attention_mask"], visual_inputs=[])


def test_single_encoder_call_for_whole_batch(monkeypatch):
    model = tiny_model("qwen2")
    calls = []
    original = model.vision_tower.encode
    monkeypatch.setattr(
        model.vision_tower, "encode", lambda imgs: calls.append(len(imgs)) or original(imgs)
    )
    with torch.no_grad():
        model.encode_visual([image(), video(3), video(2, modality="multiview")])
    assert calls == [2 + 3 + 2]


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_batched_generate_equals_single(kind):
    tok = byte_tokenizer()
    model = tiny_model(kind, tok)
    convs = [[m for m in c if m["role"] == "user"] for c in TRAIN]
    items = [[image()], [], [video(3, 64, 2), video(2, 64, 4, "multiview")]]
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=None)
    b = batch(tok, convs, items, model, gen=True)
    b.pop("labels")
    together = model.generate(**b, **kw)
    for i in range(3):
        one = batch(tok, convs[i : i + 1], items[i : i + 1], model, gen=True)
        one.pop("labels")
        alone = model.generate(**one, **kw)
        assert together[i].tolist() == alone[0].tolist()


def test_context_error_says_which_part_to_cut():
    from types import SimpleNamespace

    from oryx_mllm.errors import ContextLengthError
    from oryx_mllm.model import OryxForConditionalGeneration

    fake = SimpleNamespace(config=SimpleNamespace(text_config={"max_position_embeddings": 100}))
    check = OryxForConditionalGeneration.check_context
    check(fake, 100, 90)  # fits
    with pytest.raises(ContextLengthError) as info:
        check(fake, 150, 140)
    assert str(info.value) == (
        "prompt of 150 tokens (140 visual, 10 text) exceeds the model's context of 100; "
        "use fewer frames or more compression"
    )
    with pytest.raises(ContextLengthError, match=r"\(43 visual, 20022 text\).*shorten the text"):
        check(fake, 20065, 43)


def test_embedding_rms_norm_puts_every_visual_token_at_the_word_scale():
    model = tiny_model("qwen2")
    items = [image(), video(2, 64, 2)]
    plain = model.encode_visual(items)
    model.config.visual_token_norm = "embedding_rms"
    scaled = model.encode_visual(items)
    table_rms = model.language_model.get_input_embeddings().weight.pow(2).mean().sqrt()
    for p, s in zip(plain, scaled, strict=True):
        rms = s.pow(2).mean(-1).sqrt()  # one per token
        torch.testing.assert_close(rms, table_rms.expand_as(rms), rtol=1e-4, atol=0)
        # a rescaling only: every token keeps its direction
        cos = torch.nn.functional.cosine_similarity(p, s, dim=-1)
        torch.testing.assert_close(cos, torch.ones_like(cos))


def test_embedding_rms_norm_passes_no_gradient_to_the_embedding_table():
    model = tiny_model("qwen2").train()
    model.config.visual_token_norm = "embedding_rms"
    model.encode_visual([image()])[0].sum().backward()
    assert model.language_model.get_input_embeddings().weight.grad is None
    assert model.mm_projector.proj[0].weight.grad.abs().sum() > 0
