"""Tiny random Oryx models and a byte-level ChatML tokenizer for tests (nothing downloaded)."""

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

from oryx_mllm.config import OryxConfig
from oryx_mllm.model import OryxForConditionalGeneration
from oryx_mllm.processing.chat import collate, encode_conversation, ensure_visual_token
from oryx_mllm.processing.types import VisualInput
from oryx_mllm.vision import OryxViTConfig


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokenizer: 256 byte tokens + ChatML specials (ids 256..258)."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE({c: i for i, c in enumerate(alphabet)}, []))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )


def llm_config(kind: str):
    common = dict(
        vocab_size=259,  # the visual placeholder (id 259) lies beyond the table on purpose
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        initializer_range=0.2,  # peaked logits: greedy decoding is robust to float noise
        pad_token_id=257,
        eos_token_id=256,
        bos_token_id=None,
    )
    if kind == "qwen2":
        return Qwen2Config(**common, tie_word_embeddings=True)
    return LlamaConfig(**common, tie_word_embeddings=False)


def tiny_model(kind: str, tokenizer=None) -> OryxForConditionalGeneration:
    tokenizer = tokenizer or byte_tokenizer()
    config = OryxConfig.from_llm_config(
        llm_config(kind),
        vision_config=OryxViTConfig.tiny(attention_backend="math"),
        compressor_mid_size=16,
        visual_token_id=ensure_visual_token(tokenizer),
    )
    return OryxForConditionalGeneration(config).eval()


def image(size=(64, 96)) -> VisualInput:
    h, w = size
    return VisualInput("image", [torch.randn(3, 32, 32), torch.randn(3, h, w)], compression=1)


def video(frames=3, size=64, ratio=2, modality="video") -> VisualInput:
    return VisualInput(modality, [torch.randn(3, size, size) for _ in range(frames)], ratio)


def batch(tokenizer, convs, items_per_conv, model, gen=False):
    samples = [
        encode_conversation(
            c, tokenizer, items, model.config.visual_token_id, add_generation_prompt=gen
        )
        for c, items in zip(convs, items_per_conv)
    ]
    out = collate(samples, tokenizer.pad_token_id)
    out["visual_inputs"] = [it for items in items_per_conv for it in items]
    return out
