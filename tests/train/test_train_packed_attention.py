"""Packed training batches on tiny random models (CPU): every packed sample sees only itself.

Exact comparisons against the same samples run one by one (logits) or as a padded batch (loss),
on ``sdpa`` and ``eager``; the flash-attention-2 path is exercised by a CPU stand-in kernel that
only honours the varlen arguments; unsupported backbones/backends raise.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from oryx_mllm.errors import PackingUnsupportedError
from oryx_mllm.processing.chat import collate, encode_conversation
from oryx_mllm.train.packing import (
    block_causal_mask,
    check_packing_support,
    lm_loss_sum,
    packed_attention_kwargs,
)
from oryx_mllm.train.trainer import packed_row_loss, packed_targets, set_attn_implementation
from oryx_mllm.train.transform import MicroBatchCollator, TrainExample

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for oryx_tiny
from oryx_tiny import byte_tokenizer, image, llm_config, tiny_model, video  # noqa: E402

TOK = byte_tokenizer()


def examples(model, with_visual: bool) -> list[TrainExample]:
    """Three samples of different lengths: (image +) text, (video +) text, text only."""
    torch.manual_seed(0)
    visuals = [[image((32, 64))], [video(frames=2, size=32)], []] if with_visual else [[]] * 3
    convs = [
        ("<image>\nWhat is it?" if with_visual else "What is it?", "A red square."),
        ("<video>\nWhat moves?" if with_visual else "What moves?", "Nothing, it is still."),
        ("Say hi.", "hi"),
    ]
    out = []
    for k, ((q, a), vis) in enumerate(zip(convs, visuals)):
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        enc = encode_conversation(msgs, TOK, vis, model.config.visual_token_id)
        out.append(TrainExample(f"s{k}", enc, vis))
    return out


def model_with(attn: str, kind: str = "qwen2"):
    torch.manual_seed(0)
    model = tiny_model(kind, TOK)
    set_attn_implementation(model.language_model, attn)
    return model


def row_kwargs(row: dict, attn: str) -> dict:
    return packed_attention_kwargs(row["position_ids"], row["cu_seqlens"], row["max_seqlen"], attn)


@pytest.mark.parametrize("with_visual", [False, True], ids=["text", "image+video"])
@pytest.mark.parametrize(
    "attn,kind", [("sdpa", "qwen2"), ("eager", "qwen2"), ("sdpa", "llama")], ids=str
)
@torch.no_grad()
def test_packed_logits_equal_unpacked(attn, kind, with_visual):
    model = model_with(attn, kind)
    exs = examples(model, with_visual)
    (mb,) = MicroBatchCollator(TOK.pad_token_id, 1, packing=True, max_length=4096)(exs)
    (row,) = mb["rows"]  # all three fit one row, in input order
    assert row["ids"] == ["s0", "s1", "s2"] and "attention_mask" not in row
    assert [v.modality for v in row["visual_inputs"]] == (["image", "video"] if with_visual else [])
    packed = model(
        input_ids=row["input_ids"], visual_inputs=row["visual_inputs"], **row_kwargs(row, attn)
    ).logits  # [1, L, V]
    cu = row["cu_seqlens"].tolist()
    for k, ex in enumerate(exs):
        alone = model(
            input_ids=torch.tensor([ex.encoded.input_ids]), visual_inputs=ex.visual
        ).logits  # [1, n_k, V]
        torch.testing.assert_close(packed[:, cu[k] : cu[k + 1]], alone, atol=1e-5, rtol=0)


@torch.no_grad()
def test_position_ids_alone_leak_across_samples_on_sdpa():
    """Why the sdpa/eager path passes an explicit mask: with position ids and no mask, the
    installed transformers' packed-sequence detection is skipped when the model builds a cache
    (its default), and the second sample attends to the first."""
    model = model_with("sdpa")
    exs = examples(model, with_visual=False)
    (mb,) = MicroBatchCollator(TOK.pad_token_id, 1, packing=True, max_length=4096)(exs)
    row = mb["rows"][0]
    leaky = model(input_ids=row["input_ids"], position_ids=row["position_ids"]).logits
    a, b = row["cu_seqlens"][1].item(), row["cu_seqlens"][2].item()
    alone = model(input_ids=torch.tensor([exs[1].encoded.input_ids])).logits
    assert (leaky[:, a:b] - alone).abs().max() > 1e-2


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@torch.no_grad()
def test_packed_loss_equals_token_weighted_unpacked_loss(attn):
    model = model_with(attn)
    exs = examples(model, with_visual=True)
    cap = exs[1].num_tokens + exs[2].num_tokens  # < s0 + s1, < s0 + s2: two rows
    (mb,) = MicroBatchCollator(TOK.pad_token_id, 1, packing=True, max_length=cap)(exs)
    # several rows (the weighting across rows matters), one with two samples (the mask matters)
    assert [r["ids"] for r in mb["rows"]] == [["s0"], ["s1", "s2"]]
    vid = model.config.visual_token_id
    total, count = 0.0, 0
    for row in mb["rows"]:
        s, n = packed_row_loss(model, row, attn, torch.device("cpu"), vid)
        total, count = total + s, count + n
    padded = collate([e.encoded for e in exs], TOK.pad_token_id, padding_side="right")
    ref = model(**padded, visual_inputs=[v for e in exs for v in e.visual]).loss
    torch.testing.assert_close(total / count, ref, atol=1e-5, rtol=0)
    # the count is the padded batch's number of targets (first label of each sample ignored)
    labels = padded["labels"].masked_fill(padded["input_ids"] == vid, -100)
    assert count == int((labels[:, 1:] != -100).sum())
    assert count == sum(int((packed_targets(r, vid)[:, 1:] != -100).sum()) for r in mb["rows"])


def test_block_causal_mask():
    m = block_causal_mask(torch.tensor([0, 2, 5], dtype=torch.int32))
    assert m.shape == (1, 1, 5, 5)
    allowed = (m[0, 0] == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 1, 1, 1],
    ]
    assert torch.isneginf(m[0, 0][m[0, 0] != 0]).all()


@torch.no_grad()
def test_flash_attention_2_arguments_reach_a_varlen_kernel():
    """The flash-attention-2 path (GPU only) gets cu_seq_lens / max_length and no mask. On CPU a
    stand-in kernel registered under another name runs attention per [cu[i], cu[i+1]) slice; it
    only knows the boundaries through those arguments, so equal logits prove they arrive."""
    from transformers import AttentionInterface

    seen = []

    def varlen_reference(module, q, k, v, attention_mask, scaling=None, dropout=0.0, **kw):
        # q [1, H, L, d], k/v [1, H_kv, L, d] -> [1, L, H, d]
        assert attention_mask is None
        cu = kw["cu_seq_lens_q"].tolist()
        seen.append((cu, kw["max_length_q"]))
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        out = [
            torch.nn.functional.scaled_dot_product_attention(
                q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True, scale=scaling
            )
            for a, b in zip(cu[:-1], cu[1:])
        ]
        return torch.cat(out, 2).transpose(1, 2), None

    AttentionInterface.register("oryx_test_varlen", varlen_reference)
    model = model_with("oryx_test_varlen")
    exs = examples(model, with_visual=True)
    (mb,) = MicroBatchCollator(TOK.pad_token_id, 1, packing=True, max_length=4096)(exs)
    row = mb["rows"][0]
    kwargs = row_kwargs(row, "flash_attention_2")
    assert kwargs["attention_mask"] is None and kwargs["cu_seq_lens_q"].dtype == torch.int32
    packed = model(input_ids=row["input_ids"], visual_inputs=row["visual_inputs"], **kwargs).logits
    assert seen[0] == (row["cu_seqlens"].tolist(), row["max_seqlen"])
    set_attn_implementation(model.language_model, "sdpa")
    cu = row["cu_seqlens"].tolist()
    for k, ex in enumerate(exs):
        alone = model(input_ids=torch.tensor([ex.encoded.input_ids]), visual_inputs=ex.visual)
        torch.testing.assert_close(packed[:, cu[k] : cu[k + 1]], alone.logits, atol=1e-5, rtol=0)


def test_unsupported_backbone_or_backend_raises():
    model = model_with("sdpa")
    assert check_packing_support(model.language_model) == "sdpa"
    set_attn_implementation(model.language_model, "flex_attention")
    with pytest.raises(PackingUnsupportedError, match="flex_attention"):
        check_packing_support(model.language_model)
    gpt2 = SimpleNamespace(config=SimpleNamespace(model_type="gpt2", _attn_implementation="sdpa"))
    with pytest.raises(PackingUnsupportedError, match="gpt2"):
        check_packing_support(gpt2)
    # sliding-window layers: the explicit sdpa/eager mask would drop the window
    cfg = llm_config("qwen2")
    cfg.use_sliding_window, cfg.sliding_window, cfg.max_window_layers = True, 8, 0
    cfg.layer_types = ["sliding_attention"] * cfg.num_hidden_layers
    cfg._attn_implementation = "sdpa"
    with pytest.raises(PackingUnsupportedError, match="sliding"):
        check_packing_support(SimpleNamespace(config=cfg))
    cfg._attn_implementation = "flash_attention_2"
    assert check_packing_support(SimpleNamespace(config=cfg)) == "flash_attention_2"
    with pytest.raises(PackingUnsupportedError):
        packed_attention_kwargs(torch.zeros(1, 3), torch.tensor([0, 3]), 3, "flex_attention")


def test_lm_loss_sum_matches_transformers_mean():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.randint(0, 11, (2, 6))
    labels[0, :2] = -100
    s, n = lm_loss_sum(logits, labels)
    ref = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    assert n == 9
    torch.testing.assert_close(s / n, ref)
