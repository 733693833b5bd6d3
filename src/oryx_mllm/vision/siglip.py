"""Initialise OryxViT from a Hugging Face SigLIP vision checkpoint.

OryxViT is a SigLIP ViT with two changes (see ``encoder.py``): a large position table that is
resampled per image, and packed variable-length attention. A SigLIP checkpoint of any size is
therefore a valid starting point: the block weights map one to one, the fixed ``n``-entry position
table is resampled (bilinear, ``align_corners=False``) from its ``sqrt(n)`` grid to
``position_grid``, and the post-LayerNorm and pooling head are dropped (OryxViT's features are the
last block's output).

Name mapping (SigLIP -> OryxViT)::

    embeddings.patch_embedding.{weight,bias}           -> patch_embed.proj.{weight,bias}
    embeddings.position_embedding.weight [n, C]          -> pos_embed [1, G*G, C]
    encoder.layers.N.layer_norm{1,2}.*                  -> blocks.N.norm{1,2}.*
    encoder.layers.N.self_attn.{q,k,v}_proj.* (concat)   -> blocks.N.attn.qkv.*
    encoder.layers.N.self_attn.out_proj.*               -> blocks.N.attn.proj.*
    encoder.layers.N.mlp.fc{1,2}.*                      -> blocks.N.mlp.fc{1,2}.*
    post_layernorm.*, head.*                            -> dropped

Accepted sources: a ``SiglipVisionModel`` / ``SiglipModel`` instance, a folder written by
``save_pretrained`` (either class), or a state dict with or without the ``vision_model.`` prefix
(a full ``SiglipModel`` state dict's text tower is ignored).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from oryx_mllm.checkpoint import weight_files
from oryx_mllm.errors import CheckpointError, ConfigError
from oryx_mllm.files import read_json
from oryx_mllm.vision.config import OryxViTConfig
from oryx_mllm.vision.encoder import OryxViT, load_state_dict_file, resample_position_table

# SigLIP's activation names -> OryxViT's. "gelu_new" is the same tanh formula as PyTorch's.
_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_pytorch_tanh": "gelu_pytorch_tanh",
    "gelu_new": "gelu_pytorch_tanh",
}

# Known SigLIP widths -> heads, used only when a bare state dict comes without a config.
_HEADS_BY_WIDTH = {768: 12, 1024: 16, 1152: 16, 1536: 16}

_PREFIXES = ("vision_model.", "vision_tower.", "model.vision_model.")
_DROPPED = ("post_layernorm.", "head.")
_LAYER_RE = re.compile(r"encoder\.layers\.(\d+)\.(.+)")
_LAYER_MAP = {
    "layer_norm1": "norm1",
    "layer_norm2": "norm2",
    "self_attn.out_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


# Config ----------------------------------------------------------------------------------------
def _vision_config_dict(siglip_config: Any) -> dict[str, Any]:
    """A ``SiglipVisionConfig``/``SiglipConfig`` (object or dict) -> the vision config as a dict."""
    if hasattr(siglip_config, "to_dict"):
        siglip_config = siglip_config.to_dict()
    if not isinstance(siglip_config, Mapping):
        raise ConfigError(f"expected a SigLIP config or dict, got {type(siglip_config).__name__}")
    data = dict(siglip_config)
    if "vision_config" in data:  # a full SiglipConfig
        data = dict(data["vision_config"] or {})
    # Fill SigLIP's defaults for keys a hand-written dict may omit.
    from transformers import SiglipVisionConfig

    defaults = SiglipVisionConfig().to_dict()
    return {**defaults, **data}


def oryx_config_from_siglip(
    siglip_config: Any, position_grid: int = 128, **overrides: Any
) -> OryxViTConfig:
    """The OryxViT shape of a SigLIP vision tower.

    ``siglip_config``: a ``SiglipVisionConfig``, a ``SiglipConfig`` (its ``vision_config`` is used)
    or the equivalent dict. The activation and LayerNorm eps follow the source (SigLIP uses the tanh
    GELU; the released Oryx-ViT uses exact GELU — pass ``hidden_act="gelu"`` to override).
    ``overrides`` are any other :class:`OryxViTConfig` fields.
    """
    vc = _vision_config_dict(siglip_config)
    act = vc.get("hidden_act", "gelu_pytorch_tanh")
    if act not in _ACTIVATIONS:
        raise ConfigError(
            f"SigLIP hidden_act {act!r} is not supported; OryxViT has {sorted(set(_ACTIVATIONS.values()))}"
        )
    fields: dict[str, Any] = dict(
        hidden_size=vc["hidden_size"],
        depth=vc["num_hidden_layers"],
        num_heads=vc["num_attention_heads"],
        mlp_hidden_size=vc["intermediate_size"],
        patch_size=vc["patch_size"],
        num_channels=vc.get("num_channels", 3),
        position_grid=position_grid,
        layer_norm_eps=vc.get("layer_norm_eps", 1e-6),
        hidden_act=_ACTIVATIONS[act],
        # the default guard (a 2048 px square at patch 16) must admit the full position grid
        max_patches_per_image=max(OryxViTConfig.max_patches_per_image, position_grid**2),
    )
    return OryxViTConfig.from_dict({**fields, **overrides})


def _config_from_state_dict(sd: Mapping[str, torch.Tensor], position_grid: int) -> OryxViTConfig:
    """Infer the shape from weight shapes (heads from the known SigLIP widths)."""
    pe = sd.get("embeddings.patch_embedding.weight")
    if pe is None:
        raise CheckpointError(
            "not a SigLIP vision state dict: no embeddings.patch_embedding.weight"
        )
    hidden = pe.shape[0]
    if hidden not in _HEADS_BY_WIDTH:
        raise ConfigError(
            f"cannot infer the number of heads of a width-{hidden} SigLIP state dict; "
            "pass siglip_config=... (or num_heads=...)"
        )
    layers = [int(m.group(1)) for k in sd if (m := _LAYER_RE.match(k))]
    if not layers:
        raise CheckpointError("not a SigLIP vision state dict: no encoder.layers.N weights")
    fc1 = sd.get("encoder.layers.0.mlp.fc1.weight")
    if fc1 is None:
        raise CheckpointError("SigLIP state dict lacks encoder.layers.0.mlp.fc1.weight")
    return OryxViTConfig(
        hidden_size=hidden,
        depth=1 + max(layers),
        num_heads=_HEADS_BY_WIDTH[hidden],
        mlp_hidden_size=fc1.shape[0],
        patch_size=pe.shape[-1],
        num_channels=pe.shape[1],
        position_grid=position_grid,
        layer_norm_eps=1e-6,
        hidden_act="gelu_pytorch_tanh",
        max_patches_per_image=max(OryxViTConfig.max_patches_per_image, position_grid**2),
    )


# State dict ------------------------------------------------------------------------------------
def _strip_to_vision(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop prefixes, the text tower and logit scale/bias; keep the vision tower's own names."""
    out = {}
    for key, value in sd.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        else:
            if key.startswith("text_model.") or key in ("logit_scale", "logit_bias"):
                continue
        out[key] = value
    return out


