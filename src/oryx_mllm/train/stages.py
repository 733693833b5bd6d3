"""Stage freezing: which module groups of the Oryx model receive gradients.

The paper's stages (Appendix D) as module groups:

=====================  =================================================================
stage                  trainable
=====================  =================================================================
OryxViT pre-training   vision_tower + (LoRA on the language model), small LLM
1a alignment           vision_resampler + mm_projector (lr 1e-3)
1b image SFT           vision_resampler + mm_projector + language_model (lr 2e-5)
2 joint SFT            same as 1b, on images + videos + multi-view + long videos
=====================  =================================================================

The compressor and the projector together are the paper's "connector".
"""

from __future__ import annotations

import logging

import torch.nn as nn

from oryx_mllm.train.config import MODULE_GROUPS, OptimSpec, StageSpec

logger = logging.getLogger(__name__)


def apply_stage(model: nn.Module, stage: StageSpec) -> list[str]:
    """Freeze everything, then unfreeze ``stage.trainable`` (and add LoRA if asked).

    Returns the names of the trainable parameters. With LoRA, ``model.language_model`` is
    replaced by a peft model whose only trainable weights are the adapters.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    if stage.lora is not None:
        from peft import LoraConfig, get_peft_model

        lora = stage.lora
        cfg = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
            task_type="CAUSAL_LM",
        )
        model.language_model = get_peft_model(model.language_model, cfg)
    for group in stage.trainable:
        for p in getattr(model, group).parameters():
            p.requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def trainable_groups(model: nn.Module) -> dict[str, int]:
    """Number of trainable parameters per module group (for logging)."""
    out = {}
    for group in MODULE_GROUPS:
        module = getattr(model, group, None)
        if module is not None:
            out[group] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return out


def optimizer_groups(model: nn.Module, optim: OptimSpec) -> list[dict]:
    """AdamW parameter groups for the trainable parameters: first everything at ``optim.lr``,
    then one group per module group named in ``optim.group_lr`` (each with its own ``lr``).
    The first group carries the base rate, so the logged ``get_last_lr()[0]`` is ``optim.lr``'s.
    """
    own = {}
    for group, lr in optim.group_lr.items():
        module = getattr(model, group, None)
        params = [p for p in module.parameters() if p.requires_grad] if module is not None else []
        if params:
            own[group] = {"params": params, "lr": float(lr), "name": group}
        else:
            logger.warning("optim.group_lr.%s is ignored: %s is not trained here", group, group)
    taken = {id(p) for g in own.values() for p in g["params"]}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    return [{"params": rest, "lr": optim.lr, "name": "default"}, *own.values()]
