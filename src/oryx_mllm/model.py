"""The Oryx model: OryxViT -> Dynamic Compressor -> shared projector -> any causal LLM.

Visual inputs become a sequence of LLM embeddings that replace the placeholder tokens
(``config.visual_token``, expanded by the processor to exactly the right count) in the prompt.
All frames of all visual inputs of a batch go through the encoder in ONE packed call; each input
is then compressed (vectorised over its frames) and projected, and the results are scattered in
order into the placeholder positions (row-major over the batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers.modeling_outputs import CausalLMOutputWithPast

from oryx_mllm.compressor import DynamicCompressor
from oryx_mllm.config import OryxConfig
from oryx_mllm.errors import ContextLengthError, InvalidInputError
from oryx_mllm.processing.types import MODALITIES, VisualInput
from oryx_mllm.projector import OryxProjector
from oryx_mllm.vision import OryxViT


@dataclass
class OryxCausalLMOutput(CausalLMOutputWithPast):
    """The language model's output plus ``visual_loss`` (``forward(visual_labels=...)``)."""

    visual_loss: torch.Tensor | None = None


class OryxForConditionalGeneration(nn.Module):
    def __init__(
        self,
        config: OryxConfig,
        language_model: nn.Module | None = None,
        vision_tower: OryxViT | None = None,
    ):
        super().__init__()
        self.config = config
        if language_model is None:
            from transformers import AutoModelForCausalLM

            language_model = AutoModelForCausalLM.from_config(config.llm_config())
        self.vision_tower = (
            vision_tower if vision_tower is not None else OryxViT(config.vision_config)
        )
        self.vision_resampler = DynamicCompressor(config.mm_hidden_size, config.compressor_mid_size)
        self.mm_projector = OryxProjector(
            config.mm_hidden_size, config.hidden_size, act=config.projector_act
        )
        self.language_model = language_model

    # Convenience ----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.language_model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.language_model.get_input_embeddings().weight.dtype

    @property
    def generation_config(self):
        return self.language_model.generation_config

    # Visual path ----------------------------------------------------------------------------------
    def _check_item(self, i: int, item: VisualInput) -> None:
        if not isinstance(item, VisualInput):
            raise InvalidInputError(
                f"visual input {i} is a {type(item).__name__}, not a VisualInput"
            )
        if item.modality not in MODALITIES:
            raise InvalidInputError(f"visual input {i} has unknown modality {item.modality!r}")
        if item.modality == "image" and len(item.frames) != 2:
            raise InvalidInputError(
                f"image input {i} has {len(item.frames)} views; expected 2 (low-res, high-res)"
            )
        if len(item.frames) == 0:
            raise InvalidInputError(f"{item.modality} input {i} has no frames")
        if item.modality != "image" and len({tuple(f.shape) for f in item.frames}) != 1:
            raise InvalidInputError(
                f"{item.modality} input {i}: all frames must have the same size"
            )
        if not isinstance(item.compression, int) or item.compression < 1:
            raise InvalidInputError(
                f"visual input {i} has compression {item.compression!r}; expected an integer >= 1"
            )

    def encode_visual(self, items: Sequence[VisualInput]) -> list[torch.Tensor]:
        """Visual inputs -> one ``[N_i, D]`` embedding sequence each (``N_i = item.num_tokens()``)."""
        for i, item in enumerate(items):
            self._check_item(i, item)
        if not items:
            return []
        vt = self.vision_tower
        pixels = [f.to(device=vt.device, dtype=vt.dtype) for item in items for f in item.frames]
        feats, grids = vt.encode(pixels)  # one packed pass: [h*w, C] per frame/view
        dev, dt = (
            self.vision_resampler.vlm_query_projector.weight.device,
            self.mm_projector.proj[0].weight.dtype,
        )
        out, start = [], 0
        for item in items:
            n, r = len(item.frames), item.compression
            f, g = [x.to(dev, dt) for x in feats[start : start + n]], grids[start : start + n]
            start += n
            if item.modality == "image":
                lo, glo = self.vision_resampler(f[0][None], g[0], r)
                hi, ghi = self.vision_resampler(f[1][None], g[1], r)
                out.append(self.mm_projector.image(lo, glo, hi, ghi))
            else:
                x, gc = self.vision_resampler(torch.stack(f), g[0], r)  # [T, h'*w', C]
                out.append(self.mm_projector.video(x, gc))
        if self.config.visual_token_norm == "embedding_rms":
            out = [self._at_embedding_scale(x) for x in out]
        return out

    def _at_embedding_scale(self, x: torch.Tensor) -> torch.Tensor:
        """Each visual token ``[N, D]`` rescaled to the RMS of the input embedding table (the
        table's scale is a target, not a path for gradients)."""
        table = self.language_model.get_input_embeddings().weight.detach()
        target = table.float().pow(2).mean().sqrt()
        rms = x.float().pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()  # [N, 1]
        return x * (target.to(x.device) / rms).to(x.dtype)

    def check_context(self, prompt_tokens: int, visual_tokens: int | None = None) -> None:
        """:class:`ContextLengthError` when a prompt of this many tokens (visual ones included)
        does not fit the language model's context. With ``visual_tokens`` (how many of them are
        visual) the message says which part to cut."""
        max_len = self.config.text_config.get("max_position_embeddings")
        if not max_len or prompt_tokens <= max_len:
            return
        if visual_tokens is None:
            split, advice = "visual tokens included", "shorten the text or use fewer visual tokens"
        else:
            split = f"{visual_tokens} visual, {prompt_tokens - visual_tokens} text"
            if visual_tokens * 2 >= prompt_tokens:
                advice = "use fewer frames or more compression"
            else:
                advice = "shorten the text: it is most of the prompt"
        raise ContextLengthError(
            f"prompt of {prompt_tokens} tokens ({split}) exceeds the model's context of "
            f"{max_len}; {advice}"
        )

    def visual_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Where ``input_ids`` hold visual-token placeholders (bool, same shape)."""
        vid = self.config.visual_token_id
        if vid is None:
            return torch.zeros_like(input_ids, dtype=torch.bool)
        return input_ids == vid

    def embed(
        self, input_ids: torch.Tensor, visual_inputs: Sequence[VisualInput] | None = None
    ) -> torch.Tensor:
        """Token ids ``[B, L]`` (+ visual inputs in placeholder order) -> ``inputs_embeds [B, L, D]``."""
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        is_visual = self.visual_mask(input_ids)
        self.check_context(input_ids.shape[1], int(is_visual.sum(1).max()))
        table = self.language_model.get_input_embeddings()
        vocab = table.weight.shape[0]
        text_ids = input_ids.masked_fill(is_visual, 0)  # placeholder ids may lie beyond the table
        if (text_ids < 0).any() or (text_ids >= vocab).any():
            bad = text_ids[(text_ids < 0) | (text_ids >= vocab)].unique().tolist()
            raise InvalidInputError(f"token ids {bad[:8]} are outside the vocabulary of {vocab}")
        embeds = table(text_ids.to(table.weight.device))  # [B, L, D]
        visual = self.encode_visual(list(visual_inputs or []))
        n_visual = sum(v.shape[0] for v in visual)
        n_slots = int(is_visual.sum())
        if n_slots != n_visual:
            raise InvalidInputError(
                f"the prompt has {n_slots} visual placeholder tokens but the {len(visual)} visual "
                f"inputs give {n_visual} visual tokens; build prompts with OryxProcessor (it "
                "expands each <image>/<video> to the right count) and pass the same inputs"
            )
        if n_visual:
            mask = is_visual.to(embeds.device)[..., None]
            embeds = embeds.masked_scatter(mask, torch.cat(visual).to(embeds.device, embeds.dtype))
        return embeds

    # Forward / generate ---------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        visual_inputs: Sequence[VisualInput] | None = None,
        labels: torch.Tensor | None = None,
        visual_labels: torch.Tensor | None = None,
        **kwargs,
    ):
        """Returns the language model's output (``.logits``, ``.loss`` when ``labels`` given).

        Labels at visual placeholder positions are ignored (set to -100) whatever the caller
        passed. ``visual_labels`` (``[N]``, one token id or -100 per visual token, in placeholder
        order; see :mod:`oryx_mllm.train.patch_labels`) adds ``.visual_loss``: the cross-entropy
        of the LM head on the visual embeddings as they enter the LLM against those ids.
        """
        embeds = self.embed(input_ids, visual_inputs)
        if labels is not None and self.config.visual_token_id is not None:
            labels = labels.masked_fill(input_ids == self.config.visual_token_id, -100)
        out = self.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **kwargs
        )
        if visual_labels is None:
            return out
        x = embeds[self.visual_mask(input_ids.reshape(embeds.shape[:2]))]  # [N, D]
        if len(x) != len(visual_labels):
            raise InvalidInputError(
                f"visual_labels has {len(visual_labels)} entries for {len(x)} visual tokens"
            )
        keep = visual_labels != -100
        head = self.language_model.get_output_embeddings()
        visual_loss = (
            F.cross_entropy(head(x[keep]).float(), visual_labels[keep])
            if keep.any()
            else x.sum() * 0.0
        )
        # a declared output type: DDP rebuilds the output from its fields after the forward
        return OryxCausalLMOutput(**out, visual_loss=visual_loss)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        visual_inputs: Sequence[VisualInput] | None = None,
        **generate_kwargs,
    ) -> torch.Tensor:
        """transformers generation over the multimodal prompt; returns only the NEW token ids.

        ``generate_kwargs`` go to ``language_model.generate`` unchanged (``max_new_tokens``,
        ``do_sample``, ``temperature``, ``stop_strings`` + ``tokenizer``, ``streamer`` ...).
        Batches must be left-padded (the processor does it).
        """
        embeds = self.embed(input_ids, visual_inputs)
        if attention_mask is None:
            attention_mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        return self.language_model.generate(
            inputs_embeds=embeds, attention_mask=attention_mask.to(embeds.device), **generate_kwargs
        )

    # Checkpoints ----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> OryxForConditionalGeneration:
        """Load a released Oryx folder or one written by :meth:`save_pretrained`.

        See :func:`oryx_mllm.checkpoint.load_oryx` for the arguments (``vision_tower``,
        ``torch_dtype``/``dtype``, ``device_map``, ``strict``).
        """
        from oryx_mllm.checkpoint import load_oryx

        return load_oryx(path, **kwargs)

    def save_pretrained(self, directory: str | Path, tokenizer=None, **kwargs) -> None:
        """Write safetensors (released key names) + config.json (+ the tokenizer) atomically."""
        from oryx_mllm.checkpoint import save_oryx

        save_oryx(self, directory, tokenizer=tokenizer, **kwargs)

    def released_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict under the released checkpoint names."""
        from oryx_mllm.checkpoint import to_released_names

        return to_released_names(self.state_dict())