def convert_siglip_state_dict(
    sd: Mapping[str, torch.Tensor], config: OryxViTConfig
) -> dict[str, torch.Tensor]:
    """Map a SigLIP vision state dict to OryxViT names (see the module docstring).

    The position table is resampled from its own ``sqrt(n)`` grid to ``config.position_grid``.
    Unknown vision keys and missing layers raise :class:`CheckpointError`.
    """
    sd = _strip_to_vision(sd)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[int, dict[str, torch.Tensor]] = {}  # layer -> {"q.weight": ..., ...}
    unknown = []
    for key, value in sd.items():
        if key.startswith(_DROPPED):
            continue
        if key.startswith("embeddings.patch_embedding."):
            if value.dim() == 2:  # Siglip2 (NaFlex) uses a Linear over (p, p, c) patches
                raise CheckpointError(
                    "linear patch embeddings (SigLIP2 NaFlex) are not supported; "
                    "use a SigLIP (v1) or fixed-resolution SigLIP2 checkpoint"
                )
            out["patch_embed.proj." + key.rsplit(".", 1)[1]] = value
        elif key == "embeddings.position_embedding.weight":
            n, _ = value.shape  # [n, C]
            if math.isqrt(n) ** 2 != n:
                raise CheckpointError(f"SigLIP position table with {n} entries is not square")
            G = config.position_grid
            if n == G * G:
                out["pos_embed"] = value.reshape(1, n, -1).clone()
            else:
                out["pos_embed"] = resample_position_table(value, G)  # [1, G*G, C]
        elif key == "embeddings.position_ids":  # a buffer in older checkpoints
            continue
        elif m := _LAYER_RE.match(key):
            layer, rest = int(m.group(1)), m.group(2)
            module, param = rest.rsplit(".", 1)
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault(layer, {})[f"{module[-6]}.{param}"] = value
            elif module in _LAYER_MAP:
                out[f"blocks.{layer}.{_LAYER_MAP[module]}.{param}"] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unrecognised SigLIP vision keys: {sorted(unknown)[:8]}")

    for layer, parts in qkv.items():
        for param in ("weight", "bias"):
            try:
                # [3C, C] / [3C]: q, k, v stacked in this order, as OryxViT's Attention splits them
                stacked = [parts[f"{name}.{param}"] for name in "qkv"]
            except KeyError as exc:
                raise CheckpointError(f"SigLIP layer {layer} lacks {exc.args[0]}") from None
            out[f"blocks.{layer}.attn.qkv.{param}"] = torch.cat(stacked, dim=0)

    depth = 1 + max(qkv, default=-1)
    if depth != config.depth:
        raise CheckpointError(f"SigLIP checkpoint has {depth} layers, the config {config.depth}")
    return out


# Loading ---------------------------------------------------------------------------------------
def _read_folder(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A folder from ``save_pretrained`` -> (config dict, state dict)."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path} has no config.json")
    config = read_json(config_file, error=CheckpointError)
    sd: dict[str, torch.Tensor] = {}
    for file in weight_files(path):  # the shards of an index, or the one weights file
        sd.update(load_state_dict_file(file))
    return config, sd


def load_from_siglip(
    source: str | Path | nn.Module | Mapping[str, torch.Tensor],
    position_grid: int = 128,
    siglip_config: Any = None,
    **overrides: Any,
) -> OryxViT:
    """Build an OryxViT initialised from a SigLIP vision tower.

    source: a ``SiglipVisionModel``/``SiglipModel`` instance, a ``save_pretrained`` folder, or a
    state dict. A bare state dict needs ``siglip_config`` unless its width is a known SigLIP size.
    ``overrides`` are :class:`OryxViTConfig` fields (e.g. ``hidden_act="gelu"``,
    ``attention_backend="sdpa"``). Returns the model in fp32 on CPU, in eval mode.
    """
    if isinstance(source, nn.Module):
        siglip_config = siglip_config or getattr(source, "config", None)
        sd = source.state_dict()
    elif isinstance(source, (str, Path)):
        folder_config, sd = _read_folder(Path(source))
        siglip_config = siglip_config or folder_config
    elif isinstance(source, Mapping):
        sd = dict(source)
    else:
        raise TypeError(f"cannot load SigLIP weights from a {type(source).__name__}")

    if siglip_config is not None:
        config = oryx_config_from_siglip(siglip_config, position_grid, **overrides)
    else:
        config = _config_from_state_dict(_strip_to_vision(sd), position_grid)
        if overrides:
            config = OryxViTConfig.from_dict({**config.to_dict(), **overrides})

    model = OryxViT(config)
    state = convert_siglip_state_dict(sd, config)
    model.load_weights({k: v.float() for k, v in state.items()}, strict_extra=True)
    return model.eval()
